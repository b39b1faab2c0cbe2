//! `flashkart-cloud-sim shoppers`: simulated customers placing orders through the intake API.
//!
//! For the demo and for trying the cloud by hand. It only talks HTTP, as a real shop front
//! would: it creates a few customers with the admin API, reads the catalog
//! (`GET /api/v1/products`) and the stores' service areas (`GET /admin/v1/stores`), then places
//! orders continuously (`POST /api/v1/orders`, 1-3 random lines, an address drawn inside a
//! store's area and radius, a fresh `Idempotency-Key` each). Now and then it sends an order a
//! second time under the same key to show that intake answers with the same order instead of
//! placing a second one. Every refusal is logged and the next order goes on; it stops at the
//! shutdown token.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use flashkart_cloud::area::{ServiceArea, distance_m};

/// `flashkart-cloud-sim shoppers ...`
#[derive(Debug, Clone, clap::Args)]
pub struct ShoppersArgs {
    /// The cloud's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7800")]
    pub cloud: String,
    /// HQ's admin token (to create the customers and read the stores' areas).
    #[arg(long, env = "FLASHKART_ADMIN_TOKEN")]
    pub admin_token: String,
    /// Orders per minute, on average (the gaps between orders are random).
    #[arg(long, default_value_t = 4.0)]
    pub rate_per_min: f64,
    /// Seed for the random choices (a random one if absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How many customers to create.
    #[arg(long, default_value_t = 5)]
    pub customers: usize,
    /// Stop after this many placed orders (runs until stopped if absent).
    #[arg(long)]
    pub max_orders: Option<u64>,
    /// The payment provider's API (Stripe, or the demo's localstripe): card orders register
    /// a test card there first, as a customer's app does with the provider's client library.
    /// Every order is cash without it.
    #[arg(long, env = "FLASHKART_SHOPPERS_STRIPE_URL")]
    pub stripe_url: Option<String>,
    /// The key the cards are registered with (a publishable key at Stripe).
    #[arg(
        long,
        env = "FLASHKART_SHOPPERS_STRIPE_KEY",
        default_value = "pk_test_demo"
    )]
    pub stripe_key: String,
    /// The share of orders paid in cash at the door (0-1) when cards are possible.
    #[arg(long, default_value_t = 0.25)]
    pub cash_share: f64,
}

/// Stripe's test card that is authorised and captured without trouble.
const TEST_CARD: &str = "4242424242424242";

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShopperStats {
    /// Orders intake created (replays not counted).
    pub placed: u64,
    /// Orders intake refused (any non-2xx answer or a transport error).
    pub refused: u64,
    /// Repeated requests answered with the original order.
    pub replayed: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct Product {
    id: String,
    name: String,
}

/// A store as the shoppers see it: where it delivers.
#[derive(Debug, Clone)]
pub struct Area {
    pub store_id: String,
    pub lat: f64,
    pub lon: f64,
    pub max_radius_m: f64,
    pub area: ServiceArea,
    /// (min lon, min lat, max lon, max lat) of the GeoJSON's positions.
    pub bbox: (f64, f64, f64, f64),
}

impl Area {
    /// Reads a store profile as `GET /admin/v1/stores` lists it (`{"profile": {...}}`).
    pub fn from_listing(entry: &Value) -> Option<Self> {
        let profile = entry.get("profile").unwrap_or(entry);
        let geojson = profile.get("service_area")?;
        let area = ServiceArea::from_geojson(geojson).ok()?;
        Some(Self {
            store_id: profile.get("id")?.as_str()?.to_owned(),
            lat: profile.get("lat")?.as_f64()?,
            lon: profile.get("lon")?.as_f64()?,
            max_radius_m: profile.get("max_radius_m")?.as_f64()?,
            area,
            bbox: bbox(geojson)?,
        })
    }

    /// A uniformly drawn point (lat, lon) inside the area and within the radius of the
    /// store, or `None` if a few thousand draws found none (an area far from its store).
    pub fn sample(&self, rng: &mut impl Rng) -> Option<(f64, f64)> {
        // The radius as a box in degrees, intersected with the polygon's box.
        let dlat = self.max_radius_m / 111_320.0;
        let dlon = self.max_radius_m / (111_320.0 * self.lat.to_radians().cos().max(0.01));
        let (min_lon, min_lat, max_lon, max_lat) = self.bbox;
        let (lo_lat, hi_lat) = (min_lat.max(self.lat - dlat), max_lat.min(self.lat + dlat));
        let (lo_lon, hi_lon) = (min_lon.max(self.lon - dlon), max_lon.min(self.lon + dlon));
        if !(lo_lat < hi_lat && lo_lon < hi_lon) {
            return None;
        }
        for _ in 0..5_000 {
            let lat = rng.random_range(lo_lat..hi_lat);
            let lon = rng.random_range(lo_lon..hi_lon);
            if self.contains(lat, lon) {
                return Some((lat, lon));
            }
        }
        None
    }

    /// Whether intake would consider the address served by this store.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        self.area.contains(lat, lon)
            && distance_m((self.lat, self.lon), (lat, lon)) <= self.max_radius_m
    }
}

