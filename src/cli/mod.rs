//! The `depot` binary's larger commands, one module each (the binary's
//! root, `main.rs`, holds the command line and the small ones).

pub mod man;
pub mod serve;
pub mod tenant;
pub mod token;
