//! One supervising task per configured device: resolve, open (exclusive),
//! run the driver session, and on loss reconnect with exponential backoff.
//! Health is a watch channel per device and a [`DeviceEvent`] on change.

use super::config::{DeviceConfig, DeviceKind, DeviceLocation, ManagerConfig};
use super::enumerate::PortEnumerator;
use crate::printer::queue::JobQueue;
use crate::printer::{JobOutcome, PrintJob, Printer, PrinterConfig, PrinterError, PrinterStatus};
use crate::scale::{Reading, Scale, ScaleConfig, ScaleError};
use crate::scanner::driver::ScannerReader;
use crate::scanner::{ScanEvent, ScannerConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;

/// A device's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    /// Not opened yet.
    Connecting,
    /// Open and answering.
    Connected,
    /// Not found or connection lost; reconnecting with backoff.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Open but not answering (a silent, unplugged USB adapter) or faulted.
    Unhealthy {
        /// Why.
        reason: String,
    },
}

/// What the manager reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// A valid scan.
    Scan {
        /// Scanner id.
        device: String,
        /// The scan.
        event: ScanEvent,
    },
    /// A changed scale reading.
    Weight {
        /// Scale id.
        device: String,
        /// The reading.
        reading: Reading,
    },
    /// A changed printer status (`status` is None when the printer did not answer).
    PrinterStatus {
        /// Printer id.
        device: String,
        /// Parsed status.
        status: Option<PrinterStatus>,
        /// Faults in words ("paper out"...), empty when ready.
        faults: Vec<String>,
    },
    /// Health changed.
    DeviceHealth {
        /// Device id.
        device: String,
        /// New health.
        health: Health,
    },
    /// A print job finished.
    Job {
        /// Printer id.
        device: String,
        /// Job id.
        job_id: String,
        /// Outcome.
        outcome: JobOutcome,
    },
}

/// Errors of the manager API.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Two devices share an id.
    #[error("duplicate device id {0}")]
    DuplicateId(String),
    /// No such device of that kind.
    #[error("no {kind} named {id}")]
    UnknownDevice {
        /// Expected kind.
        kind: &'static str,
        /// Id asked for.
        id: String,
    },
    /// The manager was shut down.
    #[error("device manager stopped")]
    Stopped,
    /// The scale failed.
    #[error(transparent)]
    Scale(#[from] ScaleError),
}

type JobReq = (PrintJob, oneshot::Sender<JobOutcome>);

/// Scale requests.
#[derive(Debug)]
enum ScaleReq {
    AwaitStable(Duration, oneshot::Sender<Result<i64, ScaleError>>),
    Zero(oneshot::Sender<Result<(), ScaleError>>),
    Tare(oneshot::Sender<Result<(), ScaleError>>),
}

/// The API the edge uses while the manager runs.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    printers: HashMap<String, mpsc::Sender<JobReq>>,
    scales: HashMap<String, mpsc::Sender<ScaleReq>>,
    health: HashMap<String, watch::Receiver<Health>>,
}

impl DeviceHandle {
    /// Prints `job` on `printer` (idempotent by job id) and waits for the outcome.
    pub async fn print(&self, printer: &str, job: PrintJob) -> Result<JobOutcome, ManagerError> {
        let tx = self
            .printers
            .get(printer)
            .ok_or_else(|| ManagerError::UnknownDevice {
                kind: "printer",
                id: printer.into(),
            })?;
        let (done, wait) = oneshot::channel();
        tx.send((job, done))
            .await
            .map_err(|_| ManagerError::Stopped)?;
        wait.await.map_err(|_| ManagerError::Stopped)
    }

