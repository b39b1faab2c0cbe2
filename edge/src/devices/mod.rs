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
//!   member of staff ([`pick::scan`] through [`App::write`]); its result, applied or refused
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
//!   order they belong to) go onto the live stream, `GET /api/v1/devices` and `/metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flashkart_hw::device::{DeviceConfig, DeviceKind, DeviceLocation, ManagerConfig, SystemPorts};
use flashkart_hw::printer::{BagLabel, JobOutcome, PrintJob};
use flashkart_hw::scanner::ScanContent;
use flashkart_hw::{DeviceEvent, DeviceHandle, DeviceManager, Health, ScanEvent};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::app::App;
use crate::events::Event;
use crate::work::ctx::now;
use crate::work::orders::{self, Status};
use crate::work::pick::{self, Scan};
use crate::work::staff::{Role, Session};
use crate::work::stock::{self, Receive};

/// The `[devices]` section of the edge configuration. No devices by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// The devices (`[[devices.device]]`): id, location (`path` or `usb`), baud, kind.
    #[serde(rename = "device")]
    pub list: Vec<DeviceConfig>,
    /// Id of the printer that prints bag labels when an order is marked READY.
    pub label_printer: Option<String>,
    /// Id of the scale that weighs bags at the pack station.
    pub pack_scale: Option<String>,
    /// How long pack waits for a stable weight.
    pub scale_timeout_ms: u64,
    /// First reconnect delay after a device is lost.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay.
    pub backoff_max_ms: u64,
    /// Printer status poll interval.
    pub printer_poll_ms: u64,
    /// How long READY waits for the label printer to finish a label before answering that
    /// the label is queued.
    pub label_wait_ms: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            label_printer: None,
            pack_scale: None,
            scale_timeout_ms: 5000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            printer_poll_ms: 5000,
            label_wait_ms: 10_000,
        }
    }
}

impl DevicesConfig {
    fn manager(&self) -> ManagerConfig {
        ManagerConfig {
            devices: self.list.clone(),
            backoff_initial_ms: self.backoff_initial_ms,
            backoff_max_ms: self.backoff_max_ms,
            printer_poll_ms: self.printer_poll_ms,
        }
    }

    fn kind_of(&self, id: &str) -> Option<&'static str> {
        self.list
            .iter()
            .find(|d| d.id == id)
            .map(|d| kind_name(&d.kind))
    }

    /// Refuses a configuration whose `label_printer` / `pack_scale` name no such device.
    pub fn validate(&self) -> Result<(), Error> {
        for (field, id, kind) in [
            ("label_printer", &self.label_printer, "printer"),
            ("pack_scale", &self.pack_scale, "scale"),
        ] {
            if let Some(id) = id
                && self.kind_of(id) != Some(kind)
            {
                return Err(Error::Config(format!(
                    "devices.{field} = {id:?} is not a configured {kind}"
                )));
            }
        }
        Ok(())
    }
}

fn kind_name(kind: &DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Scanner(_) => "scanner",
        DeviceKind::Scale(_) => "scale",
        DeviceKind::Printer(_) => "printer",
    }
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
}

/// The outcome of printing one bag label.
#[derive(Debug, Clone, Serialize)]
pub struct LabelPrint {
    pub printer: String,
    pub job_id: String,
    pub bag: u8,
    pub bags: u8,
    /// `outcome`: `printed` (with `attempts`, `faults_after`), `duplicate`, `failed` or
    /// `uncertain` (with `reason`) from the printer queue; `not_sent` when the printer was
    /// already known to be faulted; `queued` when it had not finished within `label_wait_ms`.
    #[serde(flatten)]
    pub outcome: Value,
}

/// The label printer's state, as READY and reprint responses show it.
#[derive(Debug, Clone, Serialize)]
pub struct PrinterState {
    pub id: String,
    pub health: Health,
    /// Faults in words ("paper out"); empty when ready.
    pub faults: Vec<String>,
    /// Connected and without faults.
    pub ready: bool,
    /// "printer printer-1: paper out", for the tablet.
    pub message: String,
}

