//! The daemon's links to the world beyond the store's tablets: the cloud and the riders.
//!
//! Why a folder of its own: each link runs beside the HTTP API as a task of its own, owns its
//! configuration section and its start-up, and reaches the store only through the same
//! domain functions and writer path the tablets use ([`crate::app::App`]).

pub mod riders;
pub mod sync;
