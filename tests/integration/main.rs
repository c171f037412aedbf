//! Cross-crate integration tests over real listeners, real stores and real
//! servers. One binary, so that the workspace links it once.

mod api_access;
mod api_flow;
mod api_input;
mod common;
mod media_signalling;
mod mmdb;
mod realtime;
mod store_contract;
