//! The device feed: the task that turns the device manager's events into store actions.
//!
//! Why a module of its own: scans, health changes, printer faults and print outcomes arrive
//! from serial ports with no request around them; this is the one place that decides what
//! each means for the store and says so on the live stream and in `/metrics`.

use std::sync::Arc;

use flashkart_hw::device::SystemPorts;
use flashkart_hw::printer::JobOutcome;
use flashkart_hw::{DeviceEvent, DeviceManager, Health, ScanEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Host, status};
use crate::Error;
use crate::config::devices::kind_name;
use crate::events::Event;
use crate::work::ctx::now;
use crate::work::pick::{self, PickScan};
use crate::work::stock;

/// Starts the device manager (if any device is configured) and the task that turns its events
/// into store actions. The task ends when `shutdown` is cancelled; await it before closing the
/// database.
pub fn start<H: Host>(
    app: &Arc<H>,
    shutdown: CancellationToken,
) -> Result<Option<JoinHandle<()>>, Error> {
    let devices = app.devices();
    if !devices.configured() {
        return Ok(None);
    }
    devices.config.validate()?;
    let variable_measure = app.layout().layouts().map_err(Error::Config)?;
    let (handle, events) = DeviceManager::run(
        devices.config.manager(&variable_measure),
        Arc::new(SystemPorts),
        shutdown.clone(),
    )
    .map_err(|e| Error::Config(format!("devices: {e}")))?;
    for d in &devices.config.list {
        app.metrics()
            .device_health(&d.id, kind_name(&d.kind), false);
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

async fn consume<H: Host>(
    app: Arc<H>,
    mut events: mpsc::Receiver<DeviceEvent>,
    shutdown: CancellationToken,
) {
    let configured: Vec<(String, String)> = app
        .devices()
        .config
        .list
        .iter()
        .map(|d| (d.id.clone(), kind_name(&d.kind).to_owned()))
        .collect();
    let result = app
        .write(DEVICES_ACTOR, move |conn, ctx| {
            status::configure(conn, ctx, &configured)
        })
        .await;
    if let Err(error) = result {
        tracing::warn!(%error, "device status rows not written");
    }
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        handle_event(app.as_ref(), event).await;
    }
    tracing::debug!("device events stopped");
}

pub(super) fn publish(
    app: &impl Host,
    device: &str,
    change: &str,
    ok: bool,
    message: String,
    detail: Value,
) {
    app.hub().publish(vec![Event::Device {
        seq: app.hub().next_seq(),
        device: device.to_owned(),
        change: change.to_owned(),
        ok,
        message,
        detail,
    }]);
}

/// Who writes the device status rows.
const DEVICES_ACTOR: &str = "devices";

/// Amends `device`'s synced status row (see `status.rs`); a failure is logged, never fatal:
/// the store works on whatever HQ is told.
async fn report_status(
    app: &impl Host,
    device: &str,
    kind: &str,
    change: impl FnOnce(&mut status::Reported) + Send + 'static,
) {
    let (device_id, kind_owned) = (device.to_owned(), kind.to_owned());
    let result = app
        .write(DEVICES_ACTOR, move |conn, ctx| {
            status::record(conn, ctx, &device_id, &kind_owned, change)
        })
        .await;
    if let Err(error) = result {
        tracing::warn!(device, %error, "device status row not written");
    }
}

async fn handle_event(app: &impl Host, event: DeviceEvent) {
    match event {
        DeviceEvent::Scan { device, event } => on_scan(app, &device, &event).await,
        DeviceEvent::Weight { device, reading } => {
            tracing::debug!(%device, ?reading, "scale reading");
            let weight = super::Weight {
                grams: reading.milligrams.map(|mg| (mg + 500).div_euclid(1000)),
                stable: reading.stable,
                over_capacity: reading.over_capacity,
                under_zero: reading.under_zero,
            };
            if let Ok(mut all) = app.devices().weights.lock() {
                all.insert(device.clone(), weight);
            }
            let message = match weight.grams {
                Some(g) if weight.stable => format!("scale {device}: {g} g"),
                Some(g) => format!("scale {device}: {g} g (settling)"),
                None if weight.over_capacity => format!("scale {device}: over capacity"),
                None => format!("scale {device}: settling"),
            };
            publish(
                app,
                &device,
                "weight",
                !weight.over_capacity && !weight.under_zero,
                message,
                serde_json::to_value(weight).unwrap_or(Value::Null),
            );
        }
        DeviceEvent::DeviceHealth { device, health } => {
            let kind = app.devices().config.kind_of(&device).unwrap_or("device");
            app.metrics()
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
            let (word, reason) = status::health_words(&health);
            report_status(app, &device, kind, move |row| {
                row.health = word;
                row.reason = reason;
            })
            .await;
        }
        DeviceEvent::PrinterStatus { device, faults, .. } => {
            app.metrics().printer_faults(&device, faults.len());
            let before = app
                .devices()
                .faults
                .lock()
                .ok()
                .and_then(|mut all| all.insert(device.clone(), faults.clone()));
            if before.as_ref() != Some(&faults) {
                let listed = faults.join(", ");
                report_status(app, &device, "printer", move |row| row.faults = listed).await;
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
            app.metrics().print_job(&device, outcome_name(&outcome));
            let mut detail = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            let order_id = app
                .devices()
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

async fn on_scan(app: &impl Host, device: &str, event: &ScanEvent) {
    let Some(binding) = app.devices().binding(device) else {
        tracing::warn!(device, raw = %event.raw, "scan from a scanner bound to nobody: ignored");
        app.metrics().device_scan(device, "unbound");
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
        app.metrics().device_scan(device, "refused");
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
    // Picks and case labels alike: what the scan did, with the raw scan and who scanned.
    let applied = |message: String, mut detail: Value| {
        app.metrics().device_scan(device, "applied");
        if let Value::Object(map) = &mut detail {
            map.insert("raw".into(), Value::String(event.raw.clone()));
            map.insert("staff_id".into(), Value::String(binding.staff_id.clone()));
        }
        publish(app, device, "scan", true, message, detail);
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
        let label = event.clone();
        let layout = app.layout().clone();
        let result = app
            .write(&binding.staff_id, move |conn, ctx| {
                stock::receive_scan(conn, ctx, &layout, &label)
            })
            .await;
        match result {
            Ok(received) => {
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
                applied(
                    message,
                    serde_json::to_value(&received).unwrap_or(Value::Null),
                );
            }
            Err(error) => refuse(error.to_string()),
        }
        return;
    };
    let scan = PickScan::from_event(event.clone());
    let result = app
        .write(&binding.staff_id, move |conn, ctx| {
            pick::scan(conn, ctx, &order_id, &scan)
        })
        .await;
    match result {
        Ok(scanned) => {
            let message = format!(
                "picked {} × {} (line {}); {} left on order {}",
                scanned.qty,
                scanned.product_name,
                scanned.line_no,
                scanned.order_open_qty,
                scanned.order_id
            );
            applied(
                message,
                serde_json::to_value(&scanned).unwrap_or(Value::Null),
            );
        }
        Err(error) => refuse(error.to_string()),
    }
}
