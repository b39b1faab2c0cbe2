//! What drives and measures the cloud from the outside: simulated shoppers placing orders
//! through the intake API ([`shoppers`], the `flashkart-cloud-sim shoppers` of the demo), and
//! the Meal Delivery Routing Problem benchmark of the dispatcher: an instance reader
//! ([`mdrp`]), a replay in simulated time that scores the dispatcher against a greedy
//! baseline ([`replay`], the `mdrp-bench` binary), the solution files the instances' public
//! checker reads ([`solution`]) and our own checker of them ([`checker`]).
//!
//! Why a crate of its own: neither is part of the product. The shoppers only use the cloud's
//! public HTTP API, as a shop front would; the replay drives the dispatcher's pure core
//! (`flashkart_cloud::dispatch`) through its public API. Kept apart, the cloud's library and
//! binary carry no demo or benchmark code.

pub mod checker;
pub mod mdrp;
pub mod replay;
pub mod shoppers;
pub mod solution;
