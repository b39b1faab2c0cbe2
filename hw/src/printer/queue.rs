//! The print job queue: checks status before and after each job, retries
//! while the printer is not ready, and never sends a job twice. A job is only
//! retried when none of its bytes were written; once written (or possibly
//! written) its id is remembered and a resubmission is a no-op.

use super::driver::{Printer, PrinterError};
use super::status::PrinterStatus;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// A job: an idempotency key and the bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintJob {
    /// Unique per physical label/receipt, e.g. [`super::BagLabel::job_id`].
    pub id: String,
    /// ZPL or ESC/POS bytes.
    pub payload: Vec<u8>,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobOutcome {
    /// Sent once; `faults_after` lists problems the printer reported afterwards.
    Printed {
        /// Attempts used.
        attempts: u32,
        /// Faults after the job (e.g. paper ran out during it).
        faults_after: Vec<String>,
    },
    /// This job id was already sent: nothing was printed.
    Duplicate,
    /// Never sent: the printer stayed not ready. Safe to submit again.
    Failed {
        /// Attempts used.
        attempts: u32,
        /// Last reason.
        reason: String,
    },
    /// Writing failed midway: the label may or may not exist. Not retried;
    /// a person checks and reprints under a new job id.
    Uncertain {
        /// Why.
        reason: String,
    },
}

/// Remembers job ids; one per printer, kept across reconnects.
#[derive(Debug, Default)]
pub struct JobQueue {
    sent: HashMap<String, JobOutcome>,
}

impl JobQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if `id` was sent (or possibly sent).
    pub fn was_sent(&self, id: &str) -> bool {
        self.sent.contains_key(id)
    }

    /// Runs one job to an outcome. `on_status` sees every status query result.
    pub async fn run<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        printer: &mut Printer<T>,
        job: &PrintJob,
        mut on_status: impl FnMut(&Result<PrinterStatus, PrinterError>),
    ) -> JobOutcome {
        if self.sent.contains_key(&job.id) {
            tracing::info!(job = %job.id, "job already sent, not printing again");
            return JobOutcome::Duplicate;
        }
        let max = printer.config().max_attempts.max(1);
        let delay = Duration::from_millis(printer.config().retry_delay_ms);
        let mut reason = String::new();
        for attempt in 1..=max {
            if attempt > 1 {
                tokio::time::sleep(delay).await;
            }
            let before = printer.status().await;
            on_status(&before);
            match before {
                Ok(s) if s.is_ready() => {}
                Ok(s) => {
                    reason = PrinterError::NotReady(s.faults()).to_string();
                    tracing::warn!(job = %job.id, attempt, %reason, "printer not ready");
                    continue;
                }
                Err(e) => {
                    reason = e.to_string();
                    tracing::warn!(job = %job.id, attempt, %reason, "printer status failed");
                    if matches!(e, PrinterError::Io(_)) {
                        break;
                    }
                    continue;
                }
            }
            // From here on the job counts as sent, whatever happens.
            self.sent.insert(
                job.id.clone(),
                JobOutcome::Uncertain {
                    reason: "in flight".into(),
                },
            );
            if let Err(e) = printer.send(&job.payload).await {
                let outcome = JobOutcome::Uncertain {
                    reason: e.to_string(),
                };
                tracing::error!(job = %job.id, error = %e, "job write failed; not retrying");
                self.sent.insert(job.id.clone(), outcome.clone());
                return outcome;
            }
            let after = printer.status().await;
            on_status(&after);
            let faults_after = match &after {
                Ok(s) => s.faults().into_iter().map(String::from).collect(),
                Err(e) => vec![e.to_string()],
            };
            let outcome = JobOutcome::Printed {
                attempts: attempt,
                faults_after,
            };
            tracing::info!(job = %job.id, ?outcome, "job sent");
            self.sent.insert(job.id.clone(), outcome.clone());
            return outcome;
        }
        JobOutcome::Failed {
            attempts: max,
            reason,
        }
    }
}