    async fn scale<R>(
        &self,
        scale: &str,
        make: impl FnOnce(oneshot::Sender<Result<R, ScaleError>>) -> ScaleReq,
    ) -> Result<R, ManagerError> {
        let tx = self
            .scales
            .get(scale)
            .ok_or_else(|| ManagerError::UnknownDevice {
                kind: "scale",
                id: scale.into(),
            })?;
        let (done, wait) = oneshot::channel();
        tx.send(make(done))
            .await
            .map_err(|_| ManagerError::Stopped)?;
        Ok(wait.await.map_err(|_| ManagerError::Stopped)??)
    }

    /// Waits for a stable weight in milligrams.
    pub async fn await_stable(&self, scale: &str, timeout: Duration) -> Result<i64, ManagerError> {
        self.scale(scale, |d| ScaleReq::AwaitStable(timeout, d))
            .await
    }

    /// Zeroes a scale.
    pub async fn zero(&self, scale: &str) -> Result<(), ManagerError> {
        self.scale(scale, ScaleReq::Zero).await
    }

    /// Tares a scale.
    pub async fn tare(&self, scale: &str) -> Result<(), ManagerError> {
        self.scale(scale, ScaleReq::Tare).await
    }

    /// Health of one device, as a watch channel.
    pub fn health(&self, device: &str) -> Option<watch::Receiver<Health>> {
        self.health.get(device).cloned()
    }

