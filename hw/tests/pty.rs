//! End-to-end over real ptys: simulators on the master side, the device
//! manager opening the slave paths with tokio-serial.

use flashkart_hw::device::{DeviceConfig, DeviceKind, DeviceLocation, PortEnumerator, PortInfo};
use flashkart_hw::printer::{JobOutcome, PrintJob, PrinterConfig, PrinterLanguage, PrinterStatus};
use flashkart_hw::scale::{ScaleConfig, ScaleProtocol};
use flashkart_hw::scanner::ScannerConfig;
use flashkart_hw::{DeviceEvent, DeviceManager, Health, ManagerConfig};
use flashkart_hw_sim::printer::PrinterSim;
use flashkart_hw_sim::scale::ScaleSim;
use flashkart_hw_sim::scanner::ScannerSim;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct NoPorts;
impl PortEnumerator for NoPorts {
    fn ports(&self) -> Vec<PortInfo> {
        Vec::new()
    }
}

fn manager(devices: Vec<DeviceConfig>) -> ManagerConfig {
    ManagerConfig {
        devices,
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        printer_poll_ms: 60_000,
    }
}

fn dev(id: &str, path: &Path, kind: DeviceKind) -> DeviceConfig {
    DeviceConfig {
        id: id.into(),
        location: DeviceLocation::Path(path.into()),
        baud: None,
        kind,
    }
}

async fn next(
    rx: &mut Receiver<DeviceEvent>,
    mut want: impl FnMut(&DeviceEvent) -> bool,
) -> DeviceEvent {
    loop {
        let ev = timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event in time")
            .expect("channel open");
        if want(&ev) {
            return ev;
        }
    }
}

fn is_health(ev: &DeviceEvent, id: &str, h: &Health) -> bool {
    matches!(ev, DeviceEvent::DeviceHealth { device, health } if device == id && health == h)
}

fn scan_text(ev: &DeviceEvent) -> Option<(String, String)> {
    match ev {
        DeviceEvent::Scan { device, event } => Some((device.clone(), event.raw.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn scanners_recover_from_unplug_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let s1 = ScannerSim::spawn(&dir.path().join("scanner-1"), stop.clone()).expect("sim 1");
    let s2 = ScannerSim::spawn(&dir.path().join("scanner-2"), stop.clone()).expect("sim 2");
    let cfg = manager(vec![
        dev(
            "scanner-1",
            s1.path(),
            DeviceKind::Scanner(ScannerConfig::default()),
        ),
        dev(
            "scanner-2",
            s2.path(),
            DeviceKind::Scanner(ScannerConfig::default()),
        ),
    ]);
    let (_handle, mut rx) =
        DeviceManager::run(cfg, Arc::new(NoPorts), stop.clone()).expect("manager");

    s1.scan("]C1010950600013435210ABC123<GS>17251231")
        .await
        .expect("scan");
    s2.scan("]C0FK-000001").await.expect("scan");
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Some(s) = scan_text(&next(&mut rx, |e| matches!(e, DeviceEvent::Scan { .. })).await)
        {
            got.push(s);
        }
    }
    got.sort();
    assert_eq!(
        got[0],
        (
            "scanner-1".into(),
            "]C1010950600013435210ABC123<GS>17251231".into()
        )
    );
    assert_eq!(got[1], ("scanner-2".into(), "]C0FK-000001".into()));

    // Unplug and replug scanner-1; scans sent right after the replug are not lost.
    let started = tokio::time::Instant::now();
    s1.reopen().await.expect("reopen");
    for i in 0..5 {
        s1.scan(&format!("]C0FK-1{i:05}")).await.expect("scan");
    }
    next(&mut rx, |e| matches!(e, DeviceEvent::DeviceHealth { device, health: Health::Disconnected { .. } } if device == "scanner-1")).await;
    next(&mut rx, |e| is_health(e, "scanner-1", &Health::Connected)).await;
    let mut after = Vec::new();
    while after.len() < 5 {
        let ev = next(&mut rx, |e| matches!(e, DeviceEvent::Scan { .. })).await;
        after.push(scan_text(&ev).expect("scan").1);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recovered in {:?}",
        started.elapsed()
    );
    let want: Vec<String> = (0..5).map(|i| format!("]C0FK-1{i:05}")).collect();
    assert_eq!(after, want);
    // Nothing else (no duplicate) is pending.
    s2.scan("]C0FK-END").await.expect("scan");
    let ev = next(&mut rx, |e| matches!(e, DeviceEvent::Scan { .. })).await;
    assert_eq!(scan_text(&ev).map(|s| s.1), Some("]C0FK-END".into()));
    stop.cancel();
}

#[tokio::test]
async fn serial_garbage_gives_no_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let sim = ScannerSim::spawn(&dir.path().join("scanner"), stop.clone()).expect("sim");
    let cfg = manager(vec![dev(
        "s",
        sim.path(),
        DeviceKind::Scanner(ScannerConfig::default()),
    )]);
    let (_h, mut rx) = DeviceManager::run(cfg, Arc::new(NoPorts), stop.clone()).expect("manager");
    next(&mut rx, |e| is_health(e, "s", &Health::Connected)).await;
    // Deterministic pseudo-random noise without ']' so no line can be a scan.
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = (x >> 16) as u8;
            if b == b']' { b'x' } else { b }
        })
        .collect();
    sim.raw(&noise).await.expect("noise");
    sim.raw(b"\r\n]C1019506000134353\r\n]E0123\r\n]Zz1abc\r\n]C0\r\n]C1")
        .await
        .expect("bad frames");
    sim.raw(b"\x00\xff partial").await.expect("partial");
    sim.raw(b"\r\n]C0FK-OK\r\n").await.expect("marker");
    let ev = next(&mut rx, |_| true).await;
    assert_eq!(
        scan_text(&ev).map(|s| s.1),
        Some("]C0FK-OK".into()),
        "the first event is the valid marker scan"
    );
    stop.cancel();
}

