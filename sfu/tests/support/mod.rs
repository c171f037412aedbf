//! Shared support for the SFU's integration tests.
//!
//! Every test binary that declares `mod support;` compiles all of it but uses
//! only a part, so unused items are expected here and not warned about.
#![allow(dead_code)]

pub mod peer;