    /// Current health of every device.
    pub fn health_all(&self) -> Vec<(String, Health)> {
        let mut v: Vec<_> = self
            .health
            .iter()
            .map(|(k, h)| (k.clone(), h.borrow().clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Starts and supervises all configured devices.
#[derive(Debug)]
pub struct DeviceManager;

struct Ctx {
    cfg: DeviceConfig,
    ports: Arc<dyn PortEnumerator>,
    events: mpsc::Sender<DeviceEvent>,
    health: watch::Sender<Health>,
    shutdown: CancellationToken,
    backoff: (Duration, Duration),
    printer_poll: Duration,
}

enum End {
    Shutdown,
    Lost(String),
}

impl DeviceManager {
    /// Spawns one task per device; they stop when `shutdown` is cancelled.
    /// Events arrive on the returned receiver (bounded; a slow consumer
    /// delays drivers rather than losing scans).
    pub fn run(
        config: ManagerConfig,
        ports: Arc<dyn PortEnumerator>,
        shutdown: CancellationToken,
    ) -> Result<(DeviceHandle, mpsc::Receiver<DeviceEvent>), ManagerError> {
        let (events, rx) = mpsc::channel(1024);
        let mut handle = DeviceHandle {
            printers: HashMap::new(),
            scales: HashMap::new(),
            health: HashMap::new(),
        };
        for dev in &config.devices {
            if handle.health.contains_key(&dev.id) {
                return Err(ManagerError::DuplicateId(dev.id.clone()));
            }
            let (htx, hrx) = watch::channel(Health::Connecting);
            handle.health.insert(dev.id.clone(), hrx);
            let ctx = Ctx {
                cfg: dev.clone(),
                ports: ports.clone(),
                events: events.clone(),
                health: htx,
                shutdown: shutdown.clone(),
                backoff: (
                    Duration::from_millis(config.backoff_initial_ms.max(1)),
                    Duration::from_millis(config.backoff_max_ms.max(1)),
                ),
                printer_poll: Duration::from_millis(config.printer_poll_ms.max(10)),
            };
            let (mut jobs, mut cmds) = (None, None);
            match &dev.kind {
                DeviceKind::Printer(_) => {
                    let (tx, rx) = mpsc::channel(64);
                    handle.printers.insert(dev.id.clone(), tx);
                    jobs = Some(rx);
                }
                DeviceKind::Scale(_) => {
                    let (tx, rx) = mpsc::channel(16);
                    handle.scales.insert(dev.id.clone(), tx);
                    cmds = Some(rx);
                }
                DeviceKind::Scanner(_) => {}
            }
            tokio::spawn(supervise(ctx, jobs, cmds));
        }
        Ok((handle, rx))
    }
}

impl Ctx {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    async fn emit(&self, ev: DeviceEvent) {
        if self.events.send(ev).await.is_err() {
            tracing::debug!(device = %self.cfg.id, "event receiver dropped");
        }
    }

    async fn set_health(&self, h: Health) {
        let changed = self.health.send_if_modified(|cur| {
            let changed = *cur != h;
            *cur = h.clone();
            changed
        });
        if changed {
            tracing::info!(device = %self.cfg.id, health = ?h, "device health");
            self.emit(DeviceEvent::DeviceHealth {
                device: self.cfg.id.clone(),
                health: h,
            })
            .await;
        }
    }

    fn resolve(&self) -> Result<PathBuf, String> {
        match &self.cfg.location {
            DeviceLocation::Path(p) => Ok(p.clone()),
            DeviceLocation::Usb(m) => self
                .ports
                .ports()
                .into_iter()
                .find(|p| {
                    p.vid
                        .as_deref()
                        .is_some_and(|v| v.eq_ignore_ascii_case(&m.vid))
                        && p.pid
                            .as_deref()
                            .is_some_and(|v| v.eq_ignore_ascii_case(&m.pid))
                        && m.serial
                            .as_ref()
                            .is_none_or(|s| p.serial.as_ref() == Some(s))
                })
                .map(|p| p.path)
                .ok_or_else(|| format!("no USB serial port {}:{} {:?}", m.vid, m.pid, m.serial)),
        }
    }

    fn open(&self) -> Result<SerialStream, String> {
        let path = self.resolve()?;
        let (bits, even) = match &self.cfg.kind {
            DeviceKind::Scale(c) => {
                let s = c.protocol.serial_settings();
                (s.data_bits, s.even_parity)
            }
            _ => (8, false),
        };
        let baud = self.cfg.baud.unwrap_or(9600);
        let path_s = path.to_string_lossy().into_owned();
        tokio_serial::new(path_s, baud)
            .data_bits(if bits == 7 {
                tokio_serial::DataBits::Seven
            } else {
                tokio_serial::DataBits::Eight
            })
            .parity(if even {
                tokio_serial::Parity::Even
            } else {
                tokio_serial::Parity::None
            })
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .exclusive(true)
            .open_native_async()
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

async fn supervise(
    ctx: Ctx,
    mut jobs: Option<mpsc::Receiver<JobReq>>,
    mut cmds: Option<mpsc::Receiver<ScaleReq>>,
) {
    let mut queue = JobQueue::new();
    let mut backoff = ctx.backoff.0;
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let end = match ctx.open() {
            Ok(stream) => {
                ctx.set_health(Health::Connected).await;
                backoff = ctx.backoff.0;
                match &ctx.cfg.kind {
                    DeviceKind::Scanner(c) => scanner_session(&ctx, stream, c).await,
                    DeviceKind::Scale(c) => scale_session(&ctx, stream, c, cmds.as_mut()).await,
                    DeviceKind::Printer(c) => {
                        printer_session(&ctx, stream, c, jobs.as_mut(), &mut queue).await
                    }
                }
            }
            Err(e) => End::Lost(e),
        };
        match end {
            End::Shutdown => return,
            End::Lost(reason) => {
                tracing::warn!(device = %ctx.id(), %reason, ?backoff, "device lost, reconnecting");
                ctx.set_health(Health::Disconnected { reason }).await;
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(ctx.backoff.1);
    }
}

async fn scanner_session(ctx: &Ctx, stream: SerialStream, cfg: &ScannerConfig) -> End {
    let mut reader = ScannerReader::new(stream, cfg, ctx.id());
    loop {
        let next = tokio::select! {
            _ = ctx.shutdown.cancelled() => return End::Shutdown,
            n = reader.next_scan() => n,
        };
        match next {
            Ok(Some(event)) => {
                ctx.emit(DeviceEvent::Scan {
                    device: ctx.id().into(),
                    event,
                })
                .await
            }
            Ok(None) => return End::Lost("end of stream".into()),
            Err(e) => return End::Lost(e.to_string()),
        }
    }
}

async fn scale_session(
    ctx: &Ctx,
    stream: SerialStream,
    cfg: &ScaleConfig,
    mut cmds: Option<&mut mpsc::Receiver<ScaleReq>>,
) -> End {
    let mut scale = Scale::new(stream, cfg.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_interval_ms.max(10)));
    let mut last: Option<Reading> = None;
    loop {
        let cmd = tokio::select! {
            _ = ctx.shutdown.cancelled() => return End::Shutdown,
            _ = tick.tick() => None,
            Some(c) = async { match cmds.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => Some(c),
        };
        match cmd {
            None => match scale.read().await {
                Ok(r) => {
                    ctx.set_health(Health::Connected).await;
                    if last != Some(r) {
                        last = Some(r);
                        ctx.emit(DeviceEvent::Weight {
                            device: ctx.id().into(),
                            reading: r,
                        })
                        .await;
                    }
                }
                Err(ScaleError::Io(e)) => return End::Lost(e.to_string()),
                Err(ScaleError::NoReply) => {
                    let reason = format!("no reply within {} ms", cfg.reply_timeout_ms);
                    ctx.set_health(Health::Unhealthy { reason }).await;
                }
                Err(e) => tracing::warn!(device = %ctx.id(), error = %e, "scale poll failed"),
            },
            Some(ScaleReq::AwaitStable(t, done)) => {
                let _ = done.send(scale.await_stable(t).await);
            }
            Some(ScaleReq::Zero(done)) => {
                let _ = done.send(scale.zero().await);
            }
            Some(ScaleReq::Tare(done)) => {
                let _ = done.send(scale.tare(false).await);
            }
        }
    }
}

fn status_event(device: &str, r: &Result<PrinterStatus, PrinterError>) -> DeviceEvent {
    let (status, faults) = match r {
        Ok(s) => (Some(*s), s.faults().into_iter().map(String::from).collect()),
        Err(e) => (None, vec![e.to_string()]),
    };
    DeviceEvent::PrinterStatus {
        device: device.into(),
        status,
        faults,
    }
}

async fn printer_session(
    ctx: &Ctx,
    stream: SerialStream,
    cfg: &PrinterConfig,
    mut jobs: Option<&mut mpsc::Receiver<JobReq>>,
    queue: &mut JobQueue,
) -> End {
    let mut printer = Printer::new(stream, cfg.clone());
    let mut tick = tokio::time::interval(ctx.printer_poll);
    let mut last: Option<DeviceEvent> = None;
    loop {
        let job = tokio::select! {
            _ = ctx.shutdown.cancelled() => return End::Shutdown,
            _ = tick.tick() => None,
            Some(j) = async { match jobs.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => Some(j),
        };
        match job {
            None => {
                let r = printer.status().await;
                if let Err(PrinterError::Io(e)) = &r {
                    return End::Lost(e.to_string());
                }
                let ev = status_event(ctx.id(), &r);
                if last.as_ref() != Some(&ev) {
                    last = Some(ev.clone());
                    ctx.emit(ev).await;
                }
            }
            Some((job, done)) => {
                let events = ctx.events.clone();
                let outcome = queue
                    .run(&mut printer, &job, |r| {
                        let ev = status_event(ctx.id(), r);
                        if last.as_ref() != Some(&ev) {
                            last = Some(ev.clone());
                            // Live status while retrying; the channel is large, a full one only loses this update.
                            if events.try_send(ev).is_err() {
                                tracing::warn!(device = %ctx.id(), "event channel full, status update dropped");
                            }
                        }
                    })
                    .await;
                ctx.emit(DeviceEvent::Job {
                    device: ctx.id().into(),
                    job_id: job.id.clone(),
                    outcome: outcome.clone(),
                })
                .await;
                let _ = done.send(outcome);
            }
        }
    }
}
