//! Customers' ratings of their delivered orders: 1-5 stars for the delivery (the rider) and
//! 1-5 for the order (the store), with an optional comment.
//!
//! One rating per order, final once given: a second one is refused
//! ([`RatingError::AlreadyRated`], 409) rather than overwriting the first, so the figures built
//! on them (a rider's effective rating in dispatch, a store's quality on the dashboard) cannot
//! be nudged by rating the same order over and over. Whether the order is the caller's and
//! delivered is the API's check (`api/ratings.rs`, against the read model); what is stored and
//! how it is summed up is this module's. Ratings live in `hq.db` only and are never synced.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::listen::{self, Change};
use super::{Backend, Hq, RosterRider};
use crate::CloudError;

/// A comment's length, in characters, after trimming.
pub const MAX_COMMENT_CHARS: usize = 500;
/// A rider's effective rating is the mean of at most this many of their latest rated deliveries.
pub const RIDER_WINDOW: u32 = 50;
/// ... and only once they have at least this many; the roster's rating until then.
pub const RIDER_MIN_RATINGS: u32 = 5;

pub(super) const SCHEMA: &str = "
    CREATE TABLE order_ratings (
        -- one rating per order
        order_id TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        -- the rider who accepted the order, if the read model knows one
        rider_id TEXT,
        delivery_stars INTEGER NOT NULL CHECK (delivery_stars BETWEEN 1 AND 5),
        order_stars INTEGER NOT NULL CHECK (order_stars BETWEEN 1 AND 5),
        -- trimmed; NULL when absent or blank
        comment TEXT CHECK (comment IS NULL OR length(comment) <= 500),
        created_at TEXT NOT NULL
    );
    CREATE INDEX order_ratings_by_rider ON order_ratings (rider_id, created_at)
        WHERE rider_id IS NOT NULL;
    CREATE INDEX order_ratings_by_time ON order_ratings (created_at, store_id);
";

pub(super) const PG_SCHEMA: &str = "
    CREATE TABLE order_ratings (
        order_id TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        rider_id TEXT,
        delivery_stars BIGINT NOT NULL CHECK (delivery_stars BETWEEN 1 AND 5),
        order_stars BIGINT NOT NULL CHECK (order_stars BETWEEN 1 AND 5),
        comment TEXT CHECK (comment IS NULL OR char_length(comment) <= 500),
        created_at TEXT NOT NULL
    );
    CREATE INDEX order_ratings_by_rider ON order_ratings (rider_id, created_at)
        WHERE rider_id IS NOT NULL;
    CREATE INDEX order_ratings_by_time ON order_ratings (created_at, store_id);
";

/// Stars as PostgreSQL returns them (BIGINT, checked 1-5 by the table).
fn pg_stars(row: &tokio_postgres::Row, index: usize) -> Result<u8, CloudError> {
    u8::try_from(row.get::<_, i64>(index))
        .map_err(|_| CloudError::Corrupt("stars outside 1-5".into()))
}

/// What storing a rating can refuse; `http/error.rs` gives each its status.
#[derive(Debug, thiserror::Error)]
pub enum RatingError {
    /// Stars or comment of the wrong shape.
    #[error("{0}")]
    Invalid(String),
    #[error("order {0} is rated already; a rating cannot be changed")]
    AlreadyRated(String),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

impl From<flashkart_sync::Error> for RatingError {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Cloud(error.into())
    }
}

/// The customer's part of a rating, checked: stars 1-5, the comment trimmed (blank is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stars {
    pub delivery_stars: u8,
    pub order_stars: u8,
    pub comment: Option<String>,
}

impl Stars {
    /// Checks stars given as JSON values (so `4.5`, `"5"` or `0` are refused here, as 422,
    /// rather than as malformed JSON) and a comment of at most [`MAX_COMMENT_CHARS`].
    pub fn new(
        delivery: &serde_json::Value,
        order: &serde_json::Value,
        comment: Option<&str>,
    ) -> Result<Self, RatingError> {
        let stars = |field: &str, value: &serde_json::Value| {
            value
                .as_u64()
                .filter(|n| (1..=5).contains(n))
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| RatingError::Invalid(format!("{field} must be an integer 1-5")))
        };
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if let Some(text) = comment {
            if text.chars().count() > MAX_COMMENT_CHARS {
                return Err(RatingError::Invalid(format!(
                    "comment must be at most {MAX_COMMENT_CHARS} characters"
                )));
            }
            if text.chars().any(|c| c.is_control() && c != '\n') {
                return Err(RatingError::Invalid(
                    "comment must not contain control characters".into(),
                ));
            }
        }
        Ok(Self {
            delivery_stars: stars("delivery_stars", delivery)?,
            order_stars: stars("order_stars", order)?,
            comment: comment.map(str::to_owned),
        })
    }
}

/// A stored rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRating {
    pub order_id: String,
    pub customer_id: String,
    pub store_id: String,
    pub rider_id: Option<String>,
    pub delivery_stars: u8,
    pub order_stars: u8,
    pub comment: Option<String>,
    pub created_at: String,
}

