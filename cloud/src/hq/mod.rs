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
//!
//! Given a `database_url`, all of it (and the outbox of the password-reset e-mails) lives in
//! PostgreSQL instead, shared by every instance: one type over both engines with the same
//! methods, as the registry does. What an instance keeps in memory must then also follow
//! the other instances' changes; see `listen.rs`.

use std::sync::{Arc, RwLock};

use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreConfig, StoreDb};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::notify::Outbox;
use crate::postgres::{self, Postgres};
use crate::registry::{hex, token_hash};

pub mod accounts;
mod listen;
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

/// HQ's tables on PostgreSQL: the same tables as `hq.db`, timestamps kept as RFC 3339 text as
/// there (so both engines compare and order them alike), integers BIGINT, flags BOOLEAN.
const PG_MIGRATIONS: &[postgres::Migration] = &[
    postgres::Migration {
        version: 1,
        name: "store profiles, customers, coupons, roster, idempotency, delivery PINs",
        sql: "CREATE TABLE store_profiles (
                id TEXT PRIMARY KEY NOT NULL,
                -- the whole profile as HQ sent it (JSON), validated before it is stored
                profile TEXT NOT NULL,
                updated_at TEXT NOT NULL
            );
            CREATE TABLE customers (
                id TEXT PRIMARY KEY NOT NULL,
                first_name TEXT NOT NULL,
                token_sha256 TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            );
            CREATE TABLE coupons (
                code TEXT PRIMARY KEY NOT NULL,
                percent_off BIGINT NOT NULL DEFAULT 0,
                amount_off_minor BIGINT NOT NULL DEFAULT 0,
                min_basket_minor BIGINT NOT NULL DEFAULT 0,
                active BOOLEAN NOT NULL DEFAULT TRUE
            );
            CREATE TABLE rider_roster (
                id TEXT PRIMARY KEY NOT NULL,
                -- the roster entry as HQ sent it (JSON)
                rider TEXT NOT NULL,
                updated_at TEXT NOT NULL
            );
            CREATE TABLE idempotency (
                customer_id TEXT NOT NULL,
                key TEXT NOT NULL,
                request_sha256 TEXT NOT NULL,
                order_id TEXT NOT NULL,
                store_id TEXT NOT NULL,
                -- the order exactly as it is written to the store (JSON)
                placed TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (customer_id, key)
            );
            CREATE TABLE delivery_pins (
                order_id TEXT PRIMARY KEY NOT NULL,
                pin TEXT NOT NULL,
                created_at TEXT NOT NULL
            );",
    },
    postgres::Migration {
        version: 2,
        name: "HQ users, sessions and the audit log",
        sql: users::PG_SCHEMA,
    },
    postgres::Migration {
        version: 3,
        name: "orders on their way between stores",
        sql: moves::PG_SCHEMA,
    },
    postgres::Migration {
        version: 4,
        name: "customer accounts and password resets",
        sql: accounts::PG_SCHEMA,
    },
    postgres::Migration {
        version: 5,
        name: "ratings",
        sql: ratings::PG_SCHEMA,
    },
    postgres::Migration {
        version: 6,
        name: "the notification outbox",
        sql: crate::notify::PG_SCHEMA,
    },
];

/// The HQ database and the in-memory copy of the store profiles.
#[derive(Debug, Clone)]
pub struct Hq {
    backend: Backend,
    stores: Arc<RwLock<Arc<Vec<RoutableStore>>>>,
    /// One reload at a time, so a slower reload that read older rows cannot replace the copy
    /// a later one made.
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// Bumped after a profile, pause, rider or coupon changes (the dashboard rebuilds).
    changed: tokio::sync::watch::Sender<u64>,
    /// Stops the PostgreSQL listener (`listen.rs`) at [`Hq::close`].
    listening: CancellationToken,
}

/// Which engine holds HQ's rows.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(StoreDb),
    Postgres(Postgres),
}

impl Backend {
    /// The one text column of every row of `sql`, a statement without parameters that both
    /// engines take as it is (the tables kept whole as JSON are read this way).
    async fn texts(&self, sql: &'static str) -> Result<Vec<String>, CloudError> {
        Ok(match self {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.prepare_cached(sql)?
                        .query_map([], |row| row.get(0))?
                        .collect::<Result<Vec<String>, _>>()
                        .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query(sql, &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect(),
        })
    }
}

const PROFILE_UPSERT: &str =
    "INSERT INTO store_profiles (id, profile, updated_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at";

const RIDER_UPSERT: &str = "INSERT INTO rider_roster (id, rider, updated_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET rider = excluded.rider, updated_at = excluded.updated_at";

const PG_PROFILE_UPSERT: &str =
    "INSERT INTO store_profiles (id, profile, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (id) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at";

const PG_RIDER_UPSERT: &str = "INSERT INTO rider_roster (id, rider, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (id) DO UPDATE SET rider = excluded.rider, updated_at = excluded.updated_at";

impl Hq {
    /// HQ in its own SQLite file.
    pub async fn open(mut config: StoreConfig) -> Result<Self, CloudError> {
        config.readers = 4;
        let db = StoreDb::open(config, MIGRATIONS).await?;
        let hq = Self::with(Backend::Sqlite(db));
        hq.reload_stores().await?;
        Ok(hq)
    }

