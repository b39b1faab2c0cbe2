//! The JSON API for customers and HQ: order intake and status, the catalog, store profiles,
//! coupons, customers and the per-store dashboard figures.
//!
//! Customers authenticate with their own bearer token; everything under `/admin/v1` takes HQ's
//! admin token. Bodies are JSON both ways, and every failure is `{"error", "message"}` with a
//! status chosen in `error.rs`; a refused request writes nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::hq::{Coupon, RosterRider, StoreProfile};
use crate::http::{AppState, bearer, finish, require_admin};
use crate::intake::{Customer, OrderRequest};
use crate::registry::token_hash;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// Highest price, coupon amount or basket minimum accepted, in minor units (100 million in
/// major units): far above any grocery, far below where sums of 50 lines of 100 pieces could
/// come near `i64::MAX`.
pub const MAX_MONEY_MINOR: i64 = 10_000_000_000;

/// Most GTINs one product may have (its pack sizes and relabellings).
const MAX_GTINS: usize = 32;

/// Whether the bearer is HQ's admin credential.
fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| token_hash(token) == state.admin_token_sha256)
}

/// A text field of at most `max` bytes without control characters; `required` ones must not
/// be blank.
fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if (required && value.trim().is_empty())
        || value.len() > max
        || value.chars().any(char::is_control)
    {
        let least = if required { 1 } else { 0 };
        return Err(ApiError::Unprocessable(format!(
            "{field} must be {least}-{max} bytes without control characters"
        )));
    }
    Ok(())
}

pub(crate) async fn customer(state: &AppState, headers: &HeaderMap) -> Result<Customer, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let (id, first_name) = state
        .hq
        .customer(token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Customer { id, first_name })
}

/// `POST /api/v1/orders`
pub async fn place_order(
    State(state): State<AppState>,
    authenticated: Option<Extension<Customer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let customer = match authenticated {
            Some(Extension(customer)) => customer,
            None => customer(&state, &headers).await?,
        };
        let key = headers
            .get("idempotency-key")
            .ok_or_else(|| ApiError::BadRequest("the Idempotency-Key header is required".into()))?
            .to_str()
            .map_err(|_| ApiError::BadRequest("Idempotency-Key is not ASCII".into()))?
            .to_owned();
        let request: OrderRequest = parse(&body)?;
        let started = std::time::Instant::now();
        let (order, replayed) = state.intake.place(&customer, &key, request).await?;
        state
            .metrics
            .intake_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut response = (StatusCode::CREATED, Json(order)).into_response();
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        } else {
            state.metrics.orders_placed.inc();
        }
        Ok(response)
    }
    .await;
    finish(&state, "place_order", result)
}

/// `GET /api/v1/orders/{id}` (the customer's own orders) and `GET /admin/v1/orders/{id}`.
pub async fn get_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let admin = is_admin(&state, &headers);
        let customer_id = if admin {
            None
        } else {
            Some(customer(&state, &headers).await?.id)
        };
        let order = state
            .projection
            .order(&id)
            .await?
            .filter(|o| customer_id.is_none() || o.customer_id == customer_id)
            .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?;
        let eta_minutes = eta_minutes(&order);
        Ok(Json(serde_json::json!({
            "order": order,
            "eta_minutes": eta_minutes,
        }))
        .into_response())
    }
    .await;
    finish(&state, "get_order", result)
}

/// Minutes until the promised time (0 once due), `None` once delivered or cancelled.
fn eta_minutes(order: &crate::projection::OrderView) -> Option<i64> {
    if matches!(
        order.status.as_str(),
        "DELIVERED" | "CLOSED" | "CANCELLED" | "REFUNDED"
    ) {
        return None;
    }
    let promised = crate::clock::parse(order.promised_at.as_deref()?)?;
    let left = promised - crate::clock::now();
    Some(left.whole_minutes().max(0))
}

#[derive(Debug, Serialize)]
struct ProductListing {
    id: String,
    name: String,
    unit: String,
    unit_price_minor: i64,
    currency: String,
}

