//! The cloud's writes into a store database: the shared catalog and its replicas of each store.
//!
//! cr-sqlite merges column by column, last writer wins, which is only safe while each column
//! has one writer ([`SYNCED_TABLES`](crate::schema::store::SYNCED_TABLES) names it). The cloud
//! writes only the columns it owns, and this module is the one place that says which: intake,
//! rerouting and the admin API call these functions instead of keeping SQL of their own, so
//! auditing what the cloud writes into a store means reading this file; dispatch's offers come
//! through here too. The rows borrow from the caller; each function writes one row inside the
//! caller's transaction (the store database's single writer).

use rusqlite::{Connection, params};

use crate::Error;

/// A catalog product (`products`).
#[derive(Debug, Clone, Copy)]
pub struct ProductRow<'a> {
    pub id: &'a str,
    pub sku: &'a str,
    pub name: &'a str,
    pub category_id: Option<&'a str>,
    /// `each`, or `kg` for a variable-measure product sold by weight.
    pub unit: &'a str,
    pub pack_size: i64,
    pub unit_weight_g: i64,
    /// The item code inside restricted-circulation EAN-13s.
    pub plu: Option<&'a str>,
    pub active: bool,
}

/// Writes a product, replacing every column of an existing one.
pub fn upsert_product(conn: &Connection, row: &ProductRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO products (id, sku, name, category_id, unit, pack_size,
            unit_weight_g, plu, active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET sku = excluded.sku, name = excluded.name,
            category_id = excluded.category_id, unit = excluded.unit,
            pack_size = excluded.pack_size, unit_weight_g = excluded.unit_weight_g,
            plu = excluded.plu, active = excluded.active",
    )?
    .execute(params![
        row.id,
        row.sku,
        row.name,
        row.category_id,
        row.unit,
        row.pack_size,
        row.unit_weight_g,
        row.plu,
        row.active
    ])?;
    Ok(())
}

/// A product's price (`prices`): per piece, or per kg for a variable-measure product.
#[derive(Debug, Clone, Copy)]
pub struct PriceRow<'a> {
    pub product_id: &'a str,
    pub unit_price_minor: i64,
    pub currency: &'a str,
}

/// Writes a product's price, replacing the one it had.
pub fn upsert_price(conn: &Connection, row: &PriceRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO prices (product_id, unit_price_minor, currency) VALUES (?1, ?2, ?3)
         ON CONFLICT (product_id) DO UPDATE SET
            unit_price_minor = excluded.unit_price_minor, currency = excluded.currency",
    )?
    .execute(params![row.product_id, row.unit_price_minor, row.currency])?;
    Ok(())
}

/// A barcode of a product (`product_gtins`).
#[derive(Debug, Clone, Copy)]
pub struct GtinRow<'a> {
    pub gtin: &'a str,
    pub product_id: &'a str,
    /// Pieces of the product in the package this GTIN identifies.
    pub pack_qty: i64,
}

/// Writes a GTIN, moving it to `row.product_id` if another product had it (the caller checks
/// whether that is allowed).
pub fn upsert_gtin(conn: &Connection, row: &GtinRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO product_gtins (gtin, product_id, pack_qty) VALUES (?1, ?2, ?3)
         ON CONFLICT (gtin) DO UPDATE SET product_id = excluded.product_id,
            pack_qty = excluded.pack_qty",
    )?
    .execute(params![row.gtin, row.product_id, row.pack_qty])?;
    Ok(())
}

/// A store's own row in its replica (`stores`): its name and place, for the edge.
#[derive(Debug, Clone, Copy)]
pub struct StoreRow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub lat: f64,
    pub lon: f64,
}

/// Writes a store's row, replacing its name and place (its timezone is left as it is).
pub fn upsert_store(conn: &Connection, row: &StoreRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO stores (id, name, lat, lon) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, lat = excluded.lat,
            lon = excluded.lon",
    )?
    .execute(params![row.id, row.name, row.lat, row.lon])?;
    Ok(())
}

/// A rider on the roster of their home store (`riders`).
#[derive(Debug, Clone, Copy)]
pub struct RiderRow<'a> {
    pub id: &'a str,
    pub home_store_id: &'a str,
    pub name: &'a str,
    pub vehicle: &'a str,
    pub active: bool,
}

/// Writes a rider, replacing the roster columns (the enrolment code and its expiry are left as
/// they are).
pub fn upsert_rider(conn: &Connection, row: &RiderRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO riders (id, home_store_id, name, vehicle, active) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET home_store_id = excluded.home_store_id,
            name = excluded.name, vehicle = excluded.vehicle, active = excluded.active",
    )?
    .execute(params![
        row.id,
        row.home_store_id,
        row.name,
        row.vehicle,
        row.active
    ])?;
    Ok(())
}