/// The bounding box (min lon, min lat, max lon, max lat) of every position in a GeoJSON value.
fn bbox(geojson: &Value) -> Option<(f64, f64, f64, f64)> {
    fn walk(value: &Value, acc: &mut Option<(f64, f64, f64, f64)>) {
        let Some(items) = value.as_array() else {
            if let Some(coordinates) = value.get("coordinates") {
                walk(coordinates, acc);
            }
            return;
        };
        if let [lon, lat] = items.as_slice()
            && let (Some(lon), Some(lat)) = (lon.as_f64(), lat.as_f64())
        {
            *acc = Some(match *acc {
                None => (lon, lat, lon, lat),
                Some((a, b, c, d)) => (a.min(lon), b.min(lat), c.max(lon), d.max(lat)),
            });
            return;
        }
        for item in items {
            walk(item, acc);
        }
    }
    let mut acc = None;
    walk(geojson, &mut acc);
    acc
}

const FIRST_NAMES: &[&str] = &[
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia",
];
const STREETS: &[&str] = &[
    "Torstraße",
    "Kastanienallee",
    "Oranienstraße",
    "Warschauer Straße",
    "Schönhauser Allee",
    "Karl-Marx-Allee",
    "Bergmannstraße",
    "Sonnenallee",
    "Prenzlauer Allee",
    "Friedrichstraße",
];

/// The cloud, as the shoppers call it.
struct Client {
    http: reqwest::Client,
    base: String,
    admin: String,
}

impl Client {
    async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// Waits until the catalog has products and at least one store has a profile.
    async fn world(&self, shutdown: &CancellationToken) -> Option<(Vec<Product>, Vec<Area>)> {
        let mut waited_logged = false;
        loop {
            let products = self
                .get("/api/v1/products", "")
                .await
                .ok()
                .and_then(|v| serde_json::from_value::<Vec<Product>>(v).ok())
                .unwrap_or_default();
            let areas: Vec<Area> = match self.get("/admin/v1/stores", &self.admin).await {
                Ok(Value::Array(stores)) => stores.iter().filter_map(Area::from_listing).collect(),
                Ok(_) => Vec::new(),
                Err(error) => {
                    tracing::debug!(%error, "reading the stores");
                    Vec::new()
                }
            };
            if !products.is_empty() && !areas.is_empty() {
                return Some((products, areas));
            }
            if !waited_logged {
                tracing::info!(
                    products = products.len(),
                    stores = areas.len(),
                    "waiting for HQ to set up products and store profiles"
                );
                waited_logged = true;
            }
            if sleep_or_stop(Duration::from_secs(1), shutdown).await {
                return None;
            }
        }
    }

    async fn create_customer(&self, first_name: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/admin/v1/customers", self.base))
            .bearer_auth(&self.admin)
            .json(&json!({ "first_name": first_name }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "creating {first_name}: {status} {body}"
        );
        body["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no token in {body}"))
    }

    /// Registers the test card at the provider, as a customer's app does; its id (`pm_...`).
    async fn card(&self, stripe_url: &str, key: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{stripe_url}/v1/payment_methods"))
            .bearer_auth(key)
            .form(&[
                ("type", "card"),
                ("card[number]", TEST_CARD),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2040"),
                ("card[cvc]", "123"),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "payment method: {status} {body}");
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no id in {body}"))
    }

    /// Places an order; `Ok((status, replayed, body))` for any answer from intake.
    async fn place(
        &self,
        customer: &str,
        key: &str,
        order: &Value,
    ) -> Result<(reqwest::StatusCode, bool, Value), reqwest::Error> {
        let response = self
            .http
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(customer)
            .header("idempotency-key", key)
            .json(order)
            .send()
            .await?;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, replayed, body))
    }
}

/// Sleeps; true if the shutdown token fired first.
async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}

