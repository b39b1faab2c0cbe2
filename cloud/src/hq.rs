//! HQ's own database: what the cloud alone knows and never syncs to a store.
//!
//! Store profiles (location, service area, hours, capacity, SLA) drive routing; customers and
//! their token hashes authenticate order intake; coupons price it; idempotency records make a
//! retried `POST /api/v1/orders` return the first answer instead of a second order. None of it
//! belongs in a store replica, so it lives in `<data_dir>/hq.db`, a plain SQLite database
//! behind the same single-writer access as every other database of the cloud.
//!
//! Store profiles are read on every order, so they are also kept in memory, refreshed on each
//! change (HQ edits them rarely).

use std::sync::{Arc, RwLock};

use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreConfig, StoreDb};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::CloudError;
use crate::area::ServiceArea;
use crate::registry::{hex, token_hash};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store profiles, customers, coupons, idempotency",
        steps: &[
            Step::Sql(
                "CREATE TABLE store_profiles (
                id TEXT PRIMARY KEY NOT NULL,
                -- the whole profile as HQ sent it (JSON), validated before it is stored
                profile TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )",
            ),
            Step::Sql(
                "CREATE TABLE customers (
                id TEXT PRIMARY KEY NOT NULL,
                first_name TEXT NOT NULL,
                token_sha256 TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            )",
            ),
            Step::Sql(
                "CREATE TABLE coupons (
                code TEXT PRIMARY KEY NOT NULL,
                percent_off INTEGER NOT NULL DEFAULT 0,
                amount_off_minor INTEGER NOT NULL DEFAULT 0,
                min_basket_minor INTEGER NOT NULL DEFAULT 0,
                active INTEGER NOT NULL DEFAULT 1
            )",
            ),
            Step::Sql(
                "CREATE TABLE rider_roster (
                id TEXT PRIMARY KEY NOT NULL,
                -- the roster entry as HQ sent it (JSON)
                rider TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )",
            ),
            Step::Sql(
                "CREATE TABLE idempotency (
                customer_id TEXT NOT NULL,
                key TEXT NOT NULL,
                request_sha256 TEXT NOT NULL,
                order_id TEXT NOT NULL,
                store_id TEXT NOT NULL,
                -- the order exactly as it is written to the store (JSON)
                placed TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (customer_id, key)
            )",
            ),
        ],
    },
    Migration {
        version: 2,
        name: "delivery PINs",
        steps: &[Step::Sql(
            // The customer's delivery PIN, in the clear: the customer reads it in their order
            // view and support in the admin's. Stores get only a salted hash of it.
            "CREATE TABLE delivery_pins (
                order_id TEXT PRIMARY KEY NOT NULL,
                pin TEXT NOT NULL,
                created_at TEXT NOT NULL
            )",
        )],
    },
];

/// Opening hours in the store's local time as minutes after midnight, with the UTC offset the
/// store keeps (no DST rules here: HQ updates the offset when clocks change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpeningHours {
    /// "HH:MM"
    pub opens: String,
    /// "HH:MM"; before `opens` means the store closes after midnight.
    pub closes: String,
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl OpeningHours {
    fn minutes(text: &str) -> Option<i32> {
        let (h, m) = text.split_once(':')?;
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 24 * 60)
            .then_some(h * 60 + m)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, value) in [("opens", &self.opens), ("closes", &self.closes)] {
            if Self::minutes(value).is_none() {
                return Err(format!("hours.{name} `{value}` is not HH:MM"));
            }
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            return Err("hours.utc_offset_minutes is outside -840..=840".into());
        }
        Ok(())
    }

    /// Whether the store is open at `now` (Unix seconds).
    pub fn is_open(&self, now_unix: i64) -> bool {
        let (Some(opens), Some(closes)) = (Self::minutes(&self.opens), Self::minutes(&self.closes))
        else {
            return false;
        };
        let local = (now_unix / 60 + i64::from(self.utc_offset_minutes)).rem_euclid(24 * 60);
        let local = i32::try_from(local).unwrap_or(0);
        if opens == closes {
            true
        } else if opens < closes {
            (opens..closes).contains(&local)
        } else {
            local >= opens || local < closes
        }
    }
}

/// What HQ knows about a store for routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreProfile {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// GeoJSON `Polygon` or `MultiPolygon` of the addresses the store delivers to.
    pub service_area: serde_json::Value,
    /// No delivery further than this from the store, whatever the polygon says.
    pub max_radius_m: f64,
    pub hours: OpeningHours,
    /// Open orders (routed, not yet picked up) the store can take.
    pub capacity: u32,
    /// Minutes from order to door the store promises.
    pub sla_minutes: u32,
}

