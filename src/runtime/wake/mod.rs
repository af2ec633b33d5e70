//! One wake = one run of claude for one delivered message.

pub mod command;
pub mod process;
pub mod prompt;
pub mod runner;
pub mod scheduler;
pub mod stream;
pub mod token;
