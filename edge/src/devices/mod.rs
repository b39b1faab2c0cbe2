//! Store hardware in the daemon: scanners, the pack scale and the label printer of
//! `flashkart-hw`, wired into picking and packing.
//!
//! Why a module of its own: the device manager (`flashkart_hw::DeviceManager`) only speaks
//! bytes and typed events; this module decides what they mean for the store, in one place, so
//! the HTTP handlers and the serial ports go through exactly the same domain functions.
//!
//! - **Scanners are bound to a picker and an order.** `POST /api/v1/devices/{id}/bind` with
//!   `{"order_id": ...}` binds a scanner to the signed-in member of staff and the order they
//!   are picking (one picker per scanner; binding again switches the order; a lead can take a
//!   scanner over; `DELETE` unbinds). Bindings live in memory: after a restart pickers bind
//!   again. A scan from a bound scanner is exactly `POST /api/v1/orders/{order}/scan` by that
//!   member of staff ([`pick::scan`](crate::work::pick::scan) through
//!   [`App::write`](crate::app::App::write)); its result, applied or refused
//!   with the message, goes onto the live stream as a `device` event so the tablet shows it.
//!   A scan from an unbound scanner is refused (evented, nothing changes). Unreadable serial
//!   data is logged by the driver and never becomes an event. A scanner at the goods-in
//!   station binds with `{"receiving": true}` instead: each scan is a case label received
//!   exactly as `POST /api/v1/stock/receive` `{"scan"}` by that member of staff.
//! - **Packing weighs; READY prints.** With a `pack_scale` configured, a pack request without
//!   `bag_weight_g` takes the scale's next stable weight. Bags outside the weight tolerance
//!   are refused unless a lead or manager overrides (`"override": true`; a picker asking gets
//!   403), and the PACKED transition's note records who overrode what. Packing persists the
//!   label id and the bag count in `order_progress`; nothing prints yet.
//! - **READY prints the label.** When the order becomes READY (the bags go on the pickup
//!   shelf), each bag's label (ZPL) is printed on `label_printer`. The job id is derived from
//!   the persisted label id (`label:{label_id}:{bag}/{bags}`) and READY happens once per
//!   order, so a label never prints twice (the printer queue also refuses a job id it already
//!   sent). The queue queries the printer's status before and after each job; a printer the
//!   status poll already reports faulted gets no job at all. Either way the order *is* READY:
//!   a missing label must not hold a finished order back. The READY response carries each
//!   bag's outcome (`printed`, `not_sent`, `failed`, `uncertain`, `queued`) and the printer's
//!   state ("printer printer-1: paper out"); the stream carries the same as `print` events.
//!   `POST /api/v1/orders/{id}/labels/reprint` (lead and above, READY or ASSIGNED orders)
//!   prints a deliberate copy under a job id of its own once the printer is fixed. If the
//!   daemon stops between READY and the print, the label is not printed again by itself:
//!   that is what the reprint is for.
//! - **Health.** Device health, printer faults ("paper out") and print outcomes (with the
//!   order they belong to) go onto the live stream, `GET /api/v1/devices` and `/metrics`;
//!   health and faults also go to HQ, as the synced `device_status` rows of `status.rs`.
//!
//! The devices never name the daemon's `App`: they reach the store through [`Host`], which
//! `App` implements, so the daemon can hold its devices without the two importing each other.
//! Printing lives in `labels.rs`, the task that handles device events in `feed.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use flashkart_hw::device::DeviceLocation;
use flashkart_hw::{DeviceHandle, Health};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::config::VariableMeasureConfig;
use crate::config::devices::kind_name;
use crate::events::Hub;
use crate::metrics::Metrics;
use crate::work::ctx::{Ctx, now};
use crate::work::orders::{self, Status};
use crate::work::staff::{Role, Session};

mod feed;
mod labels;
mod status;

pub use crate::config::DevicesConfig;
pub use feed::start;
pub use labels::{LabelPrint, Labels, PrinterState};

