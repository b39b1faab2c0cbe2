//! `flashkart-edge-sim rider`: one simulated rider on a store's loopback broker listener, for
//! the demo.
//!
//! At the store a real rider scans the label on the bag the staff put on the pickup shelf. The
//! simulator has no bag to scan: it reads the order's label id (`label_id` of
//! `GET /api/v1/orders/{id}`) through the store's HTTP API with a staff session, as the member
//! of staff at the shelf would read it out. It never opens the store's database.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{AcceptPolicy, Lookup, SimConfig, SimError, SimStats};
use crate::edge_api::EdgeApi;

/// `flashkart-edge-sim rider ...`
#[derive(Debug, Clone, clap::Args)]
pub struct RiderArgs {
    /// The rider's id (on the store's roster; alphanumeric).
    #[arg(long)]
    pub rider: String,
    /// The broker's loopback (plain) listener port, `[riders] plain_listen`.
    #[arg(long, default_value_t = 1884)]
    pub port: u16,
    /// Where the rider starts, as `lat,lon`.
    #[arg(long, value_parser = parse_point, default_value = "52.5200,13.4050")]
    pub start: (f64, f64),
    /// Speed in metres per second.
    #[arg(long, default_value_t = 8.0)]
    pub speed: f64,
    /// Accept every n-th offer and decline the others (1: accept all).
    #[arg(long, default_value_t = 1)]
    pub accept_every: u32,
    /// The store daemon's base URL, where the rider reads the label of the bag to pick up.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub edge: String,
    /// The member of staff whose session reads the labels.
    #[arg(long, default_value = "manager")]
    pub staff_id: String,
    /// That member's PIN.
    #[arg(long, env = "FLASHKART_STAFF_PIN")]
    pub pin: String,
}

fn parse_point(text: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = text
        .split_once(',')
        .ok_or_else(|| format!("`{text}` is not `lat,lon`"))?;
    let lat: f64 = lat.trim().parse().map_err(|e| format!("latitude: {e}"))?;
    let lon: f64 = lon.trim().parse().map_err(|e| format!("longitude: {e}"))?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("`{text}` is not a position on Earth"));
    }
    Ok((lat, lon))
}

/// Runs one simulated rider until `shutdown`.
///
/// Needs a multi-threaded runtime: see [`shelf_labels`].
pub async fn run(args: RiderArgs, shutdown: CancellationToken) -> Result<SimStats, RiderError> {
    let edge = EdgeApi::new(&args.edge, &args.staff_id, &args.pin)?;
    let mut config = SimConfig::new(args.rider, args.port, args.start, shelf_labels(edge));
    config.speed_mps = args.speed;
    config.accept = match args.accept_every {
        0 => AcceptPolicy::Never,
        1 => AcceptPolicy::Always,
        n => AcceptPolicy::EveryNth(n),
    };
    Ok(super::run(config, shutdown).await?)
}

/// Why the rider simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum RiderError {
    #[error("the store's HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("rider simulator: {0}")]
    Sim(#[from] SimError),
}

/// The label on an order's bag, read through the store's API; `None` until the order is
/// packed, or while the store cannot be reached (the rider tries again at the next tick).
///
/// The simulator asks for labels synchronously (tests hand it a table). This lookup answers
/// over HTTP, so it parks its worker thread for the round trip to the store
/// ([`tokio::task::block_in_place`]): the runtime must be multi-threaded.
fn shelf_labels(edge: EdgeApi) -> Lookup {
    let edge = Arc::new(tokio::sync::Mutex::new(edge));
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |order_id: &str| {
        let path = format!("/orders/{order_id}");
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                match edge.lock().await.get(&path).await {
                    Ok(order) => order["label_id"].as_str().map(str::to_owned),
                    Err(error) => {
                        tracing::warn!(%order_id, %error, "reading the bag label");
                        None
                    }
                }
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_lat_comma_lon_on_earth() {
        assert_eq!(parse_point("52.52, 13.405"), Ok((52.52, 13.405)));
        assert!(parse_point("52.52").is_err());
        assert!(parse_point("91,0").is_err());
    }
}