/// `GET /api/v1/products`: what customers can order.
pub async fn products(State(state): State<AppState>) -> Response {
    let result = async {
        let listing = state
            .stores
            .catalog()
            .read(
                |conn| -> Result<Vec<ProductListing>, flashkart_sync::Error> {
                    let rows = conn
                        .prepare_cached(
                            "SELECT p.id, p.name, p.unit, pr.unit_price_minor, pr.currency
                         FROM products p JOIN prices pr ON pr.product_id = p.id
                         WHERE p.active = 1 ORDER BY p.name",
                        )?
                        .query_map([], |r| {
                            Ok(ProductListing {
                                id: r.get(0)?,
                                name: r.get(1)?,
                                unit: r.get(2)?,
                                unit_price_minor: r.get(3)?,
                                currency: r.get(4)?,
                            })
                        })?
                        .collect::<Result<_, _>>()?;
                    Ok(rows)
                },
            )
            .await
            .map_err(crate::CloudError::from)?;
        Ok(Json(listing).into_response())
    }
    .await;
    finish(&state, "products", result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    first_name: String,
}

/// `POST /admin/v1/customers`: a customer and its token (shown once).
pub async fn create_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let request: NewCustomer = parse(&body)?;
        let name = request.first_name.trim().to_owned();
        check_text("first_name", &name, 100, true)?;
        let (id, token) = state.hq.create_customer(name).await?;
        Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "customer_id": id, "token": token })),
        )
            .into_response())
    }
    .await;
    finish(&state, "create_customer", result)
}

/// `PUT /admin/v1/stores/{id}/profile`: where a registered store is and what it serves.
pub async fn put_store_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let mut profile: StoreProfile = parse(&body)?;
        profile.id = id.clone();
        profile.check_new().map_err(ApiError::Unprocessable)?;
        profile.validate().map_err(ApiError::Unprocessable)?;
        if !state.registry.store_ids().await?.contains(&id) {
            return Err(ApiError::NotFound(format!(
                "store {id} is not registered: POST /admin/v1/stores first"
            )));
        }
        // The store's own row in its replica (cloud-owned) tells the edge its name and place.
        let replica = state.stores.replica(&id).await?;
        let row = profile.clone();
        replica
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO stores (id, name, lat, lon) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, lat = excluded.lat,
                        lon = excluded.lon",
                    rusqlite::params![row.id, row.name, row.lat, row.lon],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .map_err(crate::CloudError::from)?;
        state.hq.put_store(profile.clone()).await?;
        Ok(Json(profile).into_response())
    }
    .await;
    finish(&state, "put_store_profile", result)
}

/// `GET /admin/v1/stores`: every profiled store with its live figures (the last hour).
pub async fn list_stores(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let since = crate::clock::rfc3339(crate::clock::now() - time::Duration::hours(1));
        let figures = state.projection.store_figures(since).await?;
        let grace = std::time::Duration::from_millis(state.intake_grace_ms);
        let stores: Vec<serde_json::Value> = state
            .hq
            .stores()
            .iter()
            .map(|s| {
                let id = &s.profile.id;
                serde_json::json!({
                    "profile": s.profile,
                    "online": state.intake.liveness.online(id, grace),
                    "figures": figures.iter().find(|f| &f.store_id == id),
                })
            })
            .collect();
        Ok(Json(stores).into_response())
    }
    .await;
    finish(&state, "list_stores", result)
}

