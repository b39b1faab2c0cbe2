//! Bins and slotting: where each product lives in this store, and the order a picker walks.
//!
//! Bins are edge-owned (the store lays out its own shelves). A bin's `pick_seq` is its place on
//! the walk; pick lists and batch walks sort by it. A product is slotted to one or more bins;
//! receiving without a bin puts stock in its first slot.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::work::ctx::Ctx;

/// A bin (aisle/bay/shelf) with its place on the pick walk. Ids are natural keys such as
/// `A-01-2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bin {
    pub id: String,
    pub aisle: String,
    pub bay: String,
    pub shelf: String,
    pub pick_seq: i64,
}

fn bin_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Bin> {
    Ok(Bin {
        id: row.get(0)?,
        aisle: row.get(1)?,
        bay: row.get(2)?,
        shelf: row.get(3)?,
        pick_seq: row.get(4)?,
    })
}

/// Creates or updates a bin.
pub fn upsert(conn: &Connection, ctx: &Ctx, bin: &Bin) -> Result<Bin, Error> {
    if bin.id.trim().is_empty() {
        return Err(Error::Invalid("a bin needs a non-empty id".into()));
    }
    crate::limits::id("bin id", &bin.id)?;
    for (field, value) in [
        ("aisle", &bin.aisle),
        ("bay", &bin.bay),
        ("shelf", &bin.shelf),
    ] {
        crate::limits::text(field, value, crate::limits::MAX_NAME)?;
    }
    if !(0..=1_000_000).contains(&bin.pick_seq) {
        return Err(Error::Invalid(format!(
            "`pick_seq` must be 0..=1000000, not {}",
            bin.pick_seq
        )));
    }
    conn.prepare_cached(
        "INSERT INTO bins (id, store_id, aisle, bay, shelf, pick_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET aisle = excluded.aisle, bay = excluded.bay,
            shelf = excluded.shelf, pick_seq = excluded.pick_seq",
    )?
    .execute(params![
        bin.id,
        ctx.store_id,
        bin.aisle,
        bin.bay,
        bin.shelf,
        bin.pick_seq
    ])?;
    Ok(bin.clone())
}

/// The bin with this id.
pub fn get(conn: &Connection, id: &str) -> Result<Bin, Error> {
    conn.prepare_cached("SELECT id, aisle, bay, shelf, pick_seq FROM bins WHERE id = ?1")?
        .query_row([id], bin_row)
        .optional()?
        .ok_or_else(|| Error::not_found("bin", id))
}

/// Every bin, in walk order.
pub fn list(conn: &Connection) -> Result<Vec<Bin>, Error> {
    let mut stmt = conn
        .prepare_cached("SELECT id, aisle, bay, shelf, pick_seq FROM bins ORDER BY pick_seq, id")?;
    let bins = stmt.query_map([], bin_row)?.collect::<Result<_, _>>()?;
    Ok(bins)
}

/// Slots a product to a bin (idempotent).
pub fn slot(conn: &Connection, ctx: &Ctx, product_id: &str, bin_id: &str) -> Result<(), Error> {
    crate::work::catalog::product(conn, product_id)?;
    get(conn, bin_id)?;
    conn.prepare_cached(
        "INSERT INTO product_bins (product_id, bin_id, store_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (product_id, bin_id) DO NOTHING",
    )?
    .execute(params![product_id, bin_id, ctx.store_id])?;
    Ok(())
}

/// The bins a product is slotted to, in walk order.
pub fn slots_of(conn: &Connection, product_id: &str) -> Result<Vec<Bin>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT b.id, b.aisle, b.bay, b.shelf, b.pick_seq FROM product_bins pb
         JOIN bins b ON b.id = pb.bin_id WHERE pb.product_id = ?1 ORDER BY b.pick_seq, b.id",
    )?;
    let bins = stmt
        .query_map([product_id], bin_row)?
        .collect::<Result<_, _>>()?;
    Ok(bins)
}