impl PrinterState {
    fn new(id: String, health: Health, faults: Vec<String>) -> Self {
        let ready = health == Health::Connected && faults.is_empty();
        let message = if !faults.is_empty() {
            format!("printer {id}: {}", faults.join(", "))
        } else {
            match &health {
                Health::Connected => format!("printer {id}: ready"),
                Health::Connecting => format!("printer {id}: connecting"),
                Health::Disconnected { reason } => format!("printer {id}: disconnected ({reason})"),
                Health::Unhealthy { reason } => format!("printer {id}: not answering ({reason})"),
            }
        };
        Self {
            id,
            health,
            faults,
            ready,
            message,
        }
    }
}

/// An order's bag labels: what printing them did, and the printer's state.
#[derive(Debug, Clone, Serialize)]
pub struct Labels {
    /// The label id (the handoff QR), once packed.
    pub label_id: Option<String>,
    /// One per bag; empty without a label printer.
    pub labels: Vec<LabelPrint>,
    /// The label printer after printing; absent without one.
    pub printer: Option<PrinterState>,
    /// What the tablet shows ("label FK-... printed on printer-1").
    pub label_message: String,
}

/// The daemon's devices: configuration, the manager's handle once started, bindings, faults.
#[derive(Debug, Default)]
pub struct Devices {
    config: DevicesConfig,
    handle: OnceLock<DeviceHandle>,
    bindings: Mutex<HashMap<String, Binding>>,
    faults: Mutex<HashMap<String, Vec<String>>>,
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
        app: &App,
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

    /// The label printer as last seen: health from the manager, faults from the status poll.
    pub fn printer_state(&self) -> Option<PrinterState> {
        let id = self.config.label_printer.clone()?;
        let health = self
            .handle
            .get()
            .and_then(|h| h.health(&id))
            .map_or(Health::Connecting, |h| h.borrow().clone());
        let faults = self
            .faults
            .lock()
            .ok()
            .and_then(|f| f.get(&id).cloned())
            .unwrap_or_default();
        Some(PrinterState::new(id, health, faults))
    }

