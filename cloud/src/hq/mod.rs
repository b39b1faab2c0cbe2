//! HQ's own database: what the cloud alone knows and never syncs to a store.
//!
//! Store profiles (location, service area, hours, capacity, SLA) drive routing; customers and
//! their token hashes authenticate order intake; coupons price it; idempotency records make a
//! retried `POST /api/v1/orders` return the first answer instead of a second order. None of it
//! belongs in a store replica, so it lives in `<data_dir>/hq.db`, a plain SQLite database
//! behind the same single-writer access as every other database of the cloud. So do HQ's
//! users (`users.rs`), customers' accounts with their sessions and saved addresses
//! (`accounts.rs`) and customers' ratings of their delivered orders (`ratings.rs`).
//!
//! Store profiles are read on every order, so they are also kept in memory, refreshed on each
//! change (HQ edits them rarely). What each record is and the checks it must pass live in
//! `records.rs`; this module stores them.

use std::sync::{Arc, RwLock};

use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreConfig, StoreDb};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::CloudError;
use crate::registry::{hex, token_hash};

pub mod accounts;
mod moves;
mod operations;
pub mod ratings;
mod records;
pub mod users;

pub use moves::OrderMove;
pub use records::{
    Coupon, MAX_AREA_POSITIONS, OpeningHours, Placed, RosterRider, RoutableStore, StoreProfile,
};

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
    Migration {
        version: 3,
        name: "HQ users, sessions and the audit log",
        steps: &[Step::Sql(users::SCHEMA)],
    },
    Migration {
        version: 4,
        name: "orders on their way between stores",
        steps: &[Step::Sql(moves::SCHEMA)],
    },
    Migration {
        version: 5,
        name: "customer accounts",
        steps: &[Step::Sql(accounts::SCHEMA)],
    },
    Migration {
        version: 6,
        name: "ratings",
        steps: &[Step::Sql(ratings::SCHEMA)],
    },
    Migration {
        version: 7,
        name: "password resets and the notification outbox",
        steps: &[
            Step::Sql(accounts::RESET_SCHEMA),
            Step::Sql(crate::notify::SCHEMA),
        ],
    },
];

/// The HQ database and the in-memory copy of the store profiles.
#[derive(Debug, Clone)]
pub struct Hq {
    db: StoreDb,
    stores: Arc<RwLock<Arc<Vec<RoutableStore>>>>,
    /// Bumped after a profile, pause, rider or coupon changes (the dashboard rebuilds).
    changed: tokio::sync::watch::Sender<u64>,
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
            changed: tokio::sync::watch::Sender::new(0),
        };
        hq.reload_stores().await?;
        Ok(hq)
    }

    pub async fn close(&self) -> Result<(), CloudError> {
        Ok(self.db.close().await?)
    }

    /// The database (the notification sender reads customers' e-mails and drains its outbox).
    pub fn db(&self) -> &StoreDb {
        &self.db
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
        self.touched();
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
        self.put_whole(RIDER_UPSERT, id, &rider, "rider").await?;
        self.touched();
        Ok(())
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
        self.touched();
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