impl StoreProfile {
    /// Checks the profile and parses its area.
    pub fn validate(&self) -> Result<ServiceArea, String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name must be 1-200 characters".into());
        }
        if !(-90.0..=90.0).contains(&self.lat) || !(-180.0..=180.0).contains(&self.lon) {
            return Err("lat/lon are not a position on Earth".into());
        }
        if !(self.max_radius_m > 0.0 && self.max_radius_m <= 100_000.0) {
            return Err("max_radius_m must be in (0, 100000]".into());
        }
        if self.capacity == 0 || self.capacity > 100_000 {
            return Err("capacity must be 1-100000".into());
        }
        if self.sla_minutes == 0 || self.sla_minutes > 24 * 60 {
            return Err("sla_minutes must be 1-1440".into());
        }
        self.hours.validate()?;
        ServiceArea::from_geojson(&self.service_area)
    }

    /// What a new profile must meet besides [`validate`](Self::validate): not part of it, so
    /// a profile stored before the bound still loads.
    pub fn check_new(&self) -> Result<(), String> {
        if self.name.chars().any(char::is_control) {
            return Err("name must not contain control characters".into());
        }
        // Routing tests every order's address against every area, so an area's size is a
        // cost paid per order; a drawn delivery area needs hundreds of positions, not more.
        let positions = positions(&self.service_area, 0);
        if positions > MAX_AREA_POSITIONS {
            return Err(format!(
                "service_area has more than {MAX_AREA_POSITIONS} positions"
            ));
        }
        Ok(())
    }
}

/// Most positions (vertices, all rings and polygons together) of a service area.
pub const MAX_AREA_POSITIONS: usize = 5_000;

/// Arrays of two numbers anywhere in `value`: the positions of a GeoJSON geometry. Stops
/// counting past the limit.
fn positions(value: &serde_json::Value, counted: usize) -> usize {
    match value {
        serde_json::Value::Array(items)
            if items.len() == 2 && items.iter().all(serde_json::Value::is_number) =>
        {
            counted + 1
        }
        serde_json::Value::Array(items) => items.iter().fold(counted, |n, item| {
            if n > MAX_AREA_POSITIONS {
                n
            } else {
                positions(item, n)
            }
        }),
        serde_json::Value::Object(fields) => fields.values().fold(counted, |n, item| {
            if n > MAX_AREA_POSITIONS {
                n
            } else {
                positions(item, n)
            }
        }),
        _ => counted,
    }
}

/// A store profile with its area parsed, as routing uses it.
#[derive(Debug, Clone)]
pub struct RoutableStore {
    pub profile: StoreProfile,
    pub area: ServiceArea,
}

/// A rider on HQ's roster, as dispatch uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterRider {
    #[serde(default)]
    pub id: String,
    pub home_store_id: String,
    pub name: String,
    /// `bicycle`, `scooter` or `car`.
    #[serde(default = "bicycle")]
    pub vehicle: String,
    /// Bags the rider carries at once (at most 3).
    #[serde(default = "three")]
    pub capacity: u8,
    /// 1-5.
    #[serde(default = "five")]
    pub rating: f32,
    /// Shift hours; always on shift when absent.
    #[serde(default)]
    pub shift: Option<OpeningHours>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn bicycle() -> String {
    "bicycle".into()
}
fn three() -> u8 {
    3
}
fn five() -> f32 {
    5.0
}

impl RosterRider {
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a rider id is 1-64 letters, digits, `-` or `_`".into());
        }
        if self.name.trim().is_empty()
            || self.name.len() > 100
            || self.name.chars().any(char::is_control)
        {
            return Err("name must be 1-100 bytes without control characters".into());
        }
        if !matches!(self.vehicle.as_str(), "bicycle" | "scooter" | "car") {
            return Err("vehicle is `bicycle`, `scooter` or `car`".into());
        }
        if !(1..=3).contains(&self.capacity) {
            return Err("capacity is 1-3 bags".into());
        }
        if !(1.0..=5.0).contains(&self.rating) {
            return Err("rating is 1-5".into());
        }
        if let Some(shift) = &self.shift {
            shift.validate()?;
        }
        Ok(())
    }
}

