//! `flashkart-edge-sim staff`: a simulated member of staff working a store through its API.
//!
//! For the demo. It signs in like a tablet would, stocks the store on start if it is empty
//! (one bin, every product of `--stock-gtins` slotted there and received, once the catalog has
//! arrived from the cloud by sync), tops a product up when it runs low, and then works the
//! queue like a picker: every ACCEPTED order is picked by scanning each line's GTIN, packed
//! with the bag weight the scale would show (a lead or manager overrides a refused weight, as
//! the pack station allows), and marked READY, with a pause between steps so whoever watches
//! the queues or the event stream sees the states move. Riders are not its job: the cloud's
//! dispatcher offers READY orders to them.
//!
//! It only talks HTTP; every error is logged and the work goes on (an order that cannot be
//! worked is skipped after a few tries). It stops at the shutdown token.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::edge_api::{CallError, EdgeApi};

/// `flashkart-edge-sim staff ...`
#[derive(Debug, Clone, clap::Args)]
pub struct StaffSimArgs {
    /// The store daemon's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub edge: String,
    /// Who signs in (a lead or manager can also override a refused bag weight).
    #[arg(long, default_value = "manager")]
    pub staff_id: String,
    #[arg(long, env = "FLASHKART_STAFF_PIN")]
    pub pin: String,
    /// GTINs of the products to keep in stock (comma-separated or repeated); the picker scans
    /// these, so every product that can be ordered should be here.
    #[arg(long, value_delimiter = ',', required = true)]
    pub stock_gtins: Vec<String>,
    /// Packages received per product when stocking or topping up.
    #[arg(long, default_value_t = 50)]
    pub stock_qty: i64,
    /// Top a product up when fewer than this many are available.
    #[arg(long, default_value_t = 10)]
    pub restock_below: i64,
    /// The bin everything is slotted to.
    #[arg(long, default_value = "A-1")]
    pub bin: String,
    /// Pause between steps (each scan, pack, ready), in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub step_ms: u64,
    /// How often to look at the queues, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaffStats {
    pub ready: u64,
    pub overrides: u64,
    pub failed: u64,
    pub received: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct QueueEntry {
    order_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Queues {
    #[serde(default)]
    new: Vec<QueueEntry>,
    #[serde(default)]
    picking: Vec<QueueEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct Stop {
    line_no: i64,
    product_id: String,
    product_name: String,
    qty: i64,
    bin_id: Option<String>,
}

/// A product the store keeps: its id and the GTIN the picker scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stocked {
    pub product_id: String,
    pub name: String,
    pub gtin: String,
}

/// Sleeps; true if the shutdown token fired first.
async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}

/// The pause between steps, with a little jitter (0.7x to 1.3x).
fn step(args: &StaffSimArgs) -> Duration {
    let ms = args.step_ms as f64 * rand::rng().random_range(0.7..1.3);
    Duration::from_millis(ms as u64)
}

/// What the bag would weigh on the scale: the expected weight give or take a few grams.
pub fn scale_reading(expected_g: i64, rng: &mut impl Rng) -> i64 {
    (expected_g + rng.random_range(-8..=8)).max(0)
}

/// Signs in and works the store until `shutdown`.
pub async fn run(args: StaffSimArgs, shutdown: CancellationToken) -> anyhow::Result<StaffStats> {
    let mut stats = StaffStats::default();
    let mut edge = EdgeApi::new(&args.edge, &args.staff_id, &args.pin)?;

    // Sign in (the daemon may still be starting).
    let role = loop {
        match edge.sign_in().await {
            Ok(session) => break session["role"].as_str().unwrap_or("picker").to_owned(),
            Err(CallError::Api { status, message }) if status.is_client_error() => {
                anyhow::bail!("signing in as {}: {status}: {message}", args.staff_id)
            }
            Err(error) => tracing::info!(%error, "waiting for the store to sign in"),
        }
        if sleep_or_stop(Duration::from_secs(1), &shutdown).await {
            return Ok(stats);
        }
    };
    tracing::info!(edge = %edge.base(), staff_id = %args.staff_id, %role, "signed in");
    let may_override = matches!(role.as_str(), "lead" | "manager");

    // The catalog comes from the cloud by sync: wait until every GTIN resolves.
    let Some(stocked) = catalog(&mut edge, &args, &shutdown).await else {
        return Ok(stats);
    };
    let by_product: HashMap<String, Stocked> = stocked
        .iter()
        .map(|s| (s.product_id.clone(), s.clone()))
        .collect();
    tracing::info!(products = stocked.len(), "the catalog has arrived");
    stock_up(&mut edge, &args, &stocked, &mut stats).await;

    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut last_stock_check = Instant::now();
    let mut waiting_logged = false;
    while !shutdown.is_cancelled() {
        if last_stock_check.elapsed() > Duration::from_secs(20) {
            stock_up(&mut edge, &args, &stocked, &mut stats).await;
            last_stock_check = Instant::now();
        }
        let queues = match edge.get("/queues").await {
            Ok(value) => serde_json::from_value::<Queues>(value).unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "reading the queues");
                Queues::default()
            }
        };
        // Orders already being picked first (after a restart), then the oldest new one.
        let next = queues
            .picking
            .iter()
            .chain(&queues.new)
            .find(|e| failures.get(&e.order_id).is_none_or(|n| *n < 3))
            .map(|e| e.order_id.clone());
        let Some(order_id) = next else {
            if !waiting_logged {
                tracing::info!("queue empty: waiting for orders");
                waiting_logged = true;
            }
            if sleep_or_stop(Duration::from_millis(args.poll_ms), &shutdown).await {
                break;
            }
            continue;
        };
        waiting_logged = false;
        match work(
            &mut edge,
            &args,
            &by_product,
            &order_id,
            may_override,
            &shutdown,
        )
        .await
        {
            Ok(Some(overridden)) => {
                stats.ready += 1;
                stats.overrides += u64::from(overridden);
                failures.remove(&order_id);
            }
            Ok(None) => {} // stopped midway
            Err(error) => {
                stats.failed += 1;
                let tries = failures.entry(order_id.clone()).or_default();
                *tries += 1;
                tracing::warn!(%order_id, %error, tries = *tries, "could not work the order");
                if sleep_or_stop(Duration::from_millis(args.poll_ms), &shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!(
        ready = stats.ready,
        overrides = stats.overrides,
        failed = stats.failed,
        received = stats.received,
        "staff simulator stopped"
    );
    Ok(stats)
}

/// Resolves every GTIN to its product, waiting for the catalog to sync; `None` if stopped.
async fn catalog(
    edge: &mut EdgeApi,
    args: &StaffSimArgs,
    shutdown: &CancellationToken,
) -> Option<Vec<Stocked>> {
    let mut stocked = Vec::new();
    let mut logged = false;
    for gtin in &args.stock_gtins {
        loop {
            match edge.get(&format!("/catalog/lookup?code={gtin}")).await {
                Ok(found) => {
                    let product = &found["product"];
                    stocked.push(Stocked {
                        product_id: product["id"].as_str().unwrap_or_default().to_owned(),
                        name: product["name"].as_str().unwrap_or_default().to_owned(),
                        gtin: gtin.clone(),
                    });
                    break;
                }
                Err(error) if error.status() == Some(StatusCode::NOT_FOUND) => {
                    if !logged {
                        tracing::info!(%gtin, "waiting for the catalog to arrive from the cloud");
                        logged = true;
                    }
                }
                Err(error) => tracing::warn!(%gtin, %error, "looking up a GTIN"),
            }
            if sleep_or_stop(Duration::from_secs(1), shutdown).await {
                return None;
            }
        }
    }
    Some(stocked)
}

/// Makes sure the bin exists, every product is slotted, and tops up whatever runs low.
async fn stock_up(
    edge: &mut EdgeApi,
    args: &StaffSimArgs,
    stocked: &[Stocked],
    stats: &mut StaffStats,
) {
    let bins = edge.get("/bins").await.unwrap_or(Value::Null);
    let has_bin = bins
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["id"] == args.bin.as_str()));
    if !has_bin {
        let body = json!({"aisle": "A", "bay": "1", "shelf": "1", "pick_seq": 1});
        match edge.put(&format!("/bins/{}", args.bin), body).await {
            Ok(_) => tracing::info!(bin = %args.bin, "bin set up"),
            Err(error) => tracing::warn!(bin = %args.bin, %error, "setting up the bin"),
        }
    }
    let levels: BTreeMap<String, i64> = edge
        .get("/stock")
        .await
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            Some((
                l["product_id"].as_str()?.to_owned(),
                l["available"].as_i64()?,
            ))
        })
        .collect();
    for product in stocked {
        let available = levels.get(&product.product_id).copied().unwrap_or(0);
        if available >= args.restock_below {
            continue;
        }
        if available == 0 {
            let slot = format!("/products/{}/bins/{}", product.product_id, args.bin);
            if let Err(error) = edge.put(&slot, json!({})).await {
                tracing::warn!(product_id = %product.product_id, %error, "slotting");
                continue;
            }
        }
        let receive = json!({"gtin": product.gtin, "qty": args.stock_qty});
        match edge.post("/stock/receive", receive).await {
            Ok(_) => {
                stats.received += 1;
                tracing::info!(
                    product_id = %product.product_id, name = %product.name, gtin = %product.gtin,
                    qty = args.stock_qty, was_available = available, bin = %args.bin,
                    "stock received"
                );
            }
            Err(error) => tracing::warn!(product_id = %product.product_id, %error, "receiving"),
        }
    }
}

