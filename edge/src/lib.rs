//! The FlashKart store daemon (edge): the store's truth and the API its staff work through.
//!
//! One daemon runs per dark store. It keeps stock as an insert-only ledger ([`stock`]), takes
//! orders from arrival to handoff through the order state machine ([`orders`], [`pick`],
//! [`pack`]), knows the store's shelves ([`bins`]) and the catalog replica ([`catalog`],
//! [`barcode`]), and serves all of it over HTTP ([`api`]) with a live event stream
//! ([`events`]). Everything is stored in the cr-sqlite store database of `flashkart-sync`,
//! written through its single writer so every invariant is checked inside the transaction that
//! could break it.
//!
//! Store hardware (scanners, the pack scale, the label printer) is wired in by [`devices`].
//!
//! Start it with [`run`] (or [`start`] to learn the bound address first).

pub mod allocator;
pub mod api;
pub mod app;
pub mod barcode;
pub mod bins;
pub mod catalog;
pub mod config;
pub mod ctx;
pub mod devices;
mod error;
pub mod events;
pub mod limits;
pub mod lockout;
pub mod metrics;
pub mod orders;
pub mod pack;
pub mod pick;
pub mod rider_link;
pub mod riders;
pub mod server;
pub mod staff;
pub mod staff_sim;
pub mod stock;
pub mod sync_link;
pub mod tools;

pub use config::Config;
pub use error::Error;
pub use server::{Running, run, start, start_on};
