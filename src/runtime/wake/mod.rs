//! One wake = one run of claude for one delivered message.

pub mod command;
pub mod leftover;
pub mod lifeline;
mod output;
pub mod prompt;
pub mod runner;
pub mod scheduler;
pub mod stream;
pub mod supervised;
pub mod supervisor;
pub mod token;