/// A rider's latest rated deliveries: how many (at most [`RIDER_WINDOW`]) and their mean
/// delivery stars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiderRatings {
    pub count: u32,
    pub mean_delivery_stars: f64,
}

/// A store's ratings over a window: how many and the mean stars of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StoreRatings {
    pub count: u32,
    pub mean_order_stars: Option<f64>,
    pub mean_delivery_stars: Option<f64>,
}

/// The rating dispatch uses for a rider: the mean delivery stars of their latest
/// [`RIDER_WINDOW`] (50) rated deliveries once they have at least [`RIDER_MIN_RATINGS`] (5);
/// until then the rating HQ set in the roster (5 unless HQ said otherwise). Customers' stars
/// replace HQ's guess as soon as there are enough of them to mean something, and the window
/// lets a rider who improves recover.
pub fn effective_rating(roster: f32, ratings: Option<&RiderRatings>) -> f32 {
    match ratings {
        Some(r) if r.count >= RIDER_MIN_RATINGS => (r.mean_delivery_stars as f32).clamp(1.0, 5.0),
        _ => roster,
    }
}

impl Hq {
    /// Stores a rating (checked by [`Stars::new`]); a second one for the order is
    /// [`RatingError::AlreadyRated`] and changes nothing.
    pub async fn add_rating(&self, rating: OrderRating) -> Result<OrderRating, RatingError> {
        let stored = rating.clone();
        let inserted = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    let r = &stored;
                    conn.prepare_cached(
                        "INSERT INTO order_ratings (order_id, customer_id, store_id, rider_id,
                        delivery_stars, order_stars, comment, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (order_id) DO NOTHING",
                    )?
                    .execute(params![
                        r.order_id,
                        r.customer_id,
                        r.store_id,
                        r.rider_id,
                        r.delivery_stars,
                        r.order_stars,
                        r.comment,
                        r.created_at
                    ])
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let r = &stored;
                let mut client = pg.client().await?;
                let tx = client.transaction().await.map_err(CloudError::from)?;
                let n = tx
                    .execute(
                        "INSERT INTO order_ratings (order_id, customer_id, store_id, rider_id,
                            delivery_stars, order_stars, comment, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (order_id) DO NOTHING",
                        &[
                            &r.order_id,
                            &r.customer_id,
                            &r.store_id,
                            &r.rider_id,
                            &i64::from(r.delivery_stars),
                            &i64::from(r.order_stars),
                            &r.comment,
                            &r.created_at,
                        ],
                    )
                    .await
                    .map_err(CloudError::from)?;
                if n > 0 {
                    listen::announce(&tx, Change::Records).await?;
                }
                tx.commit().await.map_err(CloudError::from)?;
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        if inserted == 0 {
            return Err(RatingError::AlreadyRated(rating.order_id));
        }
        self.touched();
        Ok(rating)
    }