/// Picks, packs and readies one order; `Ok(Some(overridden))` once READY, `Ok(None)` if
/// stopped midway.
async fn work(
    edge: &mut EdgeApi,
    args: &StaffSimArgs,
    by_product: &HashMap<String, Stocked>,
    order_id: &str,
    may_override: bool,
    shutdown: &CancellationToken,
) -> Result<Option<bool>, CallError> {
    let stops: Vec<Stop> =
        serde_json::from_value(edge.get(&format!("/orders/{order_id}/pick-list")).await?)
            .unwrap_or_default();
    tracing::info!(%order_id, stops = stops.len(), "picking");
    for stop in &stops {
        let Some(product) = by_product.get(&stop.product_id) else {
            // Not a product this picker knows the barcode of: mark the line short.
            tracing::warn!(%order_id, product_id = %stop.product_id, "no GTIN known: line short");
            edge.post(
                &format!("/orders/{order_id}/lines/{}/short", stop.line_no),
                json!({}),
            )
            .await?;
            continue;
        };
        let mut open = stop.qty;
        while open > 0 {
            if sleep_or_stop(step(args), shutdown).await {
                return Ok(None);
            }
            let body = json!({"code": product.gtin, "line_no": stop.line_no});
            let scanned = edge.post(&format!("/orders/{order_id}/scan"), body).await?;
            tracing::info!(
                %order_id, line = stop.line_no, product = %stop.product_name, gtin = %product.gtin,
                bin = %stop.bin_id.as_deref().unwrap_or("?"),
                status = %scanned["status"].as_str().unwrap_or("?"), "scanned"
            );
            let left = scanned["line_open_qty"].as_i64().unwrap_or(0);
            if left >= open {
                // Nothing progressed (should not happen): do not loop forever.
                break;
            }
            open = left;
        }
    }

    // Pack: weigh the bag. The detail tells what the picked goods weigh.
    if sleep_or_stop(step(args), shutdown).await {
        return Ok(None);
    }
    let detail = edge.get(&format!("/orders/{order_id}")).await?;
    let expected: i64 = detail["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["picked_weight_g"].as_i64())
        .sum();
    let measured = scale_reading(expected, &mut rand::rng());
    let pack = format!("/orders/{order_id}/pack");
    let mut overridden = false;
    let packed = match edge.post(&pack, json!({"bag_weight_g": measured})).await {
        Ok(packed) => packed,
        Err(CallError::Api { status, message })
            if status == StatusCode::CONFLICT && may_override =>
        {
            tracing::warn!(%order_id, %message, "bag weight refused: checked by hand, overriding");
            overridden = true;
            let body = json!({
                "bag_weight_g": measured, "override": true,
                "override_reason": "demo: bag checked by hand"
            });
            edge.post(&pack, body).await?
        }
        Err(error) => return Err(error),
    };
    tracing::info!(
        %order_id, bag_weight_g = measured,
        expected_weight_g = packed["expected_weight_g"].as_i64().unwrap_or(expected),
        label_id = %packed["label_id"].as_str().unwrap_or("?"), "packed"
    );

    if sleep_or_stop(step(args), shutdown).await {
        return Ok(None);
    }
    let ready = edge
        .post(&format!("/orders/{order_id}/ready"), json!({}))
        .await?;
    tracing::info!(
        %order_id,
        label = %ready["label_message"].as_str().unwrap_or(""),
        "READY: bags on the pickup shelf"
    );
    Ok(Some(overridden))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_scale_reads_within_the_tolerance_floor() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for expected in [0, 100, 1530] {
            for _ in 0..100 {
                let read = scale_reading(expected, &mut rng);
                assert!(
                    read >= 0 && (read - expected).abs() <= 8,
                    "{read} for {expected}"
                );
            }
        }
    }

    #[test]
    fn gtins_are_comma_separated_or_repeated() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: StaffSimArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--pin",
            "1",
            "--stock-gtins",
            "4006381333931,96385074",
            "--stock-gtins",
            "12345670",
        ])
        .expect("parse");
        assert_eq!(
            cli.args.stock_gtins,
            ["4006381333931", "96385074", "12345670"]
        );
        assert_eq!(cli.args.staff_id, "manager");
    }
}
