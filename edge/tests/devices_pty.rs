//! Store hardware over real ptys: a simulated scanner, scale and printer (flashkart-hw's
//! simulators) attached to a running edge. A whole order is picked by scans from the scanner
//! bound to the picker, packed with the weight from the scale, and its bag label printed once
//! when it is marked READY (not at pack); READY with the printer out of paper still makes the
//! order READY and says why, and a lead reprints the label once the paper is back;
//! the scanner is unplugged and replugged mid-pick and recovers within 2 s with no scan lost or
//! duplicated; serial garbage applies nothing; printer faults reach the stream, the devices
//! endpoint and /metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use flashkart_edge::config::DevicesConfig;
use flashkart_hw::printer::{PrinterLanguage, PrinterStatus};
use flashkart_hw::scale::ScaleProtocol;
use flashkart_hw_sim::printer::PrinterSim;
use flashkart_hw_sim::scale::ScaleSim;
use flashkart_hw_sim::scanner::ScannerSim;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn devices_config(dev: &Path) -> DevicesConfig {
    let text = format!(
        r#"
label_printer = "printer-1"
pack_scale = "scale-1"
scale_timeout_ms = 3000
backoff_initial_ms = 20
backoff_max_ms = 200
printer_poll_ms = 200

[[device]]
id = "scanner-1"
location = {{ path = "{dev}/scanner-1" }}
kind = {{ type = "scanner" }}

[[device]]
id = "scale-1"
location = {{ path = "{dev}/scale-1" }}
kind = {{ type = "scale", protocol = "toledo8217", poll_interval_ms = 100 }}

[[device]]
id = "printer-1"
location = {{ path = "{dev}/printer-1" }}
kind = {{ type = "printer", language = "zpl", status_timeout_ms = 300, max_attempts = 2, retry_delay_ms = 100 }}
"#,
        dev = dev.display()
    );
    toml::from_str(&text).expect("devices config")
}

