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
//!   data is logged by the driver and never becomes an event.
//! - **Packing weighs and prints.** With a `pack_scale` configured, a pack request without
//!   `bag_weight_g` takes the scale's next stable weight. Once the order is PACKED, each bag's
//!   label (ZPL) is printed on `label_printer`; the job id is derived from the order's label id
//!   (persisted in `order_progress`), and pack happens once per order, so a label never prints
//!   twice (the printer queue also refuses a job id it already sent).
//! - **Health.** Device health, printer faults ("paper out") and print outcomes go onto the
//!   live stream, `GET /api/v1/devices` and `/metrics`.

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
use crate::ctx::now;
use crate::events::Event;
use crate::orders::{self, Status};
use crate::pack::Packed;
use crate::pick::{self, Scan};
use crate::staff::{Role, Session};

/// The `[devices]` section of the edge configuration. No devices by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// The devices (`[[devices.device]]`): id, location (`path` or `usb`), baud, kind.
    #[serde(rename = "device")]
    pub list: Vec<DeviceConfig>,
    /// Id of the printer that prints bag labels when an order is packed.
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

/// A scanner's binding to a picker and the order they pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub scanner: String,
    pub staff_id: String,
    pub name: String,
    pub order_id: String,
    pub bound_at: String,
    /// When the picker's sign-in ends; scans after that are refused.
    pub expires_at: String,
}

/// What `POST /api/v1/devices/{id}/bind` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    /// The order this picker is picking; scans apply to it.
    pub order_id: String,
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
    #[serde(flatten)]
    pub outcome: Value,
}

/// The daemon's devices: configuration, the manager's handle once started, bindings, faults.
#[derive(Debug, Default)]
pub struct Devices {
    config: DevicesConfig,
    handle: OnceLock<DeviceHandle>,
    bindings: Mutex<HashMap<String, Binding>>,
    faults: Mutex<HashMap<String, Vec<String>>>,
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
        let order_id = request.order_id.clone();
        let status = app
            .read(move |conn| orders::status(conn, &order_id))
            .await?;
        if !matches!(status, Status::Accepted | Status::Picking) {
            return Err(Error::InvalidTransition {
                order_id: request.order_id,
                status,
                action: "pick",
            });
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
            bound_at: now(),
            expires_at: staff.expires_at.clone(),
        };
        bindings.insert(scanner.to_owned(), binding.clone());
        tracing::info!(scanner, staff_id = %binding.staff_id, order_id = %binding.order_id, "scanner bound");
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

    /// Prints the bag labels of a packed order on the label printer (if one is configured).
    /// Outcomes also go onto the live stream.
    pub async fn print_labels(&self, app: &App, packed: &Packed) -> Result<Vec<LabelPrint>, Error> {
        let Some(printer) = self.config.label_printer.clone() else {
            return Ok(Vec::new());
        };
        let handle = self.handle()?.clone();
        let order_id = packed.order_id.clone();
        let (first_name, slot) = app
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT customer_first_name, coalesce(delivery_slot, '') FROM orders WHERE id = ?1",
                )?
                .query_row([&order_id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .optional()?
                .ok_or_else(|| Error::not_found("order", &order_id))
            })
            .await?;
        let bags = u8::try_from(packed.bags)
            .map_err(|_| Error::Invalid(format!("{} bags cannot be labelled", packed.bags)))?;
        let mut printed = Vec::with_capacity(usize::from(bags));
        for bag in 1..=bags {
            let label = BagLabel {
                store_name: app.store_id.chars().take(40).collect(),
                order_id: packed.order_id.clone(),
                handoff_code: packed.label_id.clone(),
                bag,
                bags,
                customer_first_name: first_name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(30)
                    .collect(),
                delivery_slot: slot.chars().filter(|c| !c.is_control()).take(40).collect(),
            };
            let zpl = label
                .to_zpl()
                .map_err(|e| Error::Invalid(format!("bag label of {}: {e}", packed.order_id)))?;
            // The label id is unique per pack and persisted: the same bag never prints twice.
            let job_id = format!("label:{}:{bag}/{bags}", packed.label_id);
            let outcome = handle
                .print(
                    &printer,
                    PrintJob {
                        id: job_id.clone(),
                        payload: zpl.into_bytes(),
                    },
                )
                .await
                .map_err(|e| Error::Device(format!("printer {printer}: {e}")))?;
            tracing::info!(order_id = %packed.order_id, %job_id, ?outcome, "bag label");
            printed.push(LabelPrint {
                printer: printer.clone(),
                job_id,
                outcome: serde_json::to_value(&outcome).unwrap_or(Value::Null),
            });
        }
        Ok(printed)
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
            if let Value::Object(map) = &mut detail {
                map.insert("job_id".into(), Value::String(job_id.clone()));
            }
            publish(
                app,
                &device,
                "print",
                ok,
                format!("printer {device}: {job_id} {what}"),
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
        tracing::info!(device, staff_id = %binding.staff_id, order_id = %binding.order_id, %message, "scan refused");
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
    let scan = match scan_request(event) {
        Ok(scan) => scan,
        Err(message) => return refuse(message),
    };
    let layout = app.layout.clone();
    let order_id = binding.order_id.clone();
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
            toml::from_str(include_str!("../../deploy/edge.example.toml")).expect("example");
        assert_eq!(config.devices.list.len(), 4);
        config.devices.validate().expect("names real devices");
    }

    #[test]
    fn scans_become_pick_requests() {
        let ev = flashkart_hw::decode_raw_scan("]C101095060001343521012AB").expect("gs1");
        let scan = scan_request(&ev).expect("gtin");
        assert_eq!(scan.code, "09506000134352");
        assert_eq!(scan.lot.as_deref(), Some("12AB"));
        let code = crate::barcode::with_check_digit("231234500450");
        let ev = flashkart_hw::decode_raw_scan(&format!("]E0{code}")).expect("ean");
        assert_eq!(scan_request(&ev).expect("code").code, code);
    }
}