/// A coupon as pricing applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coupon {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub percent_off: i64,
    #[serde(default)]
    pub amount_off_minor: i64,
    #[serde(default)]
    pub min_basket_minor: i64,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// An order already placed under an idempotency key.
#[derive(Debug, Clone)]
pub struct Placed {
    pub request_sha256: String,
    pub order_id: String,
    pub store_id: String,
    pub placed: String,
}

/// The HQ database and the in-memory copy of the store profiles.
#[derive(Debug, Clone)]
pub struct Hq {
    db: StoreDb,
    stores: Arc<RwLock<Arc<Vec<RoutableStore>>>>,
}

const PROFILE_UPSERT: &str =
    "INSERT INTO store_profiles (id, profile, updated_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at";

const RIDER_UPSERT: &str = "INSERT INTO rider_roster (id, rider, updated_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET rider = excluded.rider, updated_at = excluded.updated_at";

impl Hq {
    pub async fn open(mut config: StoreConfig) -> Result<Self, CloudError> {
        config.readers = 4;
        let db = StoreDb::open(config, MIGRATIONS).await?;
        let hq = Self {
            db,
            stores: Arc::new(RwLock::new(Arc::new(Vec::new()))),
        };
        hq.reload_stores().await?;
        Ok(hq)
    }

    pub async fn close(&self) -> Result<(), CloudError> {
        Ok(self.db.close().await?)
    }