/// Gives a rider a new one-time enrolment code (its SHA-256, hex) valid until `expires_at`
/// (RFC 3339 UTC), replacing the one it had. Returns whether the rider is in this replica.
pub fn set_enrolment_code(
    conn: &Connection,
    rider_id: &str,
    code_sha256: &str,
    expires_at: &str,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "UPDATE riders SET enrolment_code_sha256 = ?2, enrolment_code_expires_at = ?3
             WHERE id = ?1",
        )?
        .execute(params![rider_id, code_sha256, expires_at])?;
    Ok(changed > 0)
}

/// An order routed to a store (`orders`), as intake hands it over.
#[derive(Debug, Clone, Copy)]
pub struct OrderRow<'a> {
    pub id: &'a str,
    pub store_id: &'a str,
    pub customer_first_name: &'a str,
    pub address: &'a str,
    pub lat: f64,
    pub lon: f64,
    pub delivery_slot: Option<&'a str>,
    pub total_minor: i64,
    pub placed_at: &'a str,
    pub routed_at: &'a str,
    /// SHA-256 (hex) of `order_id || ':' || pin`; `None` for an order without a PIN.
    pub delivery_pin_sha256: Option<&'a str>,
    /// Delivered with a photo instead of a PIN.
    pub contactless: bool,
    /// `card` (paid when the order was placed) or `cash` (the rider collects at the door).
    pub payment_method: &'a str,
    /// What the rider collects at the door of a `cash` order, in minor units of `currency`;
    /// 0 for a card order.
    pub cash_due_minor: i64,
    /// ISO 4217 code of `total_minor` and `cash_due_minor`.
    pub currency: &'a str,
}

/// Writes a routed order; an order already there is left as it is (a repeated delivery
/// changes nothing).
pub fn insert_order(conn: &Connection, row: &OrderRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO orders (id, store_id, customer_first_name, address, lat, lon, delivery_slot,
            total_minor, placed_at, routed_at, delivery_pin_sha256, contactless, payment_method,
            cash_due_minor, currency)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![
        row.id,
        row.store_id,
        row.customer_first_name,
        row.address,
        row.lat,
        row.lon,
        row.delivery_slot,
        row.total_minor,
        row.placed_at,
        row.routed_at,
        row.delivery_pin_sha256,
        row.contactless,
        row.payment_method,
        row.cash_due_minor,
        row.currency
    ])?;
    Ok(())
}

/// A line of a routed order (`order_lines`).
#[derive(Debug, Clone, Copy)]
pub struct OrderLineRow<'a> {
    pub order_id: &'a str,
    pub line_no: i64,
    pub store_id: &'a str,
    pub product_id: &'a str,
    pub qty: i64,
    pub unit_price_minor: i64,
}

/// Writes a line of a routed order; a line already there is left as it is.
pub fn insert_order_line(conn: &Connection, row: &OrderLineRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO order_lines (order_id, line_no, store_id, product_id, qty, unit_price_minor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (order_id, line_no) DO NOTHING",
    )?
    .execute(params![
        row.order_id,
        row.line_no,
        row.store_id,
        row.product_id,
        row.qty,
        row.unit_price_minor
    ])?;
    Ok(())
}

/// Asks the store to cancel an order (its edge cancels it unless the order has left the
/// store). The first request stands: one already made is not overwritten.
pub fn request_cancel(
    conn: &Connection,
    order_id: &str,
    at: &str,
    reason: &str,
) -> Result<(), Error> {
    conn.prepare_cached(
        "UPDATE orders SET cancel_requested_at = ?2, cancel_reason = ?3
         WHERE id = ?1 AND cancel_requested_at IS NULL",
    )?
    .execute(params![order_id, at, reason])?;
    Ok(())
}

/// An order offered to a rider (`assignments`); the edge relays the offer to the rider.
#[derive(Debug, Clone, Copy)]
pub struct AssignmentRow<'a> {
    pub id: &'a str,
    pub store_id: &'a str,
    pub order_id: &'a str,
    pub rider_id: &'a str,
    pub offered_at: &'a str,
    pub expires_at: &'a str,
}

/// Writes a new offer (each offer has a new id); an offer already there is left as it is, so
/// a replica rebuilt from the cloud's record of its writes can be given it again.
pub fn insert_assignment(conn: &Connection, row: &AssignmentRow<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO assignments (id, store_id, order_id, rider_id, offered_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![
        row.id,
        row.store_id,
        row.order_id,
        row.rider_id,
        row.offered_at,
        row.expires_at
    ])?;
    Ok(())
}
