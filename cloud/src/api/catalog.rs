//! HQ's catalog: products, prices and GTINs, written once into `catalog.db` and fanned out to
//! every store. Validation is strict because every store's edge trusts these rows.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flashkart_hw::gs1::check::is_gtin;
use serde::Deserialize;

use crate::api::{MAX_MONEY_MINOR, check_text};
use crate::catalog_writes::{CatalogWrite, PutProductError};
use crate::http::auth::Admin;
use crate::http::error::{ApiError, Json, Path};
use crate::http::state::AppState;

/// Most GTINs one product may have (its pack sizes and relabellings).
const MAX_GTINS: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductUpdate {
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
            .find(|g| !is_gtin(&g.gtin) || !(1..=10_000).contains(&g.pack_qty))
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

/// `PUT /admin/v1/products/{id}`: HQ's catalog and prices; fans out to every store.
pub async fn put_product(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Json(product): Json<ProductUpdate>,
) -> Result<Response, ApiError> {
    product.validate(&id)?;
    let mut writes = vec![
        CatalogWrite::Product {
            id: id.clone(),
            sku: product.sku,
            name: product.name,
            category_id: product.category_id,
            unit: product.unit,
            pack_size: product.pack_size,
            unit_weight_g: product.unit_weight_g,
            plu: product.plu,
            active: product.active,
        },
        CatalogWrite::Price {
            product_id: id.clone(),
            unit_price_minor: product.price_minor,
            currency: product.currency,
        },
    ];
    writes.extend(product.gtins.into_iter().map(|gtin| CatalogWrite::Gtin {
        gtin: gtin.gtin,
        product_id: id.clone(),
        pack_qty: gtin.pack_qty,
    }));
    match state.catalog_writes.put_product(writes).await {
        Ok(()) => {}
        Err(PutProductError::GtinTaken { gtin, owner }) => {
            return Err(ApiError::Conflict(format!(
                "GTIN {gtin} belongs to product {owner}: remove it there first"
            )));
        }
        Err(PutProductError::Failed(error)) => return Err(error.into()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
