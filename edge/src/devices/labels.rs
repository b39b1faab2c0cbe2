//! Bag labels: printing an order's labels when it becomes READY, and the printer's state.
//!
//! Why a module of its own: a label must never print twice and a faulted printer must never
//! hold a finished order back; the job ids, the status checks before and after, and the
//! answer the tablet shows are all decided here.

use std::time::Duration;

use flashkart_hw::Health;
use flashkart_hw::printer::{BagLabel, JobOutcome, PrintJob};
use rusqlite::OptionalExtension;
use serde::Serialize;
use serde_json::{Value, json};

use super::feed::publish;
use super::{Devices, Host};
use crate::Error;

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

impl Devices {
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
    pub async fn print_order_labels(
        &self,
        app: &impl Host,
        order_id: &str,
        reprint: bool,
    ) -> Labels {
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
                    store_name: app.store_id().chars().take(40).collect(),
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
