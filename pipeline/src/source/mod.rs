//! Where records come from.

pub mod kafka;