    /// Prints the bag labels of an order marked READY (or reprints them) on the label printer.
    ///
    /// The label id and the bag count come from `order_progress` (persisted at PACK). The job
    /// ids are derived from the label id (`label:{label_id}:{bag}/{bags}`), so the READY print
    /// never sends a bag twice (the printer queue refuses a job id it has sent); a reprint asks
    /// for a deliberate second copy under a job id of its own (`...:reprint:{n}`).
    ///
    /// Printing never refuses the caller: a printer that the status poll already reports as
    /// faulted gets no job (the outcome is `not_sent`, with the fault), one that does not finish
    /// the job within `label_wait_ms` is `queued` (the job prints when the printer takes it),
    /// and the printer's state is part of the result. Outcomes also go onto the live stream.
    pub async fn print_order_labels(&self, app: &App, order_id: &str, reprint: bool) -> Labels {
        let printer_state = self.printer_state();
        let Some(printer) = self.config.label_printer.clone() else {
            return Labels {
                label_id: None,
                labels: Vec::new(),
                printer: None,
                label_message: "no label printer is configured: write the label id on the bags"
                    .into(),
            };
        };
        let order = order_id.to_owned();
        let label = app
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT op.label_id, op.bags, o.customer_first_name, coalesce(o.delivery_slot, '')
                     FROM order_progress op JOIN orders o ON o.id = op.order_id
                     WHERE op.order_id = ?1",
                )?
                .query_row([&order], |row| {
                    Ok((
                        row.get::<_, Option<String>>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .optional()?
                .ok_or_else(|| Error::not_found("order", &order))
            })
            .await;
        let refused = |label_id: Option<String>, message: String| {
            tracing::warn!(order_id, %message, "bag labels not printed");
            Labels {
                label_id,
                labels: Vec::new(),
                printer: printer_state.clone(),
                label_message: message,
            }
        };
        let (label_id, bags, first_name, slot) = match label {
            Ok((Some(label_id), bags, first_name, slot)) => (label_id, bags, first_name, slot),
            Ok((None, ..)) => {
                return refused(
                    None,
                    format!("order {order_id} has no label: pack it first"),
                );
            }
            Err(e) => return refused(None, format!("labels of order {order_id}: {e}")),
        };
        let Ok(bags) = u8::try_from(bags.max(1)) else {
            return refused(Some(label_id), format!("{bags} bags cannot be labelled"));
        };
        let handle = match self.handle() {
            Ok(handle) => handle.clone(),
            Err(e) => return refused(Some(label_id), e.to_string()),
        };
        let reprint_no = if reprint {
            self.reprints
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .wrapping_add(1)
        } else {
            0
        };
        // Status before: a printer the poll reports faulted would only burn the queue's
        // attempts; say so now, a lead reprints once it is fixed.
        let known_fault = printer_state
            .as_ref()
            .filter(|p| !reprint && !p.faults.is_empty())
            .map(|p| p.faults.join(", "));
        let wait = Duration::from_millis(self.config.label_wait_ms.max(1));
        let mut labels = Vec::with_capacity(usize::from(bags));
        let mut faults_after: Option<Vec<String>> = None;
        for bag in 1..=bags {
            let mut job_id = format!("label:{label_id}:{bag}/{bags}");
            if reprint {
                job_id = format!("{job_id}:reprint:{reprint_no}");
            }
            let outcome = if let Some(fault) = &known_fault {
                let reason = format!("printer {printer}: {fault}");
                publish(
                    app,
                    &printer,
                    "print",
                    false,
                    format!(
                        "printer {printer}: bag {bag}/{bags} of order {order_id} not printed ({fault}): \
                         fix the printer, then a lead reprints the label"
                    ),
                    json!({ "outcome": "not_sent", "job_id": job_id, "order_id": order_id, "reason": reason }),
                );
                json!({ "outcome": "not_sent", "reason": reason })
            } else {
                let label = BagLabel {
                    store_name: app.store_id.chars().take(40).collect(),
                    order_id: order_id.to_owned(),
                    handoff_code: label_id.clone(),
                    bag,
                    bags,
                    customer_first_name: first_name
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(30)
                        .collect(),
                    delivery_slot: slot.chars().filter(|c| !c.is_control()).take(40).collect(),
                };
                match label.to_zpl() {
                    Err(e) => {
                        json!({ "outcome": "failed", "reason": format!("bag label of {order_id}: {e}") })
                    }
                    Ok(zpl) => {
                        if let Ok(mut jobs) = self.jobs.lock() {
                            jobs.insert(job_id.clone(), order_id.to_owned());
                        }
                        let job = PrintJob {
                            id: job_id.clone(),
                            payload: zpl.into_bytes(),
                        };
                        match tokio::time::timeout(wait, handle.print(&printer, job)).await {
                            Ok(Ok(outcome)) => {
                                tracing::info!(order_id, %job_id, ?outcome, "bag label");
                                match &outcome {
                                    JobOutcome::Printed {
                                        faults_after: f, ..
                                    } => {
                                        faults_after = Some(f.clone());
                                    }
                                    JobOutcome::Failed { reason, .. }
                                    | JobOutcome::Uncertain { reason } => {
                                        faults_after = Some(vec![reason.clone()]);
                                    }
                                    JobOutcome::Duplicate => {}
                                }
                                serde_json::to_value(&outcome).unwrap_or(Value::Null)
                            }
                            Ok(Err(e)) => {
                                json!({ "outcome": "failed", "reason": format!("printer {printer}: {e}") })
                            }
                            Err(_) => json!({
                                "outcome": "queued",
                                "reason": format!(
                                    "printer {printer} has not printed it within {} ms: it prints when the printer takes the job",
                                    wait.as_millis()
                                ),
                            }),
                        }
                    }
                }
            };
            labels.push(LabelPrint {
                printer: printer.clone(),
                job_id,
                bag,
                bags,
                outcome,
            });
        }
        // Status after: what the job saw, else what the poll saw.
        let state = printer_state.map(|mut p| {
            if let Some(faults) = faults_after {
                p = PrinterState::new(p.id, p.health, faults);
            }
            p
        });
        let outcomes: Vec<&str> = labels
            .iter()
            .map(|l| l.outcome["outcome"].as_str().unwrap_or("failed"))
            .collect();
        let all_printed = outcomes
            .iter()
            .all(|o| *o == "printed" || *o == "duplicate");
        let label_message = if all_printed {
            format!("label {label_id} printed on {printer} ({bags} bag(s))")
        } else {
            let why = state
                .as_ref()
                .filter(|p| !p.faults.is_empty())
                .map(|p| format!(" ({})", p.faults.join(", ")))
                .unwrap_or_default();
            format!(
                "label {label_id} not printed on {printer}{why}: {}; the order is {} regardless, \
                 a lead reprints the label once the printer is fixed",
                outcomes.join(", "),
                if reprint { "unchanged" } else { "READY" }
            )
        };
        Labels {
            label_id: Some(label_id),
            labels,
            printer: state,
            label_message,
        }
    }
}

/// Starts the device manager (if any device is configured) and the task that turns its events
/// into store actions. The task ends when `shutdown` is cancelled; await it before closing the
/// database.
pub fn start(app: &Arc<App>, shutdown: CancellationToken) -> Result<Option<JoinHandle<()>>, Error> {
    let devices = &app.devices;
    if !devices.configured() {
        return Ok(None);
    }
    devices.config.validate()?;
    let (handle, events) = DeviceManager::run(
        devices.config.manager(),
        Arc::new(SystemPorts),
        shutdown.clone(),
    )
    .map_err(|e| Error::Config(format!("devices: {e}")))?;
    for d in &devices.config.list {
        app.metrics.device_health(&d.id, kind_name(&d.kind), false);
    }
    if devices.handle.set(handle).is_err() {
        return Err(Error::Config("the device manager was started twice".into()));
    }
    tracing::info!(
        devices = devices.config.list.len(),
        "device manager started"
    );
    Ok(Some(tokio::spawn(consume(app.clone(), events, shutdown))))
}

async fn consume(
    app: Arc<App>,
    mut events: mpsc::Receiver<DeviceEvent>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        handle_event(&app, event).await;
    }
    tracing::debug!("device events stopped");
}