/// What the devices need of the running daemon: its store, stream, metrics and writer path.
///
/// A scan from a device must be exactly the request a tablet makes, so it goes through the
/// same [`write`](Host::write) (events, metrics) as the HTTP handlers.
pub trait Host: Send + Sync + 'static {
    fn devices(&self) -> &Devices;
    fn hub(&self) -> &Hub;
    fn metrics(&self) -> &Metrics;
    fn store_id(&self) -> &str;
    fn layout(&self) -> &VariableMeasureConfig;

    /// Runs `query` on a reader connection.
    fn read<T, F>(&self, query: F) -> impl Future<Output = Result<T, Error>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static;

    /// Runs `change` on the writer as `actor`, publishing its events once committed.
    fn write<T, F>(&self, actor: &str, change: F) -> impl Future<Output = Result<T, Error>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Ctx) -> Result<T, Error> + Send + 'static;
}

/// A scanner's binding to a member of staff and the order they pick (or goods in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub scanner: String,
    pub staff_id: String,
    pub name: String,
    /// The order picked; absent for a receiving scanner.
    pub order_id: Option<String>,
    /// A receiving scanner: its scans are case labels received into stock.
    pub receiving: bool,
    pub bound_at: String,
    /// When the picker's sign-in ends; scans after that are refused.
    pub expires_at: String,
}

/// What `POST /api/v1/devices/{id}/bind` takes: `{"order_id"}` or `{"receiving": true}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    /// The order this picker is picking; scans apply to it.
    pub order_id: Option<String>,
    /// Goods in: each scan is a case label received as `POST /api/v1/stock/receive`
    /// `{"scan"}` by this member of staff.
    #[serde(default)]
    pub receiving: bool,
}

/// One device, as `GET /api/v1/devices` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    pub id: String,
    pub kind: &'static str,
    pub location: DeviceLocation,
    pub health: Health,
    /// Printer faults in words ("paper out"), empty when ready or unknown.
    pub faults: Vec<String>,
    pub bound: Option<Binding>,
    /// A scale's last reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
}

/// A scale reading as the tablet shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Weight {
    /// Rounded to the gram; absent when the scale reported only a state (motion, overload).
    pub grams: Option<i64>,
    pub stable: bool,
    pub over_capacity: bool,
    pub under_zero: bool,
}

/// The daemon's devices: configuration, the manager's handle once started, bindings, faults.
#[derive(Debug, Default)]
pub struct Devices {
    config: DevicesConfig,
    handle: OnceLock<DeviceHandle>,
    bindings: Mutex<HashMap<String, Binding>>,
    faults: Mutex<HashMap<String, Vec<String>>>,
    /// Each scale's last reading, for a pack screen that opens between two readings.
    weights: Mutex<HashMap<String, Weight>>,
    /// Label job ids sent to a printer, by job id: the order they belong to.
    jobs: Mutex<HashMap<String, String>>,
    /// Reprints asked for since start (part of a reprint's job id).
    reprints: std::sync::atomic::AtomicU64,
}

impl Devices {
    pub fn new(config: &DevicesConfig) -> Self {
        Self {
            config: config.clone(),
            ..Self::default()
        }
    }

    /// Whether any device is configured.
    pub fn configured(&self) -> bool {
        !self.config.list.is_empty()
    }

    fn handle(&self) -> Result<&DeviceHandle, Error> {
        self.handle
            .get()
            .ok_or_else(|| Error::Device("the device manager is not running".into()))
    }

    /// Every configured device with its health, faults and binding.
    pub fn status(&self) -> Vec<DeviceStatus> {
        let bindings = self.bindings.lock().map(|b| b.clone()).unwrap_or_default();
        let faults = self.faults.lock().map(|f| f.clone()).unwrap_or_default();
        let weights = self.weights.lock().map(|w| w.clone()).unwrap_or_default();
        self.config
            .list
            .iter()
            .map(|d| DeviceStatus {
                id: d.id.clone(),
                kind: kind_name(&d.kind),
                location: d.location.clone(),
                health: self
                    .handle
                    .get()
                    .and_then(|h| h.health(&d.id))
                    .map_or(Health::Connecting, |h| h.borrow().clone()),
                faults: faults.get(&d.id).cloned().unwrap_or_default(),
                bound: bindings.get(&d.id).cloned(),
                weight: weights.get(&d.id).copied(),
            })
            .collect()
    }