    /// An order's rating, if it has one.
    pub async fn rating(&self, order_id: &str) -> Result<Option<OrderRating>, CloudError> {
        let order_id = order_id.to_owned();
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                let row = pg
                    .client()
                    .await?
                    .query_opt(
                        "SELECT order_id, customer_id, store_id, rider_id, delivery_stars,
                            order_stars, comment, created_at
                         FROM order_ratings WHERE order_id = $1",
                        &[&order_id],
                    )
                    .await?;
                return row
                    .map(|row| {
                        Ok(OrderRating {
                            order_id: row.get(0),
                            customer_id: row.get(1),
                            store_id: row.get(2),
                            rider_id: row.get(3),
                            delivery_stars: pg_stars(&row, 4)?,
                            order_stars: pg_stars(&row, 5)?,
                            comment: row.get(6),
                            created_at: row.get(7),
                        })
                    })
                    .transpose();
            }
        };
        Ok(db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT order_id, customer_id, store_id, rider_id, delivery_stars,
                        order_stars, comment, created_at
                     FROM order_ratings WHERE order_id = ?1",
                )?
                .query_row([order_id], |row| {
                    Ok(OrderRating {
                        order_id: row.get(0)?,
                        customer_id: row.get(1)?,
                        store_id: row.get(2)?,
                        rider_id: row.get(3)?,
                        delivery_stars: row.get(4)?,
                        order_stars: row.get(5)?,
                        comment: row.get(6)?,
                        created_at: row.get(7)?,
                    })
                })
                .optional()
                .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }

    /// The latest rated deliveries of each of `riders` (at most [`RIDER_WINDOW`] rows each,
    /// read along the by-rider index in one query); riders with none are left out.
    pub async fn rider_ratings(
        &self,
        riders: &[String],
    ) -> Result<HashMap<String, RiderRatings>, CloudError> {
        if riders.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, i64, Option<f64>)> = match &self.backend {
            Backend::Sqlite(db) => {
                let ids = serde_json::to_string(riders)
                    .map_err(|e| CloudError::Task(format!("rider ids: {e}")))?;
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT j.value,
                        (SELECT count(*) FROM (SELECT 1 FROM order_ratings
                            WHERE rider_id = j.value
                            ORDER BY created_at DESC, order_id DESC LIMIT ?2)),
                        (SELECT avg(delivery_stars) FROM (SELECT delivery_stars FROM order_ratings
                            WHERE rider_id = j.value
                            ORDER BY created_at DESC, order_id DESC LIMIT ?2))
                     FROM (SELECT DISTINCT value FROM json_each(?1)) j",
                    )?
                    .query_map(params![ids, RIDER_WINDOW], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            // The same window per rider: a lateral subquery along the by-rider index.
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query(
                    "SELECT r.id, count(w.delivery_stars), avg(w.delivery_stars)::float8
                     FROM (SELECT DISTINCT unnest($1::text[]) AS id) r
                     LEFT JOIN LATERAL (SELECT delivery_stars FROM order_ratings
                         WHERE rider_id = r.id
                         ORDER BY created_at DESC, order_id DESC LIMIT $2) w ON TRUE
                     GROUP BY r.id",
                    &[&riders, &i64::from(RIDER_WINDOW)],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect(),
        };
        Ok(rows
            .into_iter()
            .filter_map(|(id, count, mean)| {
                let count = u32::try_from(count).ok().filter(|n| *n > 0)?;
                Some((
                    id,
                    RiderRatings {
                        count,
                        mean_delivery_stars: mean?,
                    },
                ))
            })
            .collect())
    }

    /// The rating dispatch uses for each of `riders` ([`effective_rating`]), by rider id.
    pub async fn effective_ratings(
        &self,
        riders: &[&RosterRider],
    ) -> Result<HashMap<String, f32>, CloudError> {
        let ids: Vec<String> = riders.iter().map(|r| r.id.clone()).collect();
        let rated = self.rider_ratings(&ids).await?;
        Ok(riders
            .iter()
            .map(|r| (r.id.clone(), effective_rating(r.rating, rated.get(&r.id))))
            .collect())
    }

    /// Each store's ratings given at or after `since` (RFC 3339), by store id.
    pub async fn store_ratings(
        &self,
        since: &str,
    ) -> Result<BTreeMap<String, StoreRatings>, CloudError> {
        let since = since.to_owned();
        let rows: Vec<(String, i64, Option<f64>, Option<f64>)> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT store_id, count(*), avg(order_stars), avg(delivery_stars)
                     FROM order_ratings WHERE created_at >= ?1 GROUP BY store_id",
                    )?
                    .query_map([since], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query(
                    "SELECT store_id, count(*), avg(order_stars)::float8,
                        avg(delivery_stars)::float8
                     FROM order_ratings WHERE created_at >= $1 GROUP BY store_id",
                    &[&since],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
                .collect(),
        };
        Ok(rows
            .into_iter()
            .map(|(store, count, order, delivery)| {
                (
                    store,
                    StoreRatings {
                        count: u32::try_from(count.max(0)).unwrap_or(u32::MAX),
                        mean_order_stars: order,
                        mean_delivery_stars: delivery,
                    },
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stars_are_integers_one_to_five_and_comments_are_trimmed() {
        let ok = Stars::new(&json!(5), &json!(1), Some("  quick, thanks  ")).expect("valid");
        assert_eq!(
            (ok.delivery_stars, ok.order_stars, ok.comment.as_deref()),
            (5, 1, Some("quick, thanks"))
        );
        assert_eq!(
            Stars::new(&json!(3), &json!(3), Some("   "))
                .expect("valid")
                .comment,
            None
        );
        for bad in [
            json!(0),
            json!(6),
            json!(4.5),
            json!("5"),
            json!(-1),
            json!(null),
        ] {
            assert!(
                matches!(
                    Stars::new(&bad, &json!(3), None),
                    Err(RatingError::Invalid(_))
                ),
                "{bad}"
            );
            assert!(matches!(
                Stars::new(&json!(3), &bad, None),
                Err(RatingError::Invalid(_))
            ));
        }
        let long = "é".repeat(MAX_COMMENT_CHARS);
        assert!(Stars::new(&json!(4), &json!(4), Some(&long)).is_ok());
        let longer = "é".repeat(MAX_COMMENT_CHARS + 1);
        assert!(Stars::new(&json!(4), &json!(4), Some(&longer)).is_err());
        assert!(Stars::new(&json!(4), &json!(4), Some("a\u{0}b")).is_err());
    }

    #[test]
    fn the_roster_rating_stands_until_enough_ratings() {
        let few = RiderRatings {
            count: RIDER_MIN_RATINGS - 1,
            mean_delivery_stars: 1.0,
        };
        let enough = RiderRatings {
            count: RIDER_MIN_RATINGS,
            mean_delivery_stars: 2.4,
        };
        assert_eq!(effective_rating(4.5, None), 4.5);
        assert_eq!(effective_rating(4.5, Some(&few)), 4.5);
        assert!((effective_rating(4.5, Some(&enough)) - 2.4).abs() < 1e-6);
    }
}