fn publish(app: &App, device: &str, change: &str, ok: bool, message: String, detail: Value) {
    app.hub.publish(vec![Event::Device {
        seq: app.hub.next_seq(),
        device: device.to_owned(),
        change: change.to_owned(),
        ok,
        message,
        detail,
    }]);
}

async fn handle_event(app: &App, event: DeviceEvent) {
    match event {
        DeviceEvent::Scan { device, event } => on_scan(app, &device, &event).await,
        DeviceEvent::Weight { device, reading } => {
            tracing::debug!(%device, ?reading, "scale reading");
        }
        DeviceEvent::DeviceHealth { device, health } => {
            let kind = app.devices.config.kind_of(&device).unwrap_or("device");
            app.metrics
                .device_health(&device, kind, health == Health::Connected);
            let message = match &health {
                Health::Connecting => format!("{kind} {device}: connecting"),
                Health::Connected => format!("{kind} {device}: connected"),
                Health::Disconnected { reason } => {
                    format!("{kind} {device}: disconnected ({reason})")
                }
                Health::Unhealthy { reason } => {
                    format!("{kind} {device}: not answering ({reason})")
                }
            };
            let ok = health == Health::Connected;
            publish(
                app,
                &device,
                "health",
                ok,
                message,
                serde_json::to_value(&health).unwrap_or(Value::Null),
            );
        }
        DeviceEvent::PrinterStatus { device, faults, .. } => {
            app.metrics.printer_faults(&device, faults.len());
            if let Ok(mut all) = app.devices.faults.lock() {
                all.insert(device.clone(), faults.clone());
            }
            let message = if faults.is_empty() {
                format!("printer {device}: ready")
            } else {
                format!("printer {device}: {}", faults.join(", "))
            };
            publish(
                app,
                &device,
                "printer",
                faults.is_empty(),
                message,
                json!({ "faults": faults }),
            );
        }
        DeviceEvent::Job {
            device,
            job_id,
            outcome,
        } => {
            let (ok, what) = match &outcome {
                JobOutcome::Printed { faults_after, .. } if faults_after.is_empty() => {
                    (true, "printed".to_owned())
                }
                JobOutcome::Printed { faults_after, .. } => {
                    (true, format!("printed; then {}", faults_after.join(", ")))
                }
                JobOutcome::Duplicate => (true, "already printed; not printed again".to_owned()),
                JobOutcome::Failed { reason, .. } => (false, format!("not printed: {reason}")),
                JobOutcome::Uncertain { reason } => (
                    false,
                    format!("may be incomplete ({reason}): check and reprint"),
                ),
            };
            app.metrics.print_job(&device, outcome_name(&outcome));
            let mut detail = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            let order_id = app
                .devices
                .jobs
                .lock()
                .ok()
                .and_then(|jobs| jobs.get(&job_id).cloned());
            if let Value::Object(map) = &mut detail {
                map.insert("job_id".into(), Value::String(job_id.clone()));
                if let Some(order_id) = &order_id {
                    map.insert("order_id".into(), Value::String(order_id.clone()));
                }
            }
            publish(
                app,
                &device,
                "print",
                ok,
                match &order_id {
                    Some(order_id) => {
                        format!("printer {device}: {job_id} (order {order_id}) {what}")
                    }
                    None => format!("printer {device}: {job_id} {what}"),
                },
                detail,
            );
        }
    }
}

