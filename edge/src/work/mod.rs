//! Store work: what the staff of a dark store do, as domain functions over the store database.
//!
//! Why a folder of its own: these modules are the store's rules (the catalog and its barcodes,
//! shelves, the stock ledger, the order state machine, picking, packing, staff, riders' cash
//! hand-ins). They know nothing of HTTP, devices or riders; the API, the device feed and the
//! rider desk all call the same functions here with a [`ctx::Ctx`], so a rule is checked the
//! same way whoever asks.

pub mod barcode;
pub mod bins;
pub mod cash;
pub mod catalog;
pub mod ctx;
pub mod orders;
pub mod pack;
pub mod pick;
pub mod staff;
pub mod stock;
pub mod trace;
