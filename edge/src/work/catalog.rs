//! The catalog replica: products, their GTINs, categories and prices, as the cloud writes them.
//!
//! The edge only reads these tables (they are cloud-owned, replicated to every store). It looks
//! a scan up here: a GTIN names a product and how many pieces its package holds; a
//! variable-measure code names a product by PLU and carries its weight. [`seed`] writes catalog
//! rows exactly as the cloud's replication would, for tests and the demo until sync lands.

use flashkart_hw::ScanEvent;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::VariableMeasureConfig;
use crate::work::barcode::{self, Key};

/// A product, as the pick and pack screens need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub category_id: Option<String>,
    /// `each` or `kg` (variable measure, weighed per piece).
    pub unit: String,
    pub pack_size: i64,
    pub unit_weight_g: i64,
    pub plu: Option<String>,
}

impl Product {
    pub fn variable_measure(&self) -> bool {
        self.unit == "kg"
    }

    /// "Whole Milk 1L (p-milk)": how refusals name a product.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.id)
    }
}

/// A scan resolved to a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scanned {
    pub code: String,
    pub product: Product,
    /// Pieces the scanned package holds.
    pub qty: i64,
    /// Weight read from a variable-measure code, if any.
    pub weight_g: Option<i64>,
}

const PRODUCT_COLUMNS: &str =
    "id, sku, name, category_id, unit, pack_size, unit_weight_g, plu FROM products";

fn product_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: row.get(0)?,
        sku: row.get(1)?,
        name: row.get(2)?,
        category_id: row.get(3)?,
        unit: row.get(4)?,
        pack_size: row.get(5)?,
        unit_weight_g: row.get(6)?,
        plu: row.get(7)?,
    })
}

/// The product with this id.
pub fn product(conn: &Connection, id: &str) -> Result<Product, Error> {
    conn.prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} WHERE id = ?1"))?
        .query_row([id], product_row)
        .optional()?
        .ok_or_else(|| Error::not_found("product", id))
}

/// Resolves a decoded scan to a product and quantity.
pub fn resolve(conn: &Connection, event: &ScanEvent) -> Result<Scanned, Error> {
    match barcode::key(event)? {
        Key::Gtin(gtin) => {
            let [a, b, c] = barcode::gtin_forms(gtin);
            let found: Option<(String, i64)> = conn
                .prepare_cached(
                    "SELECT product_id, pack_qty FROM product_gtins WHERE gtin IN (?1, ?2, ?3)
                     LIMIT 1",
                )?
                .query_row(params![a, b, c], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (product_id, pack_qty) = found.ok_or_else(|| Error::not_found("GTIN", gtin))?;
            Ok(Scanned {
                code: gtin.to_owned(),
                product: product(conn, &product_id)?,
                qty: pack_qty.max(1),
                weight_g: None,
            })
        }
        Key::Plu {
            code,
            item,
            weight_g,
        } => {
            let product = conn
                .prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} WHERE plu = ?1 LIMIT 1"))?
                .query_row([item], product_row)
                .optional()?
                .ok_or_else(|| Error::not_found("variable-measure item code (PLU)", item))?;
            Ok(Scanned {
                code: code.to_owned(),
                product,
                qty: 1,
                weight_g,
            })
        }
    }
}

/// A product named either by id or by one of its GTINs (request bodies allow both).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductRef {
    pub product_id: Option<String>,
    pub gtin: Option<String>,
}

impl ProductRef {
    /// Finds the product, and the pieces per package if named by GTIN (1 otherwise).
    pub fn resolve(
        &self,
        conn: &Connection,
        layout: &VariableMeasureConfig,
    ) -> Result<(Product, i64), Error> {
        match (&self.product_id, &self.gtin) {
            (Some(id), None) => Ok((product(conn, id)?, 1)),
            (None, Some(gtin)) => {
                let scanned = resolve(conn, &barcode::decode_entered(gtin, layout)?)?;
                Ok((scanned.product, scanned.qty))
            }
            _ => Err(Error::Invalid(
                "name the product by exactly one of `product_id` or `gtin`".into(),
            )),
        }
    }
}

/// Catalog rows to write as the cloud would (dev/demo seeding).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSeed {
    #[serde(default)]
    pub categories: Vec<CategorySeed>,
    #[serde(default)]
    pub products: Vec<ProductSeed>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategorySeed {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSeed {
    pub id: String,
    #[serde(default)]
    pub sku: String,
    pub name: String,
    pub category_id: Option<String>,
    #[serde(default = "each")]
    pub unit: String,
    #[serde(default = "one")]
    pub pack_size: i64,
    #[serde(default)]
    pub unit_weight_g: i64,
    pub plu: Option<String>,
    #[serde(default)]
    pub gtins: Vec<GtinSeed>,
    #[serde(default)]
    pub price_minor: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GtinSeed {
    pub gtin: String,
    #[serde(default = "one")]
    pub pack_qty: i64,
}

fn each() -> String {
    "each".into()
}

fn one() -> i64 {
    1
}

/// What a seed wrote.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SeedSummary {
    pub categories: usize,
    pub products: usize,
    pub gtins: usize,
}

/// Writes catalog rows (upserts) exactly as the cloud's replication would. Development and demo
/// only: in production these tables arrive through sync.
pub fn seed(conn: &Connection, seed: &CatalogSeed) -> Result<SeedSummary, Error> {
    let mut gtins = 0;
    for category in &seed.categories {
        conn.prepare_cached(
            "INSERT INTO categories (id, name) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )?
        .execute(params![category.id, category.name])?;
    }
    for p in &seed.products {
        if p.unit != "each" && p.unit != "kg" {
            return Err(Error::Invalid(format!(
                "product {}: unit must be `each` or `kg`, not `{}`",
                p.id, p.unit
            )));
        }
        conn.prepare_cached(
            "INSERT INTO products (id, sku, name, category_id, unit, pack_size, unit_weight_g, plu)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET sku = excluded.sku, name = excluded.name,
                category_id = excluded.category_id, unit = excluded.unit,
                pack_size = excluded.pack_size, unit_weight_g = excluded.unit_weight_g,
                plu = excluded.plu",
        )?
        .execute(params![
            p.id,
            p.sku,
            p.name,
            p.category_id,
            p.unit,
            p.pack_size,
            p.unit_weight_g,
            p.plu
        ])?;
        conn.prepare_cached(
            "INSERT INTO prices (product_id, unit_price_minor) VALUES (?1, ?2)
             ON CONFLICT (product_id) DO UPDATE SET unit_price_minor = excluded.unit_price_minor",
        )?
        .execute(params![p.id, p.price_minor])?;
        for g in &p.gtins {
            conn.prepare_cached(
                "INSERT INTO product_gtins (gtin, product_id, pack_qty) VALUES (?1, ?2, ?3)
                 ON CONFLICT (gtin) DO UPDATE SET product_id = excluded.product_id,
                    pack_qty = excluded.pack_qty",
            )?
            .execute(params![g.gtin, p.id, g.pack_qty])?;
            gtins += 1;
        }
    }
    Ok(SeedSummary {
        categories: seed.categories.len(),
        products: seed.products.len(),
        gtins,
    })
}
