//! Order intake: validate, price, route, and write the order into the chosen store's replica.
//!
//! The order is durable in three steps, each idempotent, so a crash or a retried request never
//! makes two orders: first the decision (order id, store, priced order) is recorded under the
//! customer's idempotency key in HQ's database; then the order rows are written into the
//! store's replica (the store's long-poll wakes and pulls them within a round trip); then the
//! read model records it. A retry with the same key finds the decision and redoes the later
//! steps with the same id and store, which change nothing the second time. Concurrent requests
//! with one key are serialised in memory, so the second waits and gets the first one's answer.
//!
//! After routing, the store reserves stock and may report lines short. [`Intake::on_short`]
//! decides: an order whose every line is short at a store that has not started picking is
//! rerouted to another store that has everything; otherwise the order is confirmed partial
//! (payments refund the short lines).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::area::distance_m;
use crate::config::IntakeConfig;
use crate::hq::{Hq, Placed};
use crate::projection::{Projection, RoutedOrder, ShortReport};
use crate::registry::hex;
use crate::routing::{self, Candidate, Estimates, NoStore};
use crate::stores::Stores;

/// A transition the cloud makes itself: (from, to, note).
type Step = (Option<&'static str>, &'static str, &'static str);

/// A new order: placed, authorised (payments will do this for real), routed.
const PLACED: &[Step] = &[
    (None, "PENDING", "placed"),
    (Some("PENDING"), "CONFIRMED", "payment authorised"),
    (Some("CONFIRMED"), "ROUTED", "routed"),
];

/// An order moved to another store.
const REROUTED: &[Step] = &[(Some("ROUTED"), "ROUTED", "rerouted")];

/// Highest delivery fee in minor units; far above any real fee, well inside `i64`.
const MAX_FEE_MINOR: f64 = 1e12;

fn out_of_range(what: &str) -> IntakeError {
    IntakeError::Invalid(format!(
        "the price of {what} is out of range: the order cannot be priced"
    ))
}

/// Why an order was not taken. Each maps to one HTTP status in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(String),
    #[error("idempotency key already used for a different order")]
    KeyReused,
    #[error(transparent)]
    NoStore(#[from] NoStore),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

impl From<flashkart_sync::Error> for IntakeError {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Cloud(error.into())
    }
}

/// `POST /api/v1/orders`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub address: Address,
    pub lines: Vec<LineRequest>,
    #[serde(default)]
    pub coupon: Option<String>,
    #[serde(default)]
    pub delivery_slot: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub text: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub product_id: String,
    pub qty: i64,
}

/// The priced, routed order: the answer to the customer, and what is remembered under the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlacedOrder {
    pub order_id: String,
    pub store_id: String,
    pub status: String,
    pub placed_at: String,
    pub promised_at: String,
    pub eta_minutes: u32,
    pub currency: String,
    pub lines: Vec<PricedLine>,
    pub items_minor: i64,
    pub discount_minor: i64,
    pub delivery_fee_minor: i64,
    pub surge_factor: f64,
    pub total_minor: i64,
    pub customer_first_name: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    pub delivery_slot: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PricedLine {
    pub line_no: i64,
    pub product_id: String,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub line_minor: i64,
}

/// A customer, authenticated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub first_name: String,
}

/// When each store's edge was last heard from, and whether one is waiting on a long-poll now.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    seen: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Held while a store's request is in flight (a long-poll may last many seconds).
#[derive(Debug)]
pub struct InFlight<'a> {
    liveness: &'a Liveness,
    store_id: String,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Liveness {
    /// Marks `store_id` seen now and in flight until the guard drops.
    pub fn enter(&self, store_id: &str) -> InFlight<'_> {
        if let Ok(mut seen) = self.seen.lock() {
            let entry = seen
                .entry(store_id.to_owned())
                .or_insert((0, Instant::now()));
            entry.0 += 1;
            entry.1 = Instant::now();
        }
        InFlight {
            liveness: self,
            store_id: store_id.to_owned(),
        }
    }

    /// Whether `store_id` is connected now or was within `grace` (since the cloud started,
    /// a store not yet heard from gets the same grace).
    pub fn online(&self, store_id: &str, grace: Duration) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        match seen.get(store_id) {
            Some((in_flight, last)) => *in_flight > 0 || last.elapsed() <= grace,
            None => self.started.elapsed() <= grace,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut seen) = self.liveness.seen.lock()
            && let Some(entry) = seen.get_mut(&self.store_id)
        {
            entry.0 = entry.0.saturating_sub(1);
            entry.1 = Instant::now();
        }
    }
}