/// Waits (polling the devices endpoint) until every device is connected.
async fn all_connected(api: &Api, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api.get(token, "/api/v1/devices").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let devices = body["devices"].as_array().unwrap();
        if devices.iter().all(|d| d["health"]["state"] == "connected") {
            return body;
        }
        assert!(Instant::now() < deadline, "devices never connected: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next `device` event of `device` with this `change`.
async fn next_device(events: &mut Events, device: &str, change: &str) -> Value {
    events
        .until(&format!("{device} {change} event"), |e| {
            e["type"] == "device" && e["device"] == device && e["change"] == change
        })
        .await
}

fn ean(product: &str) -> String {
    format!("]E0{}", gtin(product))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_scale_and_printer_drive_a_whole_pick_and_pack() {
    let sims = CancellationToken::new();
    let dev = tempfile::tempdir().unwrap();
    let scanner = ScannerSim::spawn(&dev.path().join("scanner-1"), sims.clone()).unwrap();
    let scale = ScaleSim::spawn(
        &dev.path().join("scale-1"),
        ScaleProtocol::Toledo8217,
        sims.clone(),
    )
    .unwrap();
    let printer = PrinterSim::spawn(
        &dev.path().join("printer-1"),
        PrinterLanguage::Zpl,
        sims.clone(),
    )
    .unwrap();
    let devices = devices_config(dev.path());
    let daemon = Daemon::start_with(tempfile::tempdir().unwrap(), |c| c.devices = devices).await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let report = all_connected(&api, &t.picker).await;
    assert_eq!(report["configured"], true);
    assert_eq!(report["label_printer"], "printer-1");
    let mut events = api.events(&t.picker).await;

    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 3}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(BREAD), "qty": 1}),
    )
    .await;
    api.ok(
        &t.manager,
        "/api/v1/intake/orders",
        json!({
            "id": "o-1", "customer_first_name": "Ada", "address": "1 Main St",
            "lines": [{"product_id": MILK, "qty": 2}, {"product_id": BREAD, "qty": 1}]
        }),
    )
    .await;

    // An unbound scanner changes nothing.
    scanner.scan(&ean(MILK)).await.unwrap();
    let refused = next_device(&mut events, "scanner-1", "scan").await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("not bound"),
        "{refused}"
    );

    // Bind it to the picker and the order; only scanners bind, one picker per scanner.
    let (status, body) = api
        .post(
            &t.picker,
            "/api/v1/devices/printer-1/bind",
            json!({"order_id": "o-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let binding = api
        .ok(
            &t.picker,
            "/api/v1/devices/scanner-1/bind",
            json!({"order_id": "o-1"}),
        )
        .await;
    assert_eq!(binding["staff_id"], "pia");
    api.ok(
        &t.manager,
        "/api/v1/staff",
        json!({"id": "pat", "name": "Pat", "role": "picker", "pin": "333333"}),
    )
    .await;
    let other = api.sign_in("pat", "333333").await;
    let (status, body) = api
        .post(
            &other,
            "/api/v1/devices/scanner-1/bind",
            json!({"order_id": "o-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A scan goes through the same pick path as the HTTP scan endpoint.
    scanner.scan(&ean(MILK)).await.unwrap();
    let picked = next_device(&mut events, "scanner-1", "scan").await;
    assert_eq!(picked["ok"], true, "{picked}");
    assert_eq!(picked["detail"]["product_id"], MILK);
    assert_eq!(picked["detail"]["staff_id"], "pia");
    assert_eq!(picked["detail"]["status"], "PICKING");

    // A wrong item is refused with both products named.
    scanner.scan(&ean(YOGURT)).await.unwrap();
    let wrong = next_device(&mut events, "scanner-1", "scan").await;
    assert_eq!(wrong["ok"], false);
    assert!(
        wrong["message"].as_str().unwrap().contains("wrong item"),
        "{wrong}"
    );

    // Serial garbage: nothing applied, no event; the next good scan is the next event.
    scanner
        .raw(b"\xff\x00\x1b[garbage\r\n]C1badAI\r\n]Q\r\n\x07\x08noise\n")
        .await
        .unwrap();

    // Unplug and replug mid-pick; the next scans are sent before the edge has reconnected.
    let replugged = Instant::now();
    scanner.reopen().await.unwrap();
    scanner.scan(&ean(MILK)).await.unwrap();
    scanner.scan(&ean(BREAD)).await.unwrap();
    let lost = next_device(&mut events, "scanner-1", "health").await;
    assert_eq!(lost["ok"], false, "{lost}");
    let back = next_device(&mut events, "scanner-1", "health").await;
    assert_eq!(back["ok"], true, "{back}");
    let recovered = replugged.elapsed();
    assert!(
        recovered < Duration::from_secs(2),
        "recovered in {recovered:?}"
    );
    let milk = next_device(&mut events, "scanner-1", "scan").await;
    assert_eq!(
        (milk["ok"].clone(), milk["detail"]["product_id"].clone()),
        (json!(true), json!(MILK)),
        "{milk}"
    );
    let bread = next_device(&mut events, "scanner-1", "scan").await;
    assert_eq!(
        (bread["ok"].clone(), bread["detail"]["product_id"].clone()),
        (json!(true), json!(BREAD)),
        "{bread}"
    );
    assert_eq!(bread["detail"]["order_open_qty"], 0);

    // Every scan exactly once: two milk and one bread picked, nothing more.
    let (_, detail) = api.get(&t.picker, "/api/v1/orders/o-1").await;
    let picked: Vec<i64> = detail["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["picked_qty"].as_i64().unwrap())
        .collect();
    assert_eq!(picked, vec![2, 1], "{detail}");
    assert_eq!(api.level(&t.picker, MILK).await, (1, 0, 1));
    assert_eq!(api.level(&t.picker, BREAD).await, (0, 0, 0));

    // Pack: the bag weight comes from the scale; nothing prints yet.
    scale.update(|s| {
        s.milligrams = (2 * 1030 + 800) * 1000 + 4_000;
        s.stable = true;
    });
    // The pack screen follows the platter live, and finds the last reading when it opens.
    let weighed = events
        .until("the scale's reading on the stream", |e| {
            e["type"] == "device"
                && e["device"] == "scale-1"
                && e["change"] == "weight"
                && e["detail"]["grams"] == 2864
        })
        .await;
    assert_eq!(weighed["detail"]["stable"], true, "{weighed}");
    let (_, report) = api.get(&t.picker, "/api/v1/devices").await;
    let scale_report = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "scale-1")
        .unwrap()
        .clone();
    assert_eq!(scale_report["weight"]["grams"], 2864, "{report}");
    let packed = api
        .ok(&t.picker, "/api/v1/orders/o-1/pack", json!({}))
        .await;
    assert_eq!(packed["bag_weight_g"], 2864, "{packed}");
    assert_eq!(packed["status"], "PACKED");
    assert!(packed.get("labels").is_none(), "{packed}");
    let label_id = packed["label_id"].as_str().unwrap().to_owned();
    assert!(
        printer.received().labels.is_empty(),
        "nothing prints at PACK"
    );

    // Packing again is refused.
    let (status, body) = api
        .post(&t.picker, "/api/v1/orders/o-1/pack", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // READY prints the label, once, and shows the printer's state.
    let ready = api
        .ok(&t.picker, "/api/v1/orders/o-1/ready", json!({}))
        .await;
    assert_eq!(ready["status"], "READY", "{ready}");
    assert_eq!(ready["from"], "PACKED");
    assert_eq!(ready["label_id"], label_id.as_str());
    assert_eq!(ready["labels"].as_array().unwrap().len(), 1, "{ready}");
    assert_eq!(ready["labels"][0]["outcome"], "printed", "{ready}");
    assert_eq!(ready["labels"][0]["faults_after"], json!([]), "{ready}");
    assert_eq!(
        ready["labels"][0]["job_id"],
        format!("label:{label_id}:1/1")
    );
    assert_eq!(ready["printer"]["id"], "printer-1");
    assert_eq!(ready["printer"]["ready"], true, "{ready}");
    assert_eq!(ready["printer"]["message"], "printer printer-1: ready");
    let received = printer.wait_for(|r| !r.labels.is_empty()).await;
    assert_eq!(received.labels.len(), 1);
    let zpl = &received.labels[0];
    assert!(
        zpl.starts_with("^XA") && zpl.trim_end().ends_with("^XZ"),
        "{zpl}"
    );
    assert!(
        zpl.contains("^BCN,120,Y,N,N^FDo-1^FS"),
        "order id as Code 128: {zpl}"
    );
    assert!(
        zpl.contains(&format!("^FDQA,{label_id}^FS")),
        "handoff QR: {zpl}"
    );
    let job = next_device(&mut events, "printer-1", "print").await;
    assert_eq!(job["ok"], true, "{job}");
    assert_eq!(job["detail"]["order_id"], "o-1", "{job}");
    assert_eq!(job["detail"]["job_id"], format!("label:{label_id}:1/1"));

    // READY again is refused and prints nothing.
    let (status, body) = api
        .post(&t.picker, "/api/v1/orders/o-1/ready", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(printer.received().labels.len(), 1);

    // A second order, packed by hand (no scale needed with a weight), waits for READY.
    api.ok(
        &t.manager,
        "/api/v1/intake/orders",
        json!({"id": "o-2", "customer_first_name": "Bo", "lines": [{"product_id": MILK, "qty": 1}]}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/orders/o-2/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/orders/o-2/pack",
        json!({"bag_weight_g": 1030}),
    )
    .await;

    // Paper out: the printer falls silent; the stream, /devices and /metrics say so.
    printer.set_status(PrinterStatus {
        paper_out: true,
        ..PrinterStatus::default()
    });
    let fault = events
        .until("printer fault", |e| {
            e["type"] == "device" && e["change"] == "printer" && e["ok"] == false
        })
        .await;
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .starts_with("printer printer-1: ")
    );
    let (_, report) = api.get(&t.picker, "/api/v1/devices").await;
    let printer_status = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "printer-1")
        .unwrap();
    assert!(
        !printer_status["faults"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(report["connected"], false);

    let metrics = reqwest::get(format!("{}/metrics", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "flashkart_edge_device_up{device=\"scanner-1\",kind=\"scanner\"} 1",
        "flashkart_edge_device_up{device=\"scale-1\",kind=\"scale\"} 1",
        "flashkart_edge_device_scans_total{device=\"scanner-1\",result=\"applied\"} 3",
        "flashkart_edge_device_scans_total{device=\"scanner-1\",result=\"refused\"} 1",
        "flashkart_edge_device_scans_total{device=\"scanner-1\",result=\"unbound\"} 1",
        "flashkart_edge_print_jobs_total{device=\"printer-1\",result=\"printed\"} 1",
        "flashkart_edge_printer_faults{device=\"printer-1\",kind=\"printer\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // The same scanner at goods in: bound for receiving, a GS1-128 case label (AI 02 milk,
    // expiry with day 00, lot, FNC1, AI 37 count) is received as the picker.
    let binding = api
        .ok(
            &t.picker,
            "/api/v1/devices/scanner-1/bind",
            json!({"receiving": true}),
        )
        .await;
    assert_eq!(binding["receiving"], true, "{binding}");
    assert_eq!(binding["order_id"], Value::Null, "{binding}");
    assert_eq!(api.level(&t.picker, MILK).await, (0, 0, 0));
    scanner
        .scan(&format!("]C1020{}1730110010R1\u{1d}376", gtin(MILK)))
        .await
        .unwrap();
    let received = next_device(&mut events, "scanner-1", "scan").await;
    assert_eq!(received["ok"], true, "{received}");
    assert_eq!(received["detail"]["qty"], 6, "{received}");
    assert_eq!(received["detail"]["case_label"]["lot"], "R1", "{received}");
    assert_eq!(
        received["detail"]["case_label"]["expiry"], "2030-11-30",
        "{received}"
    );
    assert_eq!(received["detail"]["staff_id"], "pia");
    assert_eq!(api.level(&t.picker, MILK).await, (6, 0, 6));

    // READY while the printer is out of paper: the order is READY regardless; no job is sent
    // to a printer known to be faulted, and the reply and the stream say why.
    let ready = api
        .ok(&t.picker, "/api/v1/orders/o-2/ready", json!({}))
        .await;
    assert_eq!(ready["status"], "READY", "{ready}");
    assert_eq!(ready["labels"][0]["outcome"], "not_sent", "{ready}");
    assert_eq!(ready["printer"]["ready"], false, "{ready}");
    let fault_text = fault["message"].as_str().unwrap();
    assert_eq!(ready["printer"]["message"], fault_text, "{ready}");
    assert!(
        fault_text.contains("media out"),
        "the silent Zebra's fault: {fault_text}"
    );
    assert!(
        ready["label_message"]
            .as_str()
            .unwrap()
            .contains("a lead reprints"),
        "{ready}"
    );
    let not_sent = next_device(&mut events, "printer-1", "print").await;
    assert_eq!(not_sent["ok"], false, "{not_sent}");
    assert_eq!(not_sent["detail"]["order_id"], "o-2", "{not_sent}");
    assert_eq!(not_sent["detail"]["outcome"], "not_sent", "{not_sent}");
    let (_, detail) = api.get(&t.picker, "/api/v1/orders/o-2").await;
    assert_eq!(detail["status"], "READY");
    assert_eq!(printer.received().labels.len(), 1);

    // Once the paper is back, a lead reprints it (a picker may not).
    let (status, body) = api
        .post(&t.picker, "/api/v1/orders/o-2/labels/reprint", json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    printer.set_status(PrinterStatus::default());
    events
        .until("printer ready", |e| {
            e["type"] == "device" && e["change"] == "printer" && e["ok"] == true
        })
        .await;
    let reprinted = api
        .ok(&t.lead, "/api/v1/orders/o-2/labels/reprint", json!({}))
        .await;
    assert_eq!(reprinted["status"], "READY");
    assert_eq!(reprinted["labels"][0]["outcome"], "printed", "{reprinted}");
    assert!(
        reprinted["labels"][0]["job_id"]
            .as_str()
            .unwrap()
            .ends_with(":reprint:1"),
        "{reprinted}"
    );
    assert_eq!(reprinted["printer"]["ready"], true, "{reprinted}");
    let received = printer.wait_for(|r| r.labels.len() >= 2).await;
    assert_eq!(received.labels.len(), 2);
    assert!(
        received.labels[1].contains("^BCN,120,Y,N,N^FDo-2^FS"),
        "{}",
        received.labels[1]
    );
    // An unknown order has no label to reprint.
    let (status, body) = api
        .post(&t.lead, "/api/v1/orders/o-9/labels/reprint", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A restart does not print any label again.
    let dir = daemon.stop().await;
    let devices = devices_config(dev.path());
    let daemon = Daemon::start_with(dir, |c| c.devices = devices).await;
    let manager = daemon.api.sign_in("manager", "123456").await;
    let (_, report) = daemon.api.get(&manager, "/api/v1/devices").await;
    assert_eq!(report["devices"].as_array().unwrap().len(), 3);
    all_connected(&daemon.api, &manager).await;
    assert_eq!(printer.received().labels.len(), 2);
    daemon.stop().await;
    sims.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_devices_by_default() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let (status, report) = api.get(&t.picker, "/api/v1/devices").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["configured"], false);
    assert_eq!(report["devices"], json!([]));
    let (status, body) = api
        .post(
            &t.picker,
            "/api/v1/devices/scanner-1/bind",
            json!({"order_id": "o-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    daemon.stop().await;
}