/// `GET /admin/v1/stock/{product_id}`: available pieces per store, from the read model.
pub async fn stock(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product_id): Path<String>,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let available = state.projection.available(vec![product_id]).await?;
        let stores: serde_json::Map<String, serde_json::Value> = available
            .into_iter()
            .map(|((store, _), pieces)| (store, pieces.into()))
            .collect();
        Ok(Json(stores).into_response())
    }
    .await;
    finish(&state, "stock", result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductUpdate {
    name: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    category_id: Option<String>,
    #[serde(default = "each")]
    unit: String,
    #[serde(default = "one")]
    pack_size: i64,
    #[serde(default)]
    unit_weight_g: i64,
    #[serde(default)]
    plu: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    price_minor: i64,
    #[serde(default = "eur")]
    currency: String,
    #[serde(default)]
    gtins: Vec<GtinUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GtinUpdate {
    gtin: String,
    #[serde(default = "one")]
    pack_qty: i64,
}

/// Why a catalog write did not happen.
enum CatalogWrite {
    Db(flashkart_sync::Error),
    GtinTaken { gtin: String, owner: String },
}

impl From<flashkart_sync::Error> for CatalogWrite {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Db(error)
    }
}

impl ProductUpdate {
    fn validate(&self, id: &str) -> Result<(), ApiError> {
        check_text("product id", id, 64, true)?;
        check_text("name", &self.name, 200, true)?;
        check_text("sku", &self.sku, 64, false)?;
        check_text(
            "category_id",
            self.category_id.as_deref().unwrap_or_default(),
            64,
            false,
        )?;
        if let Some(plu) = &self.plu
            && (plu.is_empty() || plu.len() > 16 || !plu.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ApiError::Unprocessable("plu is 1-16 digits".into()));
        }
        if !matches!(self.unit.as_str(), "each" | "kg") {
            return Err(ApiError::Unprocessable("unit is `each` or `kg`".into()));
        }
        if !(0..=MAX_MONEY_MINOR).contains(&self.price_minor) {
            return Err(ApiError::Unprocessable(format!(
                "price_minor must be 0-{MAX_MONEY_MINOR}"
            )));
        }
        if !(1..=10_000).contains(&self.pack_size) || !(0..=1_000_000).contains(&self.unit_weight_g)
        {
            return Err(ApiError::Unprocessable(
                "pack_size must be 1-10000 and unit_weight_g 0-1000000".into(),
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::Unprocessable(
                "currency is an ISO 4217 code".into(),
            ));
        }
        if self.gtins.len() > MAX_GTINS {
            return Err(ApiError::Unprocessable(format!(
                "a product has at most {MAX_GTINS} GTINs"
            )));
        }
        if let Some(bad) = self
            .gtins
            .iter()
            .find(|g| !valid_gtin(&g.gtin) || !(1..=10_000).contains(&g.pack_qty))
        {
            return Err(ApiError::Unprocessable(format!(
                "GTIN {} is not valid (check digit, pack_qty 1-10000)",
                bad.gtin
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = self.gtins.iter().find(|g| !seen.insert(g.gtin.as_str())) {
            return Err(ApiError::Unprocessable(format!(
                "GTIN {} is listed twice",
                twice.gtin
            )));
        }
        Ok(())
    }
}

fn each() -> String {
    "each".into()
}
fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}
fn eur() -> String {
    "EUR".into()
}

/// A GTIN-8/12/13/14 with a correct check digit.
fn valid_gtin(gtin: &str) -> bool {
    if ![8, 12, 13, 14].contains(&gtin.len()) || !gtin.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digits: Vec<u32> = gtin.bytes().map(|b| u32::from(b - b'0')).collect();
    let (body, check) = digits.split_at(digits.len() - 1);
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    (10 - sum % 10) % 10 == check[0]
}

/// `PUT /admin/v1/products/{id}`: HQ's catalog and prices; fans out to every store.
pub async fn put_product(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let product: ProductUpdate = parse(&body)?;
        product.validate(&id)?;
        let product_id = id.clone();
        let written = state
            .stores
            .write_catalog(move |conn| -> Result<(), CatalogWrite> {
                // Checked inside the write, so a concurrent PUT cannot slip the same GTIN in
                // between; an error rolls the whole write back.
                for gtin in &product.gtins {
                    let owner: Option<String> = conn
                        .prepare_cached(
                            "SELECT product_id FROM product_gtins
                             WHERE gtin = ?1 AND product_id <> ?2",
                        )
                        .and_then(|mut stmt| {
                            stmt.query_row(rusqlite::params![gtin.gtin, product_id], |r| r.get(0))
                                .optional()
                        })
                        .map_err(flashkart_sync::Error::from)?;
                    if let Some(owner) = owner {
                        return Err(CatalogWrite::GtinTaken {
                            gtin: gtin.gtin.clone(),
                            owner,
                        });
                    }
                }
                conn.execute(
                    "INSERT INTO products (id, sku, name, category_id, unit, pack_size,
                        unit_weight_g, plu, active)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET sku = excluded.sku, name = excluded.name,
                        category_id = excluded.category_id, unit = excluded.unit,
                        pack_size = excluded.pack_size, unit_weight_g = excluded.unit_weight_g,
                        plu = excluded.plu, active = excluded.active",
                    rusqlite::params![
                        product_id,
                        product.sku,
                        product.name,
                        product.category_id,
                        product.unit,
                        product.pack_size,
                        product.unit_weight_g,
                        product.plu,
                        product.active
                    ],
                )
                .map_err(flashkart_sync::Error::from)?;
                conn.execute(
                    "INSERT INTO prices (product_id, unit_price_minor, currency) VALUES (?1, ?2, ?3)
                     ON CONFLICT (product_id) DO UPDATE SET
                        unit_price_minor = excluded.unit_price_minor, currency = excluded.currency",
                    rusqlite::params![product_id, product.price_minor, product.currency],
                )
                .map_err(flashkart_sync::Error::from)?;
                for gtin in &product.gtins {
                    conn.execute(
                        "INSERT INTO product_gtins (gtin, product_id, pack_qty) VALUES (?1, ?2, ?3)
                         ON CONFLICT (gtin) DO UPDATE SET product_id = excluded.product_id,
                            pack_qty = excluded.pack_qty",
                        rusqlite::params![gtin.gtin, product_id, gtin.pack_qty],
                    )
                    .map_err(flashkart_sync::Error::from)?;
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => {}
            Err(CatalogWrite::GtinTaken { gtin, owner }) => {
                return Err(ApiError::Conflict(format!(
                    "GTIN {gtin} belongs to product {owner}: remove it there first"
                )));
            }
            Err(CatalogWrite::Db(error)) => return Err(crate::CloudError::from(error).into()),
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&state, "put_product", result)
}

/// `PUT /admin/v1/riders/{id}`: HQ's rider roster; the rider row goes to the home store.
pub async fn put_rider(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let mut rider: RosterRider = parse(&body)?;
        rider.id = id;
        rider.validate().map_err(ApiError::Unprocessable)?;
        if !state.registry.store_ids().await?.contains(&rider.home_store_id) {
            return Err(ApiError::Unprocessable(format!(
                "home store {} is not registered",
                rider.home_store_id
            )));
        }
        let replica = state.stores.replica(&rider.home_store_id).await?;
        let row = rider.clone();
        replica
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO riders (id, home_store_id, name, vehicle, active) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET home_store_id = excluded.home_store_id,
                        name = excluded.name, vehicle = excluded.vehicle, active = excluded.active",
                    rusqlite::params![row.id, row.home_store_id, row.name, row.vehicle, row.active],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .map_err(crate::CloudError::from)?;
        state.hq.put_rider(rider.clone()).await?;
        Ok(Json(rider).into_response())
    }
    .await;
    finish(&state, "put_rider", result)
}

/// `PUT /admin/v1/coupons/{code}`
pub async fn put_coupon(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let mut coupon: Coupon = parse(&body)?;
        coupon.code = code;
        check_text("coupon code", &coupon.code, 32, true)?;
        let money = 0..=MAX_MONEY_MINOR;
        if !(0..=100).contains(&coupon.percent_off)
            || !money.contains(&coupon.amount_off_minor)
            || !money.contains(&coupon.min_basket_minor)
        {
            return Err(ApiError::Unprocessable(format!(
                "percent_off is 0-100; amount_off_minor and min_basket_minor are 0-{MAX_MONEY_MINOR}"
            )));
        }
        state.hq.put_coupon(coupon).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&state, "put_coupon", result)
}

#[cfg(test)]
mod tests {
    use super::valid_gtin;

    #[test]
    fn gtin_check_digits() {
        assert!(valid_gtin("4006381333931"));
        assert!(valid_gtin("96385074"));
        assert!(!valid_gtin("4006381333932"));
        assert!(!valid_gtin("40063813339a1"));
        assert!(!valid_gtin("123"));
    }
}
