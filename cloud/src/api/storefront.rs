//! `GET /api/v1/storefront`: what a customer at an address can order now. The store that
//! would take the order (as routing chooses it), the delivery fee and ETA it would get, and
//! the products with stock at that store in the read model (out-of-stock ones are never
//! offered), found by search or listed by category. Public: browsing needs no account, and
//! nothing here is the customer's own.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::check_text;
use crate::http::error::{ApiError, Json, Query};
use crate::http::state::AppState;
use crate::intake::IntakeError;
use crate::routing::NoStore;
use crate::storefront::search::{MAX_LIMIT, MAX_QUERY_CHARS};

/// Products listed when the request does not say.
const DEFAULT_LIMIT: usize = 40;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorefrontQuery {
    lat: f64,
    lon: f64,
    /// Search words (typos and half words welcome).
    #[serde(default)]
    q: Option<String>,
    /// A category id: only its products.
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Offered {
    id: String,
    name: String,
    unit: String,
    category_id: Option<String>,
    category: String,
    unit_price_minor: i64,
    currency: String,
    /// Pieces the store has now (not reserved by other orders).
    available: i64,
}

#[derive(Debug, Serialize)]
struct Category {
    id: String,
    name: String,
    /// Products of it the store has.
    products: u32,
}

/// A catalog product with its price.
struct CatalogRow {
    name: String,
    unit: String,
    category_id: Option<String>,
    category: String,
    unit_price_minor: i64,
    currency: String,
}

/// `GET /api/v1/storefront?lat=..&lon=..[&q=..][&category=..][&limit=..]`
pub async fn storefront(
    State(state): State<AppState>,
    Query(query): Query<StorefrontQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if let Some(q) = q {
        check_text("q", q, MAX_QUERY_CHARS * 4, false)?;
    }
    if let Some(category) = &query.category {
        check_text("category", category, 64, true)?;
    }
    let quote = match state.intake.quote(query.lat, query.lon).await {
        Ok(quote) => quote,
        Err(IntakeError::NoStore(why)) => {
            let reason = match &why {
                NoStore::OutsideAreas => "outside_areas",
                NoStore::Unavailable(_) => "unavailable",
            };
            return Ok(Json(serde_json::json!({
                "deliverable": false,
                "reason": reason,
                "message": why.to_string(),
                "products": [],
                "categories": [],
            }))
            .into_response());
        }
        Err(error) => return Err(error.into()),
    };
    let stock = state.projection.stock_at(&quote.store_id).await?;
    let ranked: Option<Vec<String>> = match q {
        Some(q) => Some(
            state
                .storefront
                .search(q, MAX_LIMIT)
                .await?
                .into_iter()
                .map(|hit| hit.product_id)
                .filter(|id| stock.contains_key(id))
                .collect(),
        ),
        None => None,
    };
    let ids: Vec<String> = match &ranked {
        Some(ids) => ids.clone(),
        None => stock.keys().cloned().collect(),
    };
    let catalog = catalog_rows(&state, ids).await?;
    let mut categories: BTreeMap<String, Category> = BTreeMap::new();
    for row in catalog.values() {
        let id = row.category_id.clone().unwrap_or_default();
        let entry = categories.entry(id.clone()).or_insert_with(|| Category {
            id,
            name: row.category.clone(),
            products: 0,
        });
        entry.products = entry.products.saturating_add(1);
    }
    let offer = |id: &String| -> Option<Offered> {
        let row = catalog.get(id)?;
        if query
            .category
            .as_ref()
            .is_some_and(|c| row.category_id.as_ref() != Some(c))
        {
            return None;
        }
        Some(Offered {
            id: id.clone(),
            name: row.name.clone(),
            unit: row.unit.clone(),
            category_id: row.category_id.clone(),
            category: row.category.clone(),
            unit_price_minor: row.unit_price_minor,
            currency: row.currency.clone(),
            available: stock.get(id).copied().unwrap_or(0),
        })
    };
    let products: Vec<Offered> = match &ranked {
        // Best match first.
        Some(ids) => ids.iter().filter_map(offer).take(limit).collect(),
        None => {
            let mut all: Vec<Offered> = catalog.keys().filter_map(offer).collect();
            all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
            all.truncate(limit);
            all
        }
    };
    Ok(Json(serde_json::json!({
        "deliverable": true,
        "store": {"id": quote.store_id, "name": quote.store_name},
        "eta_minutes": quote.eta_minutes,
        "delivery_fee_minor": quote.delivery_fee_minor,
        "surge_factor": quote.surge_factor,
        "categories": categories.into_values().collect::<Vec<_>>(),
        "products": products,
    }))
    .into_response())
}

/// The active, priced catalog products among `ids`.
async fn catalog_rows(
    state: &AppState,
    ids: Vec<String>,
) -> Result<HashMap<String, CatalogRow>, ApiError> {
    let ids = serde_json::to_string(&ids).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(state
        .stores
        .catalog()
        .read(move |conn| -> Result<_, flashkart_sync::Error> {
            let rows = conn
                .prepare_cached(
                    "SELECT p.id, p.name, p.unit, p.category_id,
                        coalesce(c.name, p.category_id, ''), pr.unit_price_minor, pr.currency
                     FROM products p JOIN prices pr ON pr.product_id = p.id
                     LEFT JOIN categories c ON c.id = p.category_id
                     WHERE p.active = 1 AND p.id IN (SELECT value FROM json_each(?1))",
                )?
                .query_map([ids], |r| {
                    Ok((
                        r.get(0)?,
                        CatalogRow {
                            name: r.get(1)?,
                            unit: r.get(2)?,
                            category_id: r.get(3)?,
                            category: r.get(4)?,
                            unit_price_minor: r.get(5)?,
                            currency: r.get(6)?,
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .map_err(crate::CloudError::from)?)
}
