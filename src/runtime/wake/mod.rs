//! One wake = one run of claude for one delivered message.

pub mod command;
pub mod prompt;
pub mod stream;