    /// The JSON of `GET /api/v1/devices`.
    pub fn report(&self) -> Value {
        let devices = self.status();
        let connected = !devices.is_empty()
            && devices
                .iter()
                .all(|d| d.health == Health::Connected && d.faults.is_empty());
        let message = if self.configured() {
            format!("{} device(s) configured", devices.len())
        } else {
            "no devices configured: add a [devices] section to the configuration".to_owned()
        };
        json!({
            "configured": self.configured(),
            "message": message,
            "connected": connected,
            "label_printer": self.config.label_printer,
            "pack_scale": self.config.pack_scale,
            "devices": devices,
        })
    }

    fn binding(&self, scanner: &str) -> Option<Binding> {
        self.bindings
            .lock()
            .ok()
            .and_then(|b| b.get(scanner).cloned())
    }

    fn require_scanner(&self, id: &str) -> Result<(), Error> {
        match self.config.kind_of(id) {
            Some("scanner") => Ok(()),
            Some(kind) => Err(Error::Invalid(format!(
                "{id} is a {kind}: only scanners are bound to a picker"
            ))),
            None => Err(Error::not_found("scanner", id)),
        }
    }

    /// Binds `scanner` to `staff` picking `order_id` (checked to be pickable).
    pub async fn bind(
        &self,
        app: &impl Host,
        scanner: &str,
        staff: &Session,
        request: BindRequest,
    ) -> Result<Binding, Error> {
        self.require_scanner(scanner)?;
        match (&request.order_id, request.receiving) {
            (Some(order_id), false) => {
                let order = order_id.clone();
                let status = app.read(move |conn| orders::status(conn, &order)).await?;
                if !matches!(status, Status::Accepted | Status::Picking) {
                    return Err(Error::InvalidTransition {
                        order_id: order_id.clone(),
                        status,
                        action: "pick",
                    });
                }
            }
            (None, true) => {}
            _ => {
                return Err(Error::Invalid(
                    "bind a scanner to an order (`order_id`) or to goods in (`receiving`: true)"
                        .into(),
                ));
            }
        }
        let mut bindings = self
            .bindings
            .lock()
            .map_err(|_| Error::Device("device bindings are unavailable".into()))?;
        if let Some(current) = bindings.get(scanner)
            && current.staff_id != staff.staff_id
            && current.expires_at > now()
            && staff.role < Role::Lead
        {
            return Err(Error::Conflict(format!(
                "scanner {scanner} is bound to {} ({}): they unbind it first, or a lead takes it over",
                current.name, current.staff_id
            )));
        }
        let binding = Binding {
            scanner: scanner.to_owned(),
            staff_id: staff.staff_id.clone(),
            name: staff.name.clone(),
            order_id: request.order_id,
            receiving: request.receiving,
            bound_at: now(),
            expires_at: staff.expires_at.clone(),
        };
        bindings.insert(scanner.to_owned(), binding.clone());
        tracing::info!(scanner, staff_id = %binding.staff_id, order_id = ?binding.order_id, receiving = binding.receiving, "scanner bound");
        Ok(binding)
    }

    /// Unbinds `scanner` (its picker, or a lead and above).
    pub fn unbind(&self, scanner: &str, staff: &Session) -> Result<Option<Binding>, Error> {
        self.require_scanner(scanner)?;
        let mut bindings = self
            .bindings
            .lock()
            .map_err(|_| Error::Device("device bindings are unavailable".into()))?;
        if let Some(current) = bindings.get(scanner)
            && current.staff_id != staff.staff_id
        {
            staff.require(Role::Lead)?;
        }
        Ok(bindings.remove(scanner))
    }

    /// The pack scale's next stable weight in grams, if a pack scale is configured.
    pub async fn pack_weight_g(&self) -> Result<Option<i64>, Error> {
        let Some(scale) = &self.config.pack_scale else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(self.config.scale_timeout_ms.max(1));
        let mg = self
            .handle()?
            .await_stable(scale, timeout)
            .await
            .map_err(|e| {
                Error::Device(format!(
                    "scale {scale}: {e}; weigh again or enter the weight"
                ))
            })?;
        Ok(Some((mg + 500).div_euclid(1000)))
    }
}