    /// HQ in PostgreSQL, its tables migrated first; follows the other instances' changes
    /// until [`Hq::close`].
    pub async fn open_postgres(postgres: Postgres) -> Result<Self, CloudError> {
        postgres.migrate("hq", PG_MIGRATIONS).await?;
        let hq = Self::with(Backend::Postgres(postgres.clone()));
        hq.reload_stores().await?;
        tokio::spawn(listen::follow(hq.clone(), postgres, hq.listening.clone()));
        Ok(hq)
    }

    fn with(backend: Backend) -> Self {
        Self {
            backend,
            stores: Arc::new(RwLock::new(Arc::new(Vec::new()))),
            reloading: Arc::new(tokio::sync::Mutex::new(())),
            changed: tokio::sync::watch::Sender::new(0),
            listening: CancellationToken::new(),
        }
    }

    pub async fn close(&self) -> Result<(), CloudError> {
        self.listening.cancel();
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.close().await?),
            // The pool is the cloud's, shared with other parts; it closes it at shutdown.
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// The outbox of the notifications HQ's transactions enqueue (password resets), for the
    /// sender to drain, in whichever engine holds HQ.
    pub fn outbox(&self) -> Outbox {
        match &self.backend {
            Backend::Sqlite(db) => Outbox::Sqlite(db.clone()),
            Backend::Postgres(pg) => Outbox::Postgres(pg.clone()),
        }
    }

    /// Re-reads the store profiles into memory and bumps [`Hq::changed`].
    async fn reload_stores(&self) -> Result<(), CloudError> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows = self
            .backend
            .texts("SELECT profile FROM store_profiles ORDER BY id")
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
        self.put_whole(
            (PROFILE_UPSERT, PG_PROFILE_UPSERT),
            id,
            &profile,
            "store profile",
            listen::Change::Stores,
        )
        .await?;
        self.reload_stores().await
    }

    /// Creates or replaces a rider's roster entry (validated by the caller).
    pub async fn put_rider(&self, rider: RosterRider) -> Result<(), CloudError> {
        let id = rider.id.clone();
        self.put_whole(
            (RIDER_UPSERT, PG_RIDER_UPSERT),
            id,
            &rider,
            "rider",
            listen::Change::Records,
        )
        .await?;
        self.touched();
        Ok(())
    }

    /// Creates or replaces row `id` of a table that keeps each entry whole as JSON; `upsert`
    /// (SQLite's, PostgreSQL's) binds the id, the JSON and the time. On PostgreSQL the other
    /// instances hear of it as `change`.
    async fn put_whole<T: Serialize>(
        &self,
        upsert: (&'static str, &'static str),
        id: String,
        value: &T,
        what: &'static str,
        change: listen::Change,
    ) -> Result<(), CloudError> {
        let text = serde_json::to_string(value)
            .map_err(|e| CloudError::Corrupt(format!("{what}: {e}")))?;
        let now = crate::clock::now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(upsert.0, params![id, text, now])
                        .map_err(flashkart_sync::Error::from)
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                tx.execute(upsert.1, &[&id, &text, &now]).await?;
                listen::announce(&tx, change).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The whole roster.
    pub async fn riders(&self) -> Result<Vec<RosterRider>, CloudError> {
        let rows = self
            .backend
            .texts("SELECT rider FROM rider_roster ORDER BY id")
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
        let now = crate::clock::now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO delivery_pins (order_id, pin, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (order_id) DO NOTHING",
                        params![order_id, pin, now],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "INSERT INTO delivery_pins (order_id, pin, created_at) VALUES ($1, $2, $3)
                         ON CONFLICT (order_id) DO NOTHING",
                        &[&order_id, &pin, &now],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// An order's delivery PIN, if it has one.
    pub async fn delivery_pin(&self, order_id: &str) -> Result<Option<String>, CloudError> {
        let order_id = order_id.to_owned();
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| {
                    conn.prepare_cached("SELECT pin FROM delivery_pins WHERE order_id = ?1")?
                        .query_row([order_id], |row| row.get(0))
                        .optional()
                        .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query_opt(
                    "SELECT pin FROM delivery_pins WHERE order_id = $1",
                    &[&order_id],
                )
                .await?
                .map(|row| row.get(0))),
        }
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
        let now = crate::clock::now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO customers (id, first_name, token_sha256, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![row_id, first_name, hash, now],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "INSERT INTO customers (id, first_name, token_sha256, created_at)
                         VALUES ($1, $2, $3, $4)",
                        &[&row_id, &first_name, &hash, &now],
                    )
                    .await?;
            }
        }
        Ok((id, token))
    }

    /// The customer a bearer token belongs to: (id, first name).
    pub async fn customer(&self, token: &str) -> Result<Option<(String, String)>, CloudError> {
        let hash = token_hash(token);
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| {
                    conn.prepare_cached(
                        "SELECT id, first_name FROM customers WHERE token_sha256 = ?1",
                    )?
                    .query_row([hash], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query_opt(
                    "SELECT id, first_name FROM customers WHERE token_sha256 = $1",
                    &[&hash],
                )
                .await?
                .map(|row| (row.get(0), row.get(1)))),
        }
    }