/// Order intake and its collaborators.
#[derive(Debug)]
pub struct Intake {
    config: IntakeConfig,
    hq: Hq,
    projection: Projection,
    stores: Arc<Stores>,
    pub liveness: Liveness,
    /// One lock per idempotency key being placed.
    placing: Mutex<HashMap<(String, String), KeyLock>>,
}

/// The lock of one (customer, idempotency key) being placed.
type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// An order line at the store: line number, product, quantity, pieces short.
type ReplicaLine = (i64, String, i64, i64);

struct Product {
    active: bool,
    unit: String,
    unit_weight_g: i64,
    price_minor: Option<i64>,
    currency: String,
}

impl Intake {
    pub fn new(config: IntakeConfig, hq: Hq, projection: Projection, stores: Arc<Stores>) -> Self {
        Self {
            config,
            hq,
            projection,
            stores,
            liveness: Liveness::default(),
            placing: Mutex::new(HashMap::new()),
        }
    }

    /// Places an order; `Ok((order, replayed))`, `replayed` when the key had been used already.
    pub async fn place(
        &self,
        customer: &Customer,
        key: &str,
        request: OrderRequest,
    ) -> Result<(PlacedOrder, bool), IntakeError> {
        if key.is_empty() || key.len() > 128 || !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(IntakeError::Invalid(
                "Idempotency-Key must be 1-128 printable ASCII characters".into(),
            ));
        }
        let request_sha256 = {
            let canonical =
                serde_json::to_vec(&request).map_err(|e| IntakeError::Invalid(e.to_string()))?;
            hex(&Sha256::digest(canonical))
        };
        let lock = {
            let mut placing = self
                .placing
                .lock()
                .map_err(|_| IntakeError::Invalid("intake is shutting down".into()))?;
            placing
                .entry((customer.id.clone(), key.to_owned()))
                .or_default()
                .clone()
        };
        let result = {
            let _held = lock.lock().await;
            self.place_once(customer, key, &request_sha256, request)
                .await
        };
        if let Ok(mut placing) = self.placing.lock() {
            // The last holder removes the entry (the map holds one reference, we hold one).
            let map_key = (customer.id.clone(), key.to_owned());
            if placing
                .get(&map_key)
                .is_some_and(|l| Arc::strong_count(l) <= 2)
            {
                placing.remove(&map_key);
            }
        }
        result
    }

    async fn place_once(
        &self,
        customer: &Customer,
        key: &str,
        request_sha256: &str,
        request: OrderRequest,
    ) -> Result<(PlacedOrder, bool), IntakeError> {
        if let Some(earlier) = self.hq.placed(&customer.id, key).await? {
            return self.replay(customer, request_sha256, earlier).await;
        }
        let order = self.decide(customer, request).await?;
        let placed = Placed {
            request_sha256: request_sha256.to_owned(),
            order_id: order.order_id.clone(),
            store_id: order.store_id.clone(),
            placed: serde_json::to_string(&order)
                .map_err(|e| IntakeError::Invalid(e.to_string()))?,
        };
        let kept = self.hq.remember(&customer.id, key, placed).await?;
        if kept.order_id != order.order_id {
            return self.replay(customer, request_sha256, kept).await;
        }
        self.deliver_to_store(customer, &order, PLACED).await?;
        Ok((order, false))
    }

    async fn replay(
        &self,
        customer: &Customer,
        request_sha256: &str,
        earlier: Placed,
    ) -> Result<(PlacedOrder, bool), IntakeError> {
        if earlier.request_sha256 != request_sha256 {
            return Err(IntakeError::KeyReused);
        }
        let order: PlacedOrder = serde_json::from_str(&earlier.placed)
            .map_err(|e| CloudError::Corrupt(format!("idempotency record: {e}")))?;
        // The first attempt may have stopped before the store or the read model had it.
        self.deliver_to_store(customer, &order, PLACED).await?;
        Ok((order, true))
    }

    /// Validates, prices and routes; writes nothing.
    async fn decide(
        &self,
        customer: &Customer,
        request: OrderRequest,
    ) -> Result<PlacedOrder, IntakeError> {
        let limits = &self.config;
        let address = &request.address;
        if !(-90.0..=90.0).contains(&address.lat) || !(-180.0..=180.0).contains(&address.lon) {
            return Err(IntakeError::Invalid(
                "address lat/lon is not a position on Earth".into(),
            ));
        }
        if address.text.trim().is_empty() || address.text.len() > 500 {
            return Err(IntakeError::Invalid(
                "address.text must be 1-500 characters".into(),
            ));
        }
        if request.lines.is_empty() || request.lines.len() > limits.max_lines {
            return Err(IntakeError::Invalid(format!(
                "an order has 1-{} lines",
                limits.max_lines
            )));
        }
        if let Some(slot) = &request.delivery_slot
            && slot.len() > 64
        {
            return Err(IntakeError::Invalid(
                "delivery_slot is at most 64 characters".into(),
            ));
        }
        if let Some(code) = &request.coupon
            && (code.is_empty() || code.len() > 32)
        {
            return Err(IntakeError::Invalid(
                "a coupon code is 1-32 characters".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for line in &request.lines {
            if line.product_id.is_empty() || line.product_id.len() > 64 {
                return Err(IntakeError::Invalid(
                    "a product_id is 1-64 characters".into(),
                ));
            }
            if line.qty < 1 || line.qty > limits.max_qty_per_line {
                return Err(IntakeError::Invalid(format!(
                    "qty of {} must be 1-{}",
                    line.product_id, limits.max_qty_per_line
                )));
            }
            if !seen.insert(line.product_id.as_str()) {
                return Err(IntakeError::Invalid(format!(
                    "product {} is on two lines: put the quantity on one",
                    line.product_id
                )));
            }
        }
        let products = self.products(&request).await?;
        let mut lines = Vec::with_capacity(request.lines.len());
        let mut currency = None;
        for (index, line) in request.lines.iter().enumerate() {
            let product = products.get(&line.product_id).ok_or_else(|| {
                IntakeError::Invalid(format!("unknown product {}", line.product_id))
            })?;
            let price = match (product.active, product.price_minor) {
                (true, Some(price)) => price,
                _ => {
                    return Err(IntakeError::Invalid(format!(
                        "product {} is not sold",
                        line.product_id
                    )));
                }
            };
            if *currency.get_or_insert(product.currency.clone()) != product.currency {
                return Err(IntakeError::Invalid(
                    "products are priced in different currencies".into(),
                ));
            }
            // Sold by weight: a piece is priced at the catalog's typical weight; the store
            // weighs it and the payment is adjusted at capture.
            let unit_price_minor = if product.unit == "kg" {
                i64::try_from(i128::from(price) * i128::from(product.unit_weight_g) / 1000)
                    .map_err(|_| out_of_range(&line.product_id))?
            } else {
                price
            };
            if unit_price_minor < 0 {
                return Err(out_of_range(&line.product_id));
            }
            lines.push(PricedLine {
                line_no: i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1),
                product_id: line.product_id.clone(),
                qty: line.qty,
                unit_price_minor,
                line_minor: unit_price_minor
                    .checked_mul(line.qty)
                    .ok_or_else(|| out_of_range(&line.product_id))?,
            });
        }
        let items_minor = lines
            .iter()
            .try_fold(0_i64, |sum, l| sum.checked_add(l.line_minor))
            .ok_or_else(|| out_of_range("the basket"))?;
        let discount_minor = match &request.coupon {
            None => 0,
            Some(code) => {
                let coupon = self
                    .hq
                    .coupon(code)
                    .await?
                    .filter(|c| c.active)
                    .ok_or_else(|| IntakeError::Invalid(format!("coupon {code} is not valid")))?;
                if items_minor < coupon.min_basket_minor {
                    return Err(IntakeError::Invalid(format!(
                        "coupon {code} needs a basket of at least {}",
                        coupon.min_basket_minor
                    )));
                }
                // Coupons from before their amounts were bounded may hold anything.
                let percent = i128::from(items_minor) * i128::from(coupon.percent_off) / 100;
                let off = percent
                    .saturating_add(i128::from(coupon.amount_off_minor))
                    .clamp(0, i128::from(items_minor));
                i64::try_from(off).unwrap_or(items_minor)
            }
        };

        let quantities: Vec<i64> = lines.iter().map(|l| l.qty).collect();
        let product_ids: Vec<String> = lines.iter().map(|l| l.product_id.clone()).collect();
        let (available, backlog, riders) = tokio::try_join!(
            self.projection.available(product_ids.clone()),
            self.projection.backlog(),
            self.projection.riders_seen(crate::clock::rfc3339(
                crate::clock::now() - time::Duration::minutes(10)
            )),
        )?;
        let stores = self.hq.stores();
        let candidates = self.candidates(
            &stores,
            (address.lat, address.lon),
            &product_ids,
            &available,
            &backlog,
            None,
        );
        let estimates = self.estimates();
        let choice = routing::choose(&candidates, &quantities, &estimates)?;

        // Delivery fee: base + distance, times a surge from the store's demand per rider.
        let demand = f64::from(
            backlog
                .get(&choice.store_id)
                .copied()
                .unwrap_or(0)
                .saturating_add(1),
        );
        let supply = f64::from(riders.get(&choice.store_id).copied().unwrap_or(0));
        let surge_factor = if supply == 0.0 {
            self.config.surge_cap
        } else {
            (demand / supply).clamp(1.0, self.config.surge_cap)
        };
        let surge_factor = (surge_factor * 100.0).round() / 100.0;
        let km = choice.distance_m / 1000.0;
        let fee = (self.config.base_fee_minor as f64 + self.config.fee_per_km_minor as f64 * km)
            * surge_factor;
        // `as` would saturate a huge or NaN fee silently; refuse it instead.
        let fee = fee.round();
        if !(0.0..=MAX_FEE_MINOR).contains(&fee) {
            return Err(out_of_range("the delivery fee"));
        }
        let delivery_fee_minor = fee as i64;
        let total_minor = items_minor
            .checked_sub(discount_minor)
            .and_then(|t| t.checked_add(delivery_fee_minor))
            .ok_or_else(|| out_of_range("the order total"))?;
        let placed = crate::clock::now();
        let sla = stores
            .iter()
            .find(|s| s.profile.id == choice.store_id)
            .map_or(30, |s| s.profile.sla_minutes);
        let promised = placed + time::Duration::minutes(i64::from(sla));
        Ok(PlacedOrder {
            order_id: uuid::Uuid::now_v7().to_string(),
            store_id: choice.store_id,
            status: "ROUTED".into(),
            placed_at: crate::clock::rfc3339(placed),
            promised_at: crate::clock::rfc3339(promised),
            eta_minutes: choice.eta_minutes.ceil() as u32,
            currency: currency.unwrap_or_else(|| "EUR".into()),
            lines,
            items_minor,
            discount_minor,
            delivery_fee_minor,
            surge_factor,
            total_minor,
            customer_first_name: customer.first_name.clone(),
            address: address.text.clone(),
            lat: address.lat,
            lon: address.lon,
            delivery_slot: request.delivery_slot,
        })
    }

    /// What routing needs to know of every profiled store (but `except`) for an address.
    fn candidates(
        &self,
        stores: &[crate::hq::RoutableStore],
        (lat, lon): (f64, f64),
        product_ids: &[String],
        available: &BTreeMap<(String, String), i64>,
        backlog: &BTreeMap<String, u32>,
        except: Option<&str>,
    ) -> Vec<Candidate> {
        let now_unix = crate::clock::now().unix_timestamp();
        let grace = Duration::from_millis(self.config.offline_grace_ms);
        stores
            .iter()
            .filter(|s| except != Some(s.profile.id.as_str()))
            .map(|s| {
                let p = &s.profile;
                Candidate {
                    store_id: p.id.clone(),
                    in_area: s.area.contains(lat, lon),
                    distance_m: distance_m((p.lat, p.lon), (lat, lon)),
                    max_radius_m: p.max_radius_m,
                    open: p.hours.is_open(now_unix),
                    online: self.liveness.online(&p.id, grace),
                    backlog: backlog.get(&p.id).copied().unwrap_or(0),
                    capacity: p.capacity,
                    sla_minutes: p.sla_minutes,
                    available: product_ids
                        .iter()
                        .map(|product| {
                            available
                                .get(&(p.id.clone(), product.clone()))
                                .copied()
                                .unwrap_or(0)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn estimates(&self) -> Estimates {
        Estimates {
            prep_minutes: self.config.prep_minutes,
            minutes_per_queued_order: self.config.minutes_per_queued_order,
            speed_m_per_min: self.config.rider_speed_kmh * 1000.0 / 60.0,
        }
    }

    async fn products(
        &self,
        request: &OrderRequest,
    ) -> Result<BTreeMap<String, Product>, IntakeError> {
        let ids: Vec<String> = request.lines.iter().map(|l| l.product_id.clone()).collect();
        Ok(self
            .stores
            .catalog()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let mut stmt = conn.prepare_cached(
                    "SELECT p.active, p.unit, p.unit_weight_g, pr.unit_price_minor, pr.currency
                     FROM products p LEFT JOIN prices pr ON pr.product_id = p.id WHERE p.id = ?1",
                )?;
                let mut out = BTreeMap::new();
                for id in ids {
                    let product = stmt
                        .query_row([&id], |row| {
                            Ok(Product {
                                active: row.get(0)?,
                                unit: row.get(1)?,
                                unit_weight_g: row.get(2)?,
                                price_minor: row.get(3)?,
                                currency: row
                                    .get::<_, Option<String>>(4)?
                                    .unwrap_or_else(|| "EUR".into()),
                            })
                        })
                        .optional()?;
                    if let Some(product) = product {
                        out.insert(id, product);
                    }
                }
                Ok(out)
            })
            .await?)
    }

    /// Writes the order rows into the store's replica (waking its long-poll) and the read model.
    async fn deliver_to_store(
        &self,
        customer: &Customer,
        order: &PlacedOrder,
        steps: &[Step],
    ) -> Result<(), IntakeError> {
        let replica = self.stores.replica(&order.store_id).await?;
        let rows = order.clone();
        replica
            .write(move |conn| write_order_rows(conn, &rows))
            .await?;
        self.projection
            .record_routed(RoutedOrder {
                id: order.order_id.clone(),
                store_id: order.store_id.clone(),
                customer_id: customer.id.clone(),
                at: order.placed_at.clone(),
                placed_at: order.placed_at.clone(),
                promised_at: order.promised_at.clone(),
                total_minor: order.total_minor,
                delivery_fee_minor: order.delivery_fee_minor,
                lat: order.lat,
                lon: order.lon,
                steps: steps.to_vec(),
            })
            .await?;
        Ok(())
    }

    /// Follows the projector's short reports until shutdown.
    pub async fn run_short_handler(
        self: Arc<Self>,
        mut shorts: mpsc::Receiver<ShortReport>,
        shutdown: CancellationToken,
    ) {
        loop {
            let report = tokio::select! {
                report = shorts.recv() => report,
                () = shutdown.cancelled() => None,
            };
            let Some(report) = report else { return };
            if let Err(error) = self.on_short(&report).await {
                tracing::warn!(order = %report.order_id, %error, "short lines not handled");
            }
        }
    }

    /// Reroutes or confirms partial an order its store reported short.
    pub async fn on_short(&self, report: &ShortReport) -> Result<(), IntakeError> {
        let Some(view) = self.projection.order(&report.order_id).await? else {
            return Ok(());
        };
        if view.store_id != report.store_id
            || view.timeline.iter().any(|t| {
                t.source == "cloud"
                    && t.store_id == report.store_id
                    && matches!(t.status.as_str(), "PARTIAL_CONFIRMED" | "REROUTED")
            })
        {
            return Ok(());
        }
        let replica = self.stores.replica(&report.store_id).await?;
        let order_id = report.order_id.clone();
        let (lines, placed): (Vec<ReplicaLine>, Option<String>) = replica
            .db()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let lines = conn
                    .prepare_cached(
                        "SELECT l.line_no, l.product_id, l.qty, coalesce(p.short_qty, 0)
                         FROM order_lines l LEFT JOIN order_line_progress p
                           ON p.order_id = l.order_id AND p.line_no = l.line_no
                         WHERE l.order_id = ?1 ORDER BY l.line_no",
                    )?
                    .query_map([&order_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let status: Option<String> = conn
                    .prepare_cached("SELECT status FROM order_progress WHERE order_id = ?1")?
                    .query_row([&order_id], |r| r.get(0))
                    .optional()?;
                Ok((lines, status))
            })
            .await?;
        let all_short = !lines.is_empty() && lines.iter().all(|(_, _, qty, short)| short >= qty);
        let not_started = matches!(placed.as_deref(), Some("ROUTED" | "ACCEPTED"));
        if all_short && not_started && self.reroute(&view, &lines).await? {
            return Ok(());
        }
        let short: Vec<String> = lines
            .iter()
            .filter(|(_, _, _, short)| *short > 0)
            .map(|(line_no, product, _, short)| format!("line {line_no} ({product}) short {short}"))
            .collect();
        self.projection
            .note(
                &report.order_id,
                &report.store_id,
                "PARTIAL_CONFIRMED",
                format!("confirmed partial, to refund: {}", short.join(", ")),
            )
            .await?;
        Ok(())
    }

    /// Moves an order to another store that has every line, if one can take it now.
    async fn reroute(
        &self,
        view: &crate::projection::OrderView,
        lines: &[(i64, String, i64, i64)],
    ) -> Result<bool, IntakeError> {
        let Some(customer_id) = view.customer_id.clone() else {
            return Ok(false);
        };
        let product_ids: Vec<String> = lines.iter().map(|l| l.1.clone()).collect();
        let quantities: Vec<i64> = lines.iter().map(|l| l.2).collect();
        let (available, backlog) = tokio::try_join!(
            self.projection.available(product_ids.clone()),
            self.projection.backlog(),
        )?;
        let (lat, lon) = self
            .replica_order_position(&view.store_id, &view.id)
            .await?
            .unwrap_or((0.0, 0.0));
        let candidates = self.candidates(
            &self.hq.stores(),
            (lat, lon),
            &product_ids,
            &available,
            &backlog,
            Some(&view.store_id),
        );
        let Ok(choice) = routing::choose(&candidates, &quantities, &self.estimates()) else {
            return Ok(false);
        };
        if !choice.has_everything {
            return Ok(false);
        }
        // Cancel at the first store (it releases its reservations), then route to the second.
        let from = self.stores.replica(&view.store_id).await?;
        let order_id = view.id.clone();
        let now = crate::clock::now_rfc3339();
        let moved = from
            .write(move |conn| -> Result<Option<PlacedOrder>, flashkart_sync::Error> {
                conn.execute(
                    "UPDATE orders SET cancel_requested_at = ?2, cancel_reason = 'rerouted: out of stock'
                     WHERE id = ?1 AND cancel_requested_at IS NULL",
                    params![order_id, now],
                )?;
                read_order_rows(conn, &order_id)
            })
            .await?;
        let Some(mut order) = moved else {
            return Ok(false);
        };
        self.projection
            .note(
                &view.id,
                &view.store_id,
                "REROUTED",
                format!("every line short; rerouted to {}", choice.store_id),
            )
            .await?;
        order.store_id = choice.store_id.clone();
        order.promised_at = view.promised_at.clone().unwrap_or_default();
        let customer = Customer {
            id: customer_id,
            first_name: order.customer_first_name.clone(),
        };
        self.deliver_to_store(&customer, &order, REROUTED).await?;
        tracing::info!(order = %view.id, from = %view.store_id, to = %choice.store_id, "rerouted");
        Ok(true)
    }

    async fn replica_order_position(
        &self,
        store_id: &str,
        order_id: &str,
    ) -> Result<Option<(f64, f64)>, IntakeError> {
        let replica = self.stores.replica(store_id).await?;
        let order_id = order_id.to_owned();
        Ok(replica
            .db()
            .read(move |conn| {
                conn.prepare_cached("SELECT lat, lon FROM orders WHERE id = ?1")?
                    .query_row([order_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }
}

fn write_order_rows(
    conn: &rusqlite::Connection,
    order: &PlacedOrder,
) -> Result<(), flashkart_sync::Error> {
    conn.prepare_cached(
        "INSERT INTO orders (id, store_id, customer_first_name, address, lat, lon, delivery_slot,
            total_minor, placed_at, routed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![
        order.order_id,
        order.store_id,
        order.customer_first_name,
        order.address,
        order.lat,
        order.lon,
        order.delivery_slot,
        order.total_minor,
        order.placed_at,
        crate::clock::now_rfc3339()
    ])?;
    for line in &order.lines {
        conn.prepare_cached(
            "INSERT INTO order_lines (order_id, line_no, store_id, product_id, qty, unit_price_minor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (order_id, line_no) DO NOTHING",
        )?
        .execute(params![
            order.order_id,
            line.line_no,
            order.store_id,
            line.product_id,
            line.qty,
            line.unit_price_minor
        ])?;
    }
    Ok(())
}

/// The order rows of a replica, as intake wrote them (for a reroute).
fn read_order_rows(
    conn: &rusqlite::Connection,
    order_id: &str,
) -> Result<Option<PlacedOrder>, flashkart_sync::Error> {
    let order = conn
        .prepare_cached(
            "SELECT store_id, customer_first_name, address, lat, lon, delivery_slot, total_minor,
                placed_at FROM orders WHERE id = ?1",
        )?
        .query_row([order_id], |r| {
            Ok(PlacedOrder {
                order_id: order_id.to_owned(),
                store_id: r.get(0)?,
                status: "ROUTED".into(),
                placed_at: r.get(7)?,
                promised_at: String::new(),
                eta_minutes: 0,
                currency: String::new(),
                lines: Vec::new(),
                items_minor: 0,
                discount_minor: 0,
                delivery_fee_minor: 0,
                surge_factor: 1.0,
                total_minor: r.get(6)?,
                customer_first_name: r.get(1)?,
                address: r.get(2)?,
                lat: r.get(3)?,
                lon: r.get(4)?,
                delivery_slot: r.get(5)?,
            })
        })
        .optional()?;
    let Some(mut order) = order else {
        return Ok(None);
    };
    order.lines = conn
        .prepare_cached(
            "SELECT line_no, product_id, qty, unit_price_minor FROM order_lines
             WHERE order_id = ?1 ORDER BY line_no",
        )?
        .query_map([order_id], |r| {
            let (qty, unit): (i64, i64) = (r.get(2)?, r.get(3)?);
            Ok(PricedLine {
                line_no: r.get(0)?,
                product_id: r.get(1)?,
                qty,
                unit_price_minor: unit,
                line_minor: qty
                    .checked_mul(unit)
                    .ok_or(rusqlite::Error::IntegralValueOutOfRange(3, unit))?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(order))
}
