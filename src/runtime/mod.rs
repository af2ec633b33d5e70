//! The daemon runtime: connection to the backend, durable delivery, claude
//! wakes.

pub mod detect;
pub mod wake;