/// A random order body for an address inside one of `areas`.
fn random_order(
    rng: &mut impl Rng,
    products: &[Product],
    areas: &[Area],
) -> Option<(Value, String)> {
    let area = areas.choose(rng)?;
    let (lat, lon) = area.sample(rng)?;
    let count = rng.random_range(1..=3).min(products.len());
    let lines: Vec<Value> = rand::seq::index::sample(rng, products.len(), count)
        .into_iter()
        .map(|i| json!({ "product_id": products[i].id, "qty": rng.random_range(1..=2) }))
        .collect();
    let street = STREETS.choose(rng).copied().unwrap_or("Torstraße");
    let text = format!("{street} {}, Berlin", rng.random_range(1..=180));
    Some((
        json!({
            "address": { "text": text, "lat": lat, "lon": lon },
            "lines": lines,
            "payment": {"method": "cash"},
        }),
        area.store_id.clone(),
    ))
}

/// Places orders until `shutdown` (or `max_orders`); never fails on a refused order.
pub async fn run(args: ShoppersArgs, shutdown: CancellationToken) -> anyhow::Result<ShopperStats> {
    anyhow::ensure!(
        args.rate_per_min > 0.0 && args.rate_per_min <= 6_000.0,
        "--rate-per-min must be in (0, 6000]"
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        base: args.cloud.trim_end_matches('/').to_owned(),
        admin: args.admin_token.clone(),
    };
    let mut stats = ShopperStats::default();
    tracing::info!(cloud = %client.base, rate_per_min = args.rate_per_min, seed, "shoppers starting");

    let Some((mut products, mut areas)) = client.world(&shutdown).await else {
        return Ok(stats);
    };
    let mut customers: Vec<(String, String)> = Vec::new();
    for name in FIRST_NAMES.iter().cycle().take(args.customers.max(1)) {
        loop {
            match client.create_customer(name).await {
                Ok(token) => {
                    customers.push(((*name).to_owned(), token));
                    break;
                }
                Err(error) => tracing::warn!(%error, "creating a customer; retrying"),
            }
            if sleep_or_stop(Duration::from_secs(2), &shutdown).await {
                return Ok(stats);
            }
        }
    }
    tracing::info!(
        customers = customers.len(),
        products = products.len(),
        stores = ?areas.iter().map(|a| a.store_id.as_str()).collect::<Vec<_>>(),
        "shoppers ready: placing orders"
    );

    let mean_gap = 60.0 / args.rate_per_min;
    let mut last_refresh = std::time::Instant::now();
    loop {
        // Random gaps (0.5x to 1.5x the mean) so orders do not arrive like clockwork.
        let gap = Duration::from_secs_f64(mean_gap * rng.random_range(0.5..1.5));
        if sleep_or_stop(gap, &shutdown).await {
            break;
        }
        if last_refresh.elapsed() > Duration::from_secs(30) {
            if let Some((p, a)) = client.world(&shutdown).await {
                (products, areas) = (p, a);
            }
            last_refresh = std::time::Instant::now();
        }
        let Some((order, area_of)) = random_order(&mut rng, &products, &areas) else {
            tracing::warn!("no address found inside any store's area and radius");
            continue;
        };
        let Some((first_name, token)) = customers.choose(&mut rng) else {
            break;
        };
        let key = uuid::Uuid::now_v7().to_string();
        let mut order = order;
        if let Some(url) = &args.stripe_url
            && !rng.random_bool(args.cash_share.clamp(0.0, 1.0))
        {
            match client.card(url, &args.stripe_key).await {
                Ok(card) => order["payment"] = json!({"method": "card", "payment_method": card}),
                Err(error) => tracing::warn!(%error, "registering a test card; paying cash"),
            }
        }
        match client.place(token, &key, &order).await {
            Ok((status, _, body)) if status.is_success() => {
                stats.placed += 1;
                let lines: Vec<String> = body["lines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        let id = l["product_id"].as_str().unwrap_or("?");
                        let name = products
                            .iter()
                            .find(|p| p.id == id)
                            .map_or(id, |p| p.name.as_str());
                        format!("{}x {name}", l["qty"])
                    })
                    .collect();
                tracing::info!(
                    order_id = %body["order_id"].as_str().unwrap_or("?"),
                    store_id = %body["store_id"].as_str().unwrap_or("?"),
                    total = %money(body["total_minor"].as_i64().unwrap_or(0), body["currency"].as_str().unwrap_or("EUR")),
                    paid_by = %body["payment_method"].as_str().unwrap_or("?"),
                    customer = %first_name,
                    address_in_area_of = %area_of,
                    lines = %lines.join(", "),
                    eta_minutes = body["eta_minutes"].as_u64().unwrap_or(0),
                    placed = stats.placed,
                    "order placed"
                );
                // Now and then the shop front "loses" the answer and sends the order again.
                if rng.random_bool(0.15) {
                    match client.place(token, &key, &order).await {
                        Ok((status, replayed, again))
                            if status.is_success() && again["order_id"] == body["order_id"] =>
                        {
                            stats.replayed += 1;
                            tracing::info!(
                                order_id = %again["order_id"].as_str().unwrap_or("?"),
                                idempotency_key = %key,
                                replayed,
                                "the same order sent again under its key: intake answered with the original order, nothing new placed"
                            );
                        }
                        Ok((status, _, again)) => tracing::warn!(
                            %status, body = %again, idempotency_key = %key,
                            "a repeated request did not return the original order"
                        ),
                        Err(error) => tracing::warn!(%error, "repeating an order"),
                    }
                }
                if args.max_orders.is_some_and(|max| stats.placed >= max) {
                    break;
                }
            }
            Ok((status, _, body)) => {
                stats.refused += 1;
                tracing::warn!(
                    %status,
                    error = %body["error"].as_str().unwrap_or(""),
                    message = %body["message"].as_str().map_or_else(|| body.to_string(), str::to_owned),
                    "order refused"
                );
            }
            Err(error) => {
                stats.refused += 1;
                tracing::warn!(%error, "placing an order");
            }
        }
    }
    tracing::info!(
        placed = stats.placed,
        refused = stats.refused,
        replayed = stats.replayed,
        "shoppers stopped"
    );
    Ok(stats)
}

fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(south: f64, north: f64, lat: f64, radius: f64) -> Value {
        json!({
            "profile": {
                "id": "s", "name": "s", "lat": lat, "lon": 13.40, "max_radius_m": radius,
                "service_area": {
                    "type": "Polygon",
                    "coordinates": [[[13.2, south], [13.6, south], [13.6, north], [13.2, north], [13.2, south]]]
                }
            },
            "online": true
        })
    }

    #[test]
    fn sampled_addresses_are_inside_the_area_and_radius() {
        let area = Area::from_listing(&listing(52.47, 52.70, 52.55, 5_000.0)).expect("area");
        assert_eq!(area.bbox, (13.2, 52.47, 13.6, 52.70));
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let (lat, lon) = area.sample(&mut rng).expect("a point");
            assert!(
                area.area.contains(lat, lon),
                "{lat},{lon} outside the polygon"
            );
            assert!(distance_m((52.55, 13.40), (lat, lon)) <= 5_000.0);
        }
    }

    #[test]
    fn a_triangle_clips_the_radius_box() {
        // A triangle whose box is much larger than its area: rejection keeps only inside points.
        let value = json!({"profile": {
            "id": "t", "lat": 52.5, "lon": 13.4, "max_radius_m": 50_000.0,
            "service_area": {"type": "Polygon", "coordinates": [[[13.0, 52.0], [14.0, 52.0], [13.0, 53.0], [13.0, 52.0]]]}
        }});
        let area = Area::from_listing(&value).expect("area");
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let (lat, lon) = area.sample(&mut rng).expect("a point");
            assert!(
                (lon - 13.0) + (lat - 52.0) < 1.0,
                "{lat},{lon} outside the triangle"
            );
        }
    }

    #[test]
    fn an_area_out_of_reach_has_no_address() {
        // The polygon lies 30 km north of a store with a 5 km radius.
        let area = Area::from_listing(&listing(52.80, 52.90, 52.50, 5_000.0)).expect("area");
        assert_eq!(area.sample(&mut StdRng::seed_from_u64(3)), None);
    }

    #[test]
    fn random_orders_have_one_to_three_distinct_lines() {
        let products: Vec<Product> = (0..5)
            .map(|i| Product {
                id: format!("p{i}"),
                name: format!("P{i}"),
            })
            .collect();
        let areas = vec![Area::from_listing(&listing(52.47, 52.70, 52.55, 5_000.0)).expect("area")];
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..100 {
            let (order, store) = random_order(&mut rng, &products, &areas).expect("order");
            assert_eq!(store, "s");
            let lines = order["lines"].as_array().expect("lines");
            assert!((1..=3).contains(&lines.len()));
            let mut ids: Vec<&str> = lines
                .iter()
                .filter_map(|l| l["product_id"].as_str())
                .collect();
            ids.dedup();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), lines.len());
        }
    }

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(money(1234, "EUR"), "12.34 EUR");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
    }
}
