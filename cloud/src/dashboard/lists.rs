//! The lists HQ's dashboard pages show beside the snapshot: the catalog as HQ wrote it (with
//! prices and GTINs, in the shape `PUT /admin/v1/products/{id}` takes, so a row can be edited
//! and put back) and the roster with each rider's live state.

use std::collections::HashMap;

use serde::Serialize;

use crate::CloudError;
use crate::hq::RosterRider;

use super::snapshot::{RiderState, RiderSummary};

/// One product of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogProduct {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub category_id: Option<String>,
    pub unit: String,
    pub pack_size: i64,
    pub unit_weight_g: i64,
    pub plu: Option<String>,
    pub active: bool,
    /// `None` for a product without a price (not sold).
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub gtins: Vec<CatalogGtin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogGtin {
    pub gtin: String,
    pub pack_qty: i64,
}

/// Every product of the catalog the cloud writes, by id.
pub async fn catalog(catalog: &flashkart_sync::StoreDb) -> Result<Vec<CatalogProduct>, CloudError> {
    Ok(catalog
        .read(|conn| -> Result<Vec<CatalogProduct>, flashkart_sync::Error> {
            let mut gtins: HashMap<String, Vec<CatalogGtin>> = HashMap::new();
            let rows = conn
                .prepare_cached(
                    "SELECT product_id, gtin, pack_qty FROM product_gtins ORDER BY product_id, gtin",
                )?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        CatalogGtin {
                            gtin: r.get(1)?,
                            pack_qty: r.get(2)?,
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (product, gtin) in rows {
                gtins.entry(product).or_default().push(gtin);
            }
            let products = conn
                .prepare_cached(
                    "SELECT p.id, p.sku, p.name, p.category_id, p.unit, p.pack_size,
                        p.unit_weight_g, p.plu, p.active, pr.unit_price_minor, pr.currency
                     FROM products p LEFT JOIN prices pr ON pr.product_id = p.id ORDER BY p.id",
                )?
                .query_map([], |r| {
                    Ok(CatalogProduct {
                        id: r.get(0)?,
                        sku: r.get(1)?,
                        name: r.get(2)?,
                        category_id: r.get(3)?,
                        unit: r.get(4)?,
                        pack_size: r.get(5)?,
                        unit_weight_g: r.get(6)?,
                        plu: r.get(7)?,
                        active: r.get(8)?,
                        price_minor: r.get(9)?,
                        currency: r.get(10)?,
                        gtins: Vec::new(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(products
                .into_iter()
                .map(|mut product| {
                    product.gtins = gtins.remove(&product.id).unwrap_or_default();
                    product
                })
                .collect())
        })
        .await?)
}

/// A roster entry with the rider's live state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RosterEntry {
    #[serde(flatten)]
    pub rider: RosterRider,
    pub state: RiderState,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub position_at: Option<String>,
    pub offers_1h: u32,
    pub declines_1h: u32,
    pub deliveries_1h: u32,
}

/// The roster as HQ's database has it now, with what the latest snapshot says of each rider
/// (offline, no figures, for one added since).
pub fn roster(riders: Vec<RosterRider>, live: &[RiderSummary]) -> Vec<RosterEntry> {
    let live: HashMap<&str, &RiderSummary> = live.iter().map(|r| (r.id.as_str(), r)).collect();
    riders
        .into_iter()
        .map(|rider| {
            let seen = live.get(rider.id.as_str());
            RosterEntry {
                state: seen.map_or(RiderState::Offline, |r| r.state),
                lat: seen.and_then(|r| r.lat),
                lon: seen.and_then(|r| r.lon),
                position_at: seen.and_then(|r| r.position_at.clone()),
                offers_1h: seen.map_or(0, |r| r.offers_1h),
                declines_1h: seen.map_or(0, |r| r.declines_1h),
                deliveries_1h: seen.map_or(0, |r| r.deliveries_1h),
                rider,
            }
        })
        .collect()
}