    pub async fn put_coupon(&self, coupon: Coupon) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
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
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO coupons
                        (code, percent_off, amount_off_minor, min_basket_minor, active)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (code) DO UPDATE SET percent_off = excluded.percent_off,
                        amount_off_minor = excluded.amount_off_minor,
                        min_basket_minor = excluded.min_basket_minor, active = excluded.active",
                    &[
                        &coupon.code,
                        &coupon.percent_off,
                        &coupon.amount_off_minor,
                        &coupon.min_basket_minor,
                        &coupon.active,
                    ],
                )
                .await?;
                listen::announce(&tx, listen::Change::Records).await?;
                tx.commit().await?;
            }
        }
        self.touched();
        Ok(())
    }

    pub async fn coupon(&self, code: &str) -> Result<Option<Coupon>, CloudError> {
        let code = code.to_owned();
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| {
                    conn.prepare_cached(
                        "SELECT code, percent_off, amount_off_minor, min_basket_minor, active
                         FROM coupons WHERE code = ?1",
                    )?
                    .query_row([code], coupon_row)
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query_opt(
                    "SELECT code, percent_off, amount_off_minor, min_basket_minor, active
                     FROM coupons WHERE code = $1",
                    &[&code],
                )
                .await?
                .map(|row| pg_coupon(&row))),
        }
    }

    /// The order placed under `(customer, key)`, if any.
    pub async fn placed(&self, customer_id: &str, key: &str) -> Result<Option<Placed>, CloudError> {
        let (customer_id, key) = (customer_id.to_owned(), key.to_owned());
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| placed_row(conn, &customer_id, &key))
                .await?),
            Backend::Postgres(pg) => pg_placed_row(&**pg.client().await?, &customer_id, &key).await,
        }
    }

    /// Records the order decided for `(customer, key)` before it is written to the store, so a
    /// retry after a crash writes the same order to the same store. Returns the record that
    /// holds the key: `placed` if it was free, the earlier one otherwise. On PostgreSQL two
    /// instances remembering the same key at once both get the one that was inserted first
    /// (the second INSERT waits for the first's commit, does nothing, and reads its row).
    pub async fn remember(
        &self,
        customer_id: &str,
        key: &str,
        placed: Placed,
    ) -> Result<Placed, CloudError> {
        let (customer_id, key) = (customer_id.to_owned(), key.to_owned());
        let now = crate::clock::now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .write(move |conn| -> Result<Placed, flashkart_sync::Error> {
                    let inserted = conn
                        .prepare_cached(
                            "INSERT INTO idempotency
                                (customer_id, key, request_sha256, order_id, store_id, placed,
                                 created_at)
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
                            now
                        ])?;
                    if inserted == 1 {
                        return Ok(placed);
                    }
                    placed_row(conn, &customer_id, &key)?.ok_or_else(|| {
                        flashkart_sync::Error::from(rusqlite::Error::QueryReturnedNoRows)
                    })
                })
                .await?),
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let inserted = tx
                    .execute(
                        "INSERT INTO idempotency
                            (customer_id, key, request_sha256, order_id, store_id, placed,
                             created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (customer_id, key) DO NOTHING",
                        &[
                            &customer_id,
                            &key,
                            &placed.request_sha256,
                            &placed.order_id,
                            &placed.store_id,
                            &placed.placed,
                            &now,
                        ],
                    )
                    .await?;
                let held = if inserted == 1 {
                    placed
                } else {
                    pg_placed_row(&*tx, &customer_id, &key)
                        .await?
                        .ok_or_else(|| {
                            CloudError::Corrupt(format!(
                                "idempotency key {key} conflicted but holds no record"
                            ))
                        })?
                };
                tx.commit().await?;
                Ok(held)
            }
        }
    }
}

fn coupon_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Coupon> {
    Ok(Coupon {
        code: row.get(0)?,
        percent_off: row.get(1)?,
        amount_off_minor: row.get(2)?,
        min_basket_minor: row.get(3)?,
        active: row.get(4)?,
    })
}

fn pg_coupon(row: &tokio_postgres::Row) -> Coupon {
    Coupon {
        code: row.get(0),
        percent_off: row.get(1),
        amount_off_minor: row.get(2),
        min_basket_minor: row.get(3),
        active: row.get(4),
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

/// The idempotency record of `(customer, key)` on PostgreSQL, read by `client` (a pooled
/// connection or the caller's transaction).
async fn pg_placed_row(
    client: &impl tokio_postgres::GenericClient,
    customer_id: &str,
    key: &str,
) -> Result<Option<Placed>, CloudError> {
    Ok(client
        .query_opt(
            "SELECT request_sha256, order_id, store_id, placed FROM idempotency
             WHERE customer_id = $1 AND key = $2",
            &[&customer_id, &key],
        )
        .await?
        .map(|row| Placed {
            request_sha256: row.get(0),
            order_id: row.get(1),
            store_id: row.get(2),
            placed: row.get(3),
        }))
}