fn outcome_name(outcome: &JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Printed { .. } => "printed",
        JobOutcome::Duplicate => "duplicate",
        JobOutcome::Failed { .. } => "failed",
        JobOutcome::Uncertain { .. } => "uncertain",
    }
}

/// What a scan asks for: the code the catalog resolves, and the lot (GS1 AI 10) if it has one.
fn scan_request(event: &ScanEvent) -> Result<Scan, String> {
    let code = match &event.content {
        ScanContent::Retail {
            code,
            restricted_circulation: true,
            ..
        } => code.clone(),
        ScanContent::Text { text } => text.clone(),
        _ => event
            .gtin()
            .ok_or_else(|| format!("scan {} carries no GTIN", event.raw))?
            .to_owned(),
    };
    let lot = event.element("10").map(|e| e.raw.clone());
    Ok(Scan {
        code,
        line_no: None,
        lot,
    })
}

async fn on_scan(app: &App, device: &str, event: &ScanEvent) {
    let Some(binding) = app.devices.binding(device) else {
        tracing::warn!(device, raw = %event.raw, "scan from a scanner bound to nobody: ignored");
        app.metrics.device_scan(device, "unbound");
        publish(
            app,
            device,
            "scan",
            false,
            format!(
                "scanner {device} is not bound to a picker: bind it on the tablet, then scan again"
            ),
            json!({ "raw": event.raw }),
        );
        return;
    };
    let refuse = |message: String| {
        app.metrics.device_scan(device, "refused");
        tracing::info!(device, staff_id = %binding.staff_id, order_id = ?binding.order_id, %message, "scan refused");
        publish(
            app,
            device,
            "scan",
            false,
            message,
            json!({ "raw": event.raw, "order_id": binding.order_id, "staff_id": binding.staff_id }),
        );
    };
    if binding.expires_at <= now() {
        refuse(format!(
            "{}'s sign-in has ended: sign in and bind scanner {device} again",
            binding.name
        ));
        return;
    }
    let Some(order_id) = binding.order_id.clone() else {
        // A receiving scanner: the scan is a case label, received as its member of staff.
        let receive = Receive {
            scan: Some(event.raw.clone()),
            ..Receive::default()
        };
        let layout = app.layout.clone();
        let result = app
            .write(&binding.staff_id, move |conn, ctx| {
                stock::receive(conn, ctx, &layout, &receive)
            })
            .await;
        match result {
            Ok(received) => {
                app.metrics.device_scan(device, "applied");
                let case = received.case_label.as_ref();
                let message = format!(
                    "received {} × {}{}{}",
                    received.qty,
                    received.product_id,
                    case.and_then(|c| c.lot.as_deref())
                        .map(|l| format!(", lot {l}"))
                        .unwrap_or_default(),
                    case.and_then(|c| c.expiry.as_deref())
                        .map(|e| format!(", expires {e}"))
                        .unwrap_or_default()
                );
                let mut detail = serde_json::to_value(&received).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut detail {
                    map.insert("raw".into(), Value::String(event.raw.clone()));
                    map.insert("staff_id".into(), Value::String(binding.staff_id.clone()));
                }
                publish(app, device, "scan", true, message, detail);
            }
            Err(error) => refuse(error.to_string()),
        }
        return;
    };
    let scan = match scan_request(event) {
        Ok(scan) => scan,
        Err(message) => return refuse(message),
    };
    let layout = app.layout.clone();
    let result = app
        .write(&binding.staff_id, move |conn, ctx| {
            pick::scan(conn, ctx, &layout, &order_id, &scan)
        })
        .await;
    match result {
        Ok(scanned) => {
            app.metrics.device_scan(device, "applied");
            let message = format!(
                "picked {} × {} (line {}); {} left on order {}",
                scanned.qty,
                scanned.product_name,
                scanned.line_no,
                scanned.order_open_qty,
                scanned.order_id
            );
            let mut detail = serde_json::to_value(&scanned).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut detail {
                map.insert("raw".into(), Value::String(event.raw.clone()));
                map.insert("staff_id".into(), Value::String(binding.staff_id.clone()));
            }
            publish(app, device, "scan", true, message, detail);
        }
        Err(error) => refuse(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_to_no_devices_and_checks_names() {
        let config: DevicesConfig = toml::from_str("").expect("empty section");
        assert!(config.list.is_empty());
        let config: DevicesConfig = toml::from_str(
            "label_printer = \"p1\"\n[[device]]\nid = \"p1\"\nlocation = { path = \"/dev/x\" }\nkind = { type = \"scanner\" }\n",
        )
        .expect("valid");
        assert!(config.validate().is_err(), "p1 is a scanner, not a printer");
    }

    #[test]
    fn the_example_config_parses() {
        let config: crate::Config =
            toml::from_str(include_str!("../../../deploy/edge.example.toml")).expect("example");
        assert_eq!(config.devices.list.len(), 4);
        config.devices.validate().expect("names real devices");
    }

    #[test]
    fn scans_become_pick_requests() {
        let ev = flashkart_hw::decode_raw_scan("]C101095060001343521012AB").expect("gs1");
        let scan = scan_request(&ev).expect("gtin");
        assert_eq!(scan.code, "09506000134352");
        assert_eq!(scan.lot.as_deref(), Some("12AB"));
        let code = crate::work::barcode::with_check_digit("231234500450");
        let ev = flashkart_hw::decode_raw_scan(&format!("]E0{code}")).expect("ean");
        assert_eq!(scan_request(&ev).expect("code").code, code);
    }
}
