//! The FlashKart store daemon (edge): the store's truth and the API its staff work through.
//!
//! One daemon runs per dark store. Its parts, each a folder:
//!
//! - [`work`]: store work, the domain functions: stock as an insert-only ledger
//!   ([`work::stock`]), orders from arrival to handoff through the order state machine
//!   ([`work::orders`], [`work::pick`], [`work::pack`]), the store's shelves ([`work::bins`]),
//!   the catalog replica ([`work::catalog`], [`work::barcode`]) and staff ([`work::staff`]).
//! - [`api`]: all of it over HTTP, with a live event stream ([`events`]).
//! - [`devices`]: store hardware (scanners, the pack scale, the label printer).
//! - [`riders`]: the riders' MQTT broker and service.
//! - [`link`]: the links that run beside the API: sync with the cloud and the rider desk.
//! - [`backup`]: scheduled backups of the store database, and restoring one.
//!
//! Everything is stored in the cr-sqlite store database of `flashkart-sync`, written through
//! its single writer ([`app::App::write`]) so every invariant is checked inside the
//! transaction that could break it.
//!
//! Start it with [`run`] (or [`start`] to learn the bound address first).

pub mod allocator;
pub mod api;
pub mod app;
pub mod backup;
pub mod clock;
pub mod config;
pub mod devices;
mod error;
pub mod events;
pub mod kinds;
pub mod limits;
pub mod link;
pub mod lockout;
pub mod metrics;
pub mod riders;
pub mod server;
pub mod tools;
pub mod work;

pub use config::Config;
pub use error::Error;
pub use server::{Running, run, start, start_on};