#[tokio::test]
async fn printer_prints_each_job_exactly_once_despite_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let sim = PrinterSim::spawn(
        &dir.path().join("printer"),
        PrinterLanguage::Zpl,
        stop.clone(),
    )
    .expect("sim");
    sim.set_status(PrinterStatus {
        paper_out: true,
        ..PrinterStatus::default()
    });
    let pcfg = PrinterConfig {
        language: PrinterLanguage::Zpl,
        status_timeout_ms: 150,
        max_attempts: 50,
        retry_delay_ms: 20,
    };
    let cfg = manager(vec![dev("p", sim.path(), DeviceKind::Printer(pcfg))]);
    let (handle, mut rx) =
        DeviceManager::run(cfg, Arc::new(NoPorts), stop.clone()).expect("manager");

    let label = flashkart_hw::printer::BagLabel {
        store_name: "FlashKart HSR".into(),
        order_id: "FK-000777".into(),
        handoff_code: "FKH:FK-000777:1:9f2a".into(),
        bag: 1,
        bags: 1,
        customer_first_name: "Asha".into(),
        delivery_slot: "18:00-18:30".into(),
    };
    let job = PrintJob {
        id: label.job_id(),
        payload: label.to_zpl().expect("zpl").into_bytes(),
    };
    let h2 = handle.clone();
    let j2 = job.clone();
    let printing = tokio::spawn(async move { h2.print("p", j2).await });
    // The printer is silent while paper is out: the manager reports it.
    let ev = next(&mut rx, |e| matches!(e, DeviceEvent::PrinterStatus { .. })).await;
    assert!(
        matches!(&ev, DeviceEvent::PrinterStatus { status: None, .. }),
        "{ev:?}"
    );
    sim.wait_for(|r| r.status_queries >= 2).await;
    sim.set_status(PrinterStatus::default());
    let outcome = printing.await.expect("join").expect("print");
    assert!(matches!(outcome, JobOutcome::Printed { .. }), "{outcome:?}");
    // Same job again (a retry from the edge): nothing printed.
    assert_eq!(
        handle.print("p", job.clone()).await.expect("print"),
        JobOutcome::Duplicate
    );
    let got = sim.received();
    assert_eq!(got.labels.len(), 1);
    assert!(got.labels[0].contains("^FDFK-000777^FS"));
    stop.cancel();
}

#[tokio::test]
async fn scales_over_pty_all_protocols() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let mut devices = Vec::new();
    let mut sims = Vec::new();
    for (i, p) in [
        ScaleProtocol::Toledo8217,
        ScaleProtocol::MtSics,
        ScaleProtocol::Cas,
    ]
    .into_iter()
    .enumerate()
    {
        let sim =
            ScaleSim::spawn(&dir.path().join(format!("scale-{i}")), p, stop.clone()).expect("sim");
        sim.update(|s| {
            s.milligrams = 1_250_000;
            s.stable = false;
        });
        let sc = ScaleConfig {
            protocol: p,
            reply_timeout_ms: 300,
            poll_interval_ms: 50,
        };
        devices.push(dev(
            &format!("scale-{i}"),
            sim.path(),
            DeviceKind::Scale(sc),
        ));
        sims.push(sim);
    }
    let (handle, mut rx) =
        DeviceManager::run(manager(devices), Arc::new(NoPorts), stop.clone()).expect("manager");
    for (i, sim) in sims.iter().enumerate() {
        let id = format!("scale-{i}");
        // Moving weight is reported as not stable...
        next(&mut rx, |e| matches!(e, DeviceEvent::Weight { device, reading } if *device == id && !reading.stable)).await;
        // ...and await_stable returns once it settles.
        let h = handle.clone();
        let id2 = id.clone();
        let waiting =
            tokio::spawn(async move { h.await_stable(&id2, Duration::from_secs(3)).await });
        sim.update(|s| s.stable = true);
        assert_eq!(
            waiting.await.expect("join").expect("stable"),
            1_250_000,
            "{id}"
        );
    }
    // A silent scale (unplugged USB adapter) turns unhealthy.
    sims[1].update(|s| s.silent = true);
    next(&mut rx, |e| matches!(e, DeviceEvent::DeviceHealth { device, health: Health::Unhealthy { .. } } if device == "scale-1")).await;
    stop.cancel();
}
