//! Wire types shared by the edge and the cloud.
//!
//! Both halves of FlashKart meet only through these messages (and the `sync` crate), so the
//! `.proto` files under `proto/` are the contract; this crate only generates the Rust types.

/// Sync messages: cr-sqlite changes and the batches that carry them.
pub mod sync {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/flashkart.sync.v1.rs"));
}

/// Rider messages: offers, replies, pickup and delivery over the store's MQTT broker.
pub mod rider {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/flashkart.rider.v1.rs"));
}