    async fn reload_stores(&self) -> Result<(), CloudError> {
        let rows: Vec<String> = self
            .db
            .read(|conn| {
                conn.prepare("SELECT profile FROM store_profiles ORDER BY id")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?;
        let mut stores = Vec::with_capacity(rows.len());
        for text in rows {
            let profile: StoreProfile = serde_json::from_str(&text)
                .map_err(|e| CloudError::Corrupt(format!("store profile: {e}")))?;
            let area = profile
                .validate()
                .map_err(|e| CloudError::Corrupt(format!("store profile {}: {e}", profile.id)))?;
            stores.push(RoutableStore { profile, area });
        }
        if let Ok(mut guard) = self.stores.write() {
            *guard = Arc::new(stores);
        }
        Ok(())
    }

    /// The routable stores (those with a profile).
    pub fn stores(&self) -> Arc<Vec<RoutableStore>> {
        self.stores
            .read()
            .map(|guard| guard.clone())
            .unwrap_or_default()
    }

    /// Creates or replaces a store's profile (validated by the caller).
    pub async fn put_store(&self, profile: StoreProfile) -> Result<(), CloudError> {
        let id = profile.id.clone();
        self.put_whole(PROFILE_UPSERT, id, &profile, "store profile")
            .await?;
        self.reload_stores().await
    }

    /// Creates or replaces a rider's roster entry (validated by the caller).
    pub async fn put_rider(&self, rider: RosterRider) -> Result<(), CloudError> {
        let id = rider.id.clone();
        self.put_whole(RIDER_UPSERT, id, &rider, "rider").await
    }

    /// Creates or replaces row `id` of a table that keeps each entry whole as JSON; `upsert`
    /// binds the id, the JSON and the time.
    async fn put_whole<T: Serialize>(
        &self,
        upsert: &'static str,
        id: String,
        value: &T,
        what: &'static str,
    ) -> Result<(), CloudError> {
        let text = serde_json::to_string(value)
            .map_err(|e| CloudError::Corrupt(format!("{what}: {e}")))?;
        self.db
            .write(move |conn| {
                conn.execute(upsert, params![id, text, crate::clock::now_rfc3339()])
                    .map_err(flashkart_sync::Error::from)
            })
            .await?;
        Ok(())
    }

    /// The whole roster.
    pub async fn riders(&self) -> Result<Vec<RosterRider>, CloudError> {
        let rows: Vec<String> = self
            .db
            .read(|conn| {
                conn.prepare_cached("SELECT rider FROM rider_roster ORDER BY id")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?;
        rows.iter()
            .map(|text| {
                serde_json::from_str(text).map_err(|e| CloudError::Corrupt(format!("rider: {e}")))
            })
            .collect()
    }

    /// Keeps an order's delivery PIN (the first one kept for an order stands).
    pub async fn keep_delivery_pin(&self, order_id: &str, pin: &str) -> Result<(), CloudError> {
        let (order_id, pin) = (order_id.to_owned(), pin.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO delivery_pins (order_id, pin, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (order_id) DO NOTHING",
                    params![order_id, pin, crate::clock::now_rfc3339()],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await?;
        Ok(())
    }

    /// An order's delivery PIN, if it has one.
    pub async fn delivery_pin(&self, order_id: &str) -> Result<Option<String>, CloudError> {
        let order_id = order_id.to_owned();
        Ok(self
            .db
            .read(move |conn| {
                conn.prepare_cached("SELECT pin FROM delivery_pins WHERE order_id = ?1")?
                    .query_row([order_id], |row| row.get(0))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }

    /// Creates a customer and returns its bearer token (shown once).
    pub async fn create_customer(
        &self,
        first_name: String,
    ) -> Result<(String, String), CloudError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut secret = [0_u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("fkc_{}", hex(&secret));
        let hash = token_hash(&token);
        let row_id = id.clone();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO customers (id, first_name, token_sha256, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![row_id, first_name, hash, crate::clock::now_rfc3339()],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await?;
        Ok((id, token))
    }

    /// The customer a bearer token belongs to: (id, first name).
    pub async fn customer(&self, token: &str) -> Result<Option<(String, String)>, CloudError> {
        let hash = token_hash(token);
        Ok(self
            .db
            .read(move |conn| {
                conn.prepare_cached("SELECT id, first_name FROM customers WHERE token_sha256 = ?1")?
                    .query_row([hash], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }

    pub async fn put_coupon(&self, coupon: Coupon) -> Result<(), CloudError> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO coupons
                        (code, percent_off, amount_off_minor, min_basket_minor, active)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        coupon.code,
                        coupon.percent_off,
                        coupon.amount_off_minor,
                        coupon.min_basket_minor,
                        coupon.active
                    ],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await?;
        Ok(())
    }

    pub async fn coupon(&self, code: &str) -> Result<Option<Coupon>, CloudError> {
        let code = code.to_owned();
        Ok(self
            .db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT code, percent_off, amount_off_minor, min_basket_minor, active
                     FROM coupons WHERE code = ?1",
                )?
                .query_row([code], |row| {
                    Ok(Coupon {
                        code: row.get(0)?,
                        percent_off: row.get(1)?,
                        amount_off_minor: row.get(2)?,
                        min_basket_minor: row.get(3)?,
                        active: row.get(4)?,
                    })
                })
                .optional()
                .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }

    /// The order placed under `(customer, key)`, if any.
    pub async fn placed(&self, customer_id: &str, key: &str) -> Result<Option<Placed>, CloudError> {
        let (customer_id, key) = (customer_id.to_owned(), key.to_owned());
        Ok(self
            .db
            .read(move |conn| placed_row(conn, &customer_id, &key))
            .await?)
    }

    /// Records the order decided for `(customer, key)` before it is written to the store, so a
    /// retry after a crash writes the same order to the same store. Returns the record that
    /// holds the key: `placed` if it was free, the earlier one otherwise.
    pub async fn remember(
        &self,
        customer_id: &str,
        key: &str,
        placed: Placed,
    ) -> Result<Placed, CloudError> {
        let (customer_id, key) = (customer_id.to_owned(), key.to_owned());
        Ok(self
            .db
            .write(move |conn| -> Result<Placed, flashkart_sync::Error> {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO idempotency
                            (customer_id, key, request_sha256, order_id, store_id, placed, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (customer_id, key) DO NOTHING",
                    )?
                    .execute(params![
                        customer_id,
                        key,
                        placed.request_sha256,
                        placed.order_id,
                        placed.store_id,
                        placed.placed,
                        crate::clock::now_rfc3339()
                    ])?;
                if inserted == 1 {
                    return Ok(placed);
                }
                placed_row(conn, &customer_id, &key)?.ok_or_else(|| {
                    flashkart_sync::Error::from(rusqlite::Error::QueryReturnedNoRows)
                })
            })
            .await?)
    }
}

/// The idempotency record of `(customer, key)`, if any.
fn placed_row(
    conn: &rusqlite::Connection,
    customer_id: &str,
    key: &str,
) -> Result<Option<Placed>, flashkart_sync::Error> {
    Ok(conn
        .prepare_cached(
            "SELECT request_sha256, order_id, store_id, placed FROM idempotency
             WHERE customer_id = ?1 AND key = ?2",
        )?
        .query_row([customer_id, key], |row| {
            Ok(Placed {
                request_sha256: row.get(0)?,
                order_id: row.get(1)?,
                store_id: row.get(2)?,
                placed: row.get(3)?,
            })
        })
        .optional()?)
}
