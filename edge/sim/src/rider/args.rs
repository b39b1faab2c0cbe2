//! `flashkart-edge-sim rider`: one simulated rider's phone, for the demo.
//!
//! Like a real phone it enrols with the QR code HQ issued for the rider (see [`super::phone`])
//! and connects to the store's broker over TLS with the certificate it got.
//!
//! At the store a real rider scans the label on the bag the staff put on the pickup shelf. The
//! simulator has no bag to scan: it reads the order's label id (`label_id` of
//! `GET /api/v1/orders/{id}`) through the store's HTTP API with a staff session, as the member
//! of staff at the shelf would read it out. It never opens the store's database.
//!
//! At the door a real rider hears the delivery PIN from the customer; the edge never has it
//! (only a hash). The simulator plays the customer through HQ's support view: with `--cloud`
//! and `--admin-token-file` it reads `delivery_pin` of `GET /admin/v1/orders/{id}`, outside the
//! rider's own channel. Without them it can only deliver contactless orders (with a photo
//! reference), and says so at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::phone::{self, EnrolmentQr, PhoneError};
use super::{AcceptPolicy, Lookup, SimConfig, SimError, SimStats};
use crate::edge_api::EdgeApi;

/// `flashkart-edge-sim rider ...`
#[derive(Debug, Clone, clap::Args)]
pub struct RiderArgs {
    /// The enrolment QR code's payload from HQ's roster
    /// (`flashkart-enrol:v1?store=..&rider=..&code=..&ca=..`); not needed when `--phone-dir`
    /// already holds the rider's certificate.
    #[arg(long, env = "FLASHKART_ENROLMENT", value_parser = parse_qr)]
    pub enrolment: Option<EnrolmentQr>,
    /// Where the phone keeps its certificate and key between runs.
    #[arg(long)]
    pub phone_dir: Option<PathBuf>,
    /// The store broker's TLS listener, `[riders] tls_listen`, as `host:port`; the host must be
    /// a name on the broker's certificate (`localhost`, or one of `[riders] server_names`).
    #[arg(long, default_value = "localhost:8883", value_parser = parse_broker)]
    pub broker: (String, u16),
    /// The store's enrolment listener, `[riders] enrol_listen`, as `https://host:port`; the
    /// host must be a name on the store's certificate, as for `--broker`.
    #[arg(long, default_value = "https://localhost:8443", value_parser = parse_enrol_url)]
    pub enrol_url: String,
    /// Where the rider starts, as `lat,lon`.
    #[arg(long, value_parser = parse_point, default_value = "52.5200,13.4050")]
    pub start: (f64, f64),
    /// Speed in metres per second.
    #[arg(long, default_value_t = 8.0)]
    pub speed: f64,
    /// Accept every n-th offer and decline the others (1: accept all).
    #[arg(long, default_value_t = 1)]
    pub accept_every: u32,
    /// At the door of a cash order, report collecting the amount due plus this many minor
    /// units (negative: short), to see the store and HQ handle a difference.
    #[arg(
        long,
        env = "FLASHKART_SIM_CASH_DELTA_MINOR",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub cash_delta_minor: i64,
    /// The store daemon's base URL, where the rider reads the label of the bag to pick up.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub edge: String,
    /// The member of staff whose session reads the labels.
    #[arg(long, default_value = "manager")]
    pub staff_id: String,
    /// That member's PIN.
    #[arg(long, env = "FLASHKART_STAFF_PIN")]
    pub pin: String,
    /// HQ's cloud base URL, whose support view of an order tells the customer's delivery PIN
    /// (as the customer does at the door). Needs `--admin-token-file`.
    #[arg(long, requires = "admin_token_file")]
    pub cloud: Option<String>,
    /// A file holding HQ's admin token, for `--cloud`.
    #[arg(long, env = "FLASHKART_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

fn parse_qr(text: &str) -> Result<EnrolmentQr, String> {
    EnrolmentQr::parse(text).map_err(|e| e.to_string())
}

fn parse_broker(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not `host:port`"))?;
    let port: u16 = port.parse().map_err(|e| format!("port: {e}"))?;
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{host}` must be a host name on the broker's certificate (TLS names, not addresses)"
        ));
    }
    Ok((host.to_owned(), port))
}

fn parse_enrol_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .ok_or_else(|| format!("`{text}` is not an https:// URL (enrolment is HTTPS only)"))?;
    parse_broker(rest.trim_end_matches('/'))?;
    Ok(text.trim_end_matches('/').to_owned())
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
    let identity = phone::identity(
        &args.enrol_url,
        args.enrolment.as_ref(),
        args.phone_dir.as_deref(),
    )
    .await?;
    let edge = EdgeApi::new(&args.edge, &args.staff_id, &args.pin)?;
    let (host, port) = args.broker;
    let mut config = SimConfig::new(
        identity.rider_id.clone(),
        port,
        args.start,
        shelf_labels(edge),
    );
    config.host = host;
    config.tls = Some(identity.tls());
    config.pins = match (&args.cloud, &args.admin_token_file) {
        (Some(cloud), Some(path)) => {
            let token = std::fs::read_to_string(path)
                .map_err(|source| RiderError::TokenFile {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned();
            Some(customer_pins(cloud, token)?)
        }
        _ => {
            tracing::warn!(
                "no --cloud and --admin-token-file: the rider cannot hear customers' PINs and \
                 delivers contactless orders only (PIN orders are refused at the door)"
            );
            None
        }
    };
    config.speed_mps = args.speed;
    config.cash_delta_minor = args.cash_delta_minor;
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
    #[error("the phone: {0}")]
    Phone(#[from] PhoneError),
    #[error("admin token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The delivery PIN the customer of an order tells the rider, read from HQ's support view of
/// the order; `None` for a contactless order or while the cloud cannot be reached.
///
/// Parks its worker thread for the round trip, like [`shelf_labels`].
fn customer_pins(cloud: &str, admin_token: String) -> Result<Lookup, RiderError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let base = cloud.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Handle::current();
    Ok(Arc::new(move |order_id: &str| {
        let url = format!("{base}/admin/v1/orders/{order_id}");
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                let answer = http.get(&url).bearer_auth(&admin_token).send().await;
                let view = match answer.and_then(reqwest::Response::error_for_status) {
                    Ok(response) => response.json::<serde_json::Value>().await,
                    Err(error) => Err(error),
                };
                match view {
                    Ok(view) => view["delivery_pin"].as_str().map(str::to_owned),
                    Err(error) => {
                        tracing::warn!(%order_id, %error, "asking HQ for the customer's PIN");
                        None
                    }
                }
            })
        })
    }))
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

    #[test]
    fn the_broker_is_a_host_name_and_a_port() {
        assert_eq!(
            parse_broker("localhost:8883"),
            Ok(("localhost".into(), 8883))
        );
        assert!(parse_broker("127.0.0.1:8883").is_err());
        assert!(parse_broker("localhost").is_err());
    }

    #[test]
    fn the_enrolment_listener_is_https_by_host_name() {
        assert_eq!(
            parse_enrol_url("https://localhost:8443/"),
            Ok("https://localhost:8443".into())
        );
        assert!(parse_enrol_url("http://localhost:8443").is_err());
        assert!(parse_enrol_url("https://127.0.0.1:8443").is_err());
        assert!(parse_enrol_url("https://localhost").is_err());
    }
}
