//! Simulators that drive a FlashKart store from the outside, for the demo, the edge's tests and
//! its riders benchmark: a member of staff over the store's HTTP API ([`staff`]), a rider's phone
//! over the store's MQTT broker ([`rider`]), and the scanner, scale and printer of
//! `flashkart-hw-sim` on the command line ([`devices`]).
//!
//! Why a crate of its own: simulators are not the store daemon. Kept apart, `flashkart-edge`
//! links no MQTT client (rumqttc is the simulated phone's, not the store's) and carries no demo
//! code, and the simulators can only do what the store's real interfaces allow: they talk HTTP
//! and MQTT to a running daemon and never open its database. The `flashkart-edge-sim` binary
//! runs them (`scanner`, `scale`, `printer`, `rider`, `staff`).

pub mod devices;
pub mod edge_api;
pub mod rider;
pub mod staff;
