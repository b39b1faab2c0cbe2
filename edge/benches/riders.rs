//! Riders benchmark: 500 simulated riders each sending one location a second to one edge, over
//! TLS with their own certificates as phones do, while offers are created at 10/s (a busy store
//! makes a few hundred an hour: this is a stress rate). The edge (the rumqttd broker, the riders
//! service, the store database) runs in a child process so its CPU share and RSS are its own;
//! the simulators run here.
//!
//! Prints the edge's CPU share of one core, its RSS at 1, 10 and 30 minutes (those the run
//! reaches) and at the end with every rider still connected (anonymous and file-backed parts,
//! and the peak, which includes the connect storm) against its RSS before any rider connected,
//! and the offer -> rider receipt latency p50/p99: from the assignment being asked for (which
//! includes its durable commit, printed on its own: on a disk busy with writeback an fsync can
//! take hundreds of milliseconds), from the commit, and from the edge publishing it. Every 10 s
//! it prints the edge's RSS so far.
//!
//! How long: `--duration 30m` (after `--`), or DURATION=30m (`s`, `m` or `h`; plain seconds
//! too, as SECONDS=n); 20 s by default. The 30-minute run of the acceptance:
//! `cargo bench -p flashkart-edge --bench riders -- --duration 30m`.
//!
//! TLS=0 connects the riders to the loopback listener instead.
//!
//! The riders decline every offer (a QoS 1 reply each), so the edge records a reply and
//! withdraws the offer 10 times a second. Offers expire after 60 s (OFFER_TTL_S), as the cloud's
//! dispatcher sets them; that only matters for an offer whose reply is lost.
//!
//! `cargo bench -p flashkart-edge --bench riders` (RIDERS=n, OFFERS_PER_S=n and OFFER_TTL_S=n
//! to change the load; ALLOCATOR=default to run the edge on glibc's allocator defaults instead
//! of [`flashkart_edge::allocator`]'s settings; EDGE_LD_PRELOAD=lib to preload a heap profiler
//! into the edge's process only).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashkart_edge::riders::{ClientKey, LocalDesk, Riders, RidersConfig, StoreCa, clock};
use flashkart_edge_sim::rider::{self as sim, AcceptPolicy, SimConfig, SimEvent, SimTls};
use flashkart_sync::{StoreConfig, StoreDb};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const STORE: &str = "S1";
const LAT: f64 = 48.137;
const LON: f64 = 11.575;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `90`, `90s`, `30m`, `1h`: seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, 's') => (&text[..i], 1),
        (i, 'm') => (&text[..i], 60),
        (i, 'h') => (&text[..i], 3600),
        _ => (text, 1),
    };
    number.parse::<u64>().ok().map(|n| n * unit)
}

/// The run's length: `--duration X`, else DURATION, else SECONDS, else 20 s.
fn duration_s(args: &[String]) -> u64 {
    let flag = args
        .iter()
        .position(|a| a == "--duration")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--duration=").map(str::to_owned))
        });
    let text = flag
        .or_else(|| std::env::var("DURATION").ok())
        .or_else(|| std::env::var("SECONDS").ok());
    match text {
        Some(text) => parse_duration(&text)
            .unwrap_or_else(|| panic!("a duration like 90s, 30m or 1h, not {text:?}")),
        None => 20,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--edge-child") {
        edge_child(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
            args[i + 4].parse().unwrap(),
        );
    } else {
        parent(duration_s(&args));
    }
}

/// The edge: seeds the roster, runs the riders service on a plain loopback listener and a TLS
/// listener (the CA in `dir/ca` is the parent's), and creates assignments when told on stdin
/// (`offer <assignment> <rider>`).
fn edge_child(dir: &str, port: u16, riders: usize, tls_port: u16) {
    // As the daemon's `main` does, unless ALLOCATOR=default asks for glibc's defaults.
    let allocator_tuned =
        std::env::var("ALLOCATOR").as_deref() != Ok("default") && flashkart_edge::allocator::tune();
    let offer_ttl_s = env("OFFER_TTL_S", 60) as i64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("edge-rt")
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let db = StoreDb::open(
            StoreConfig::new(format!("{dir}/store.db")),
            flashkart_sync::schema::store::MIGRATIONS,
        )
        .await
        .unwrap();
        db.write(move |conn| {
            conn.execute(
                "INSERT INTO stores (id, lat, lon) VALUES (?1, ?2, ?3)",
                (STORE, LAT, LON),
            )?;
            for i in 0..riders {
                conn.execute(
                    "INSERT INTO riders (id, home_store_id) VALUES (?1, ?2)",
                    (format!("r{i}"), STORE),
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
        let mut config = RidersConfig::new(STORE, format!("{dir}/ca"));
        config.tls_listen = ([127, 0, 0, 1], tls_port).into();
        config.plain_listen = Some(([127, 0, 0, 1], port).into());
        let service = Riders::start(config, db.clone(), LocalDesk::new(db.clone(), STORE))
            .await
            .unwrap();
        println!("ready {allocator_tuned}");
        // Commands typed by the driver, one at a time: a few slots are plenty, and a full
        // queue only makes the stdin thread wait.
        let (lines_tx, mut lines) = mpsc::channel::<String>(16);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if lines_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["offer", assignment, rider] => {
                    let id = (*assignment).to_owned();
                    let (assignment, rider) = ((*assignment).to_owned(), (*rider).to_owned());
                    db.write(move |conn| {
                        conn.execute(
                            "INSERT INTO assignments (id, store_id, order_id, rider_id, offered_at, expires_at)
                             VALUES (?1, ?2, ?1, ?3, ?4, ?5)",
                            (
                                &assignment,
                                STORE,
                                &rider,
                                clock::now(),
                                clock::seconds_from_now(offer_ttl_s),
                            ),
                        )?;
                        Ok::<_, flashkart_sync::Error>(())
                    })
                    .await
                    .unwrap();
                    // The parent tells the storage's share of the latency from this line.
                    println!("committed {id} {}", clock::now_ms());
                    service.assignments_changed();
                }
                _ => break,
            }
        }
        service.shutdown().await;
        db.close().await.unwrap();
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

/// Offer -> rider receipt latencies, and the offers not received yet.
struct Latencies {
    sent: HashMap<String, Instant>,
    /// When each offer was asked for, and when it reached its rider (unix ms, the clock the
    /// edge child's commit lines use).
    asked_ms: HashMap<String, i64>,
    received_ms: HashMap<String, i64>,
    from_write: hdrhistogram::Histogram<u64>,
    from_publish: hdrhistogram::Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            sent: HashMap::new(),
            asked_ms: HashMap::new(),
            received_ms: HashMap::new(),
            from_write: hdrhistogram::Histogram::new(3).unwrap(),
            from_publish: hdrhistogram::Histogram::new(3).unwrap(),
        }
    }
}

impl Latencies {
    fn record(&mut self, event: SimEvent) {
        if let SimEvent::Offer {
            offer,
            received_at_ms,
            ..
        } = event
            && let Some(at) = self.sent.remove(&offer.assignment_id)
        {
            self.received_ms
                .insert(offer.assignment_id.clone(), received_at_ms);
            self.from_write
                .record(at.elapsed().as_micros() as u64)
                .unwrap();
            self.from_publish
                .record(((received_at_ms - offer.sent_at_ms).max(0) * 1000) as u64)
                .unwrap();
        }
    }
}

fn parent(seconds: u64) {
    let riders = env("RIDERS", 500);
    let offers_per_s = env("OFFERS_PER_S", 10).max(1);
    let tls = env("TLS", 1) == 1;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls_port = free_port();
    // Rider certificates from the store CA the edge will load.
    let certs: Vec<Option<SimTls>> = if tls {
        let ca = StoreCa::load_or_create(&dir.path().join("ca"), STORE, 30).unwrap();
        (0..riders)
            .map(|i| {
                let bundle = ca.issue(&format!("r{i}"), &ClientKey::Generate).unwrap();
                Some(SimTls {
                    ca_pem: bundle.ca_pem,
                    cert_pem: bundle.cert_pem,
                    key_pem: bundle.key_pem.unwrap(),
                })
            })
            .collect()
    } else {
        vec![None; riders]
    };
    let mut child = Command::new(std::env::current_exe().unwrap());
    // A heap profiler for the edge alone (heaptrack's preload library, say), not for the
    // simulated riders in this process.
    if let Ok(preload) = std::env::var("EDGE_LD_PRELOAD") {
        child.env("LD_PRELOAD", preload);
    }
    let mut child = child
        .args([
            "--edge-child",
            dir.path().to_str().unwrap(),
            &port.to_string(),
            &riders.to_string(),
            &tls_port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut ready = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut ready).unwrap();
    child.stdout = Some(stdout.into_inner());
    let allocator_tuned = ready.trim().strip_prefix("ready ").unwrap() == "true";
    let mut stdin = child.stdin.take().unwrap();
    // `committed <assignment> <unix ms>` lines from the edge, read as they come (the pipe must
    // never fill up and block the edge).
    let committed = Arc::new(std::sync::Mutex::new(HashMap::<String, i64>::new()));
    let reader = {
        let committed = committed.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((id, ms)) = line
                    .strip_prefix("committed ")
                    .and_then(|rest| rest.split_once(' '))
                    && let Ok(ms) = ms.parse()
                {
                    committed.lock().unwrap().insert(id.to_owned(), ms);
                }
            }
        })
    };
    // The baseline: the same edge with no rider connected.
    let idle = status_kib(pid, "VmRSS:");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("sims")
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        let stop = CancellationToken::new();
        // Drained by the measuring loop; 4096 covers the connection burst of 500 riders.
        let (events_tx, mut events) = mpsc::channel(4096);
        let no_labels: sim::Lookup = Arc::new(|_: &str| None);
        for (i, tls) in certs.into_iter().enumerate() {
            let mut config = SimConfig::new(
                format!("r{i}"),
                if tls.is_some() { tls_port } else { port },
                (
                    LAT + 0.0001 * (i % 50) as f64,
                    LON + 0.0001 * (i / 50) as f64,
                ),
                no_labels.clone(),
            );
            config.path.push((LAT + 0.01, LON + 0.01));
            config.speed_mps = 5.0;
            config.accept = AcceptPolicy::Never;
            config.events = Some(events_tx.clone());
            config.tls = tls;
            tokio::spawn(sim::run(config, stop.clone()));
        }
        let mut connected = 0;
        while connected < riders {
            if let Some(SimEvent::Ready { .. }) = events.recv().await {
                connected += 1;
            }
        }
        // Let the connection burst settle, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu_start = cpu_ticks(pid);
        let started = Instant::now();
        let mut latencies = Latencies::default();
        let mut offers = tokio::time::interval(Duration::from_secs_f64(1.0 / offers_per_s as f64));
        let mut next = 0usize;
        let end = started + Duration::from_secs(seconds);
        // RSS at 1, 10 and 30 minutes, those the run reaches.
        let mut checkpoints: Vec<u64> = [60, 600, 1800]
            .into_iter()
            .filter(|&at| at <= seconds)
            .collect();
        checkpoints.reverse();
        let mut rss_at = Vec::new();
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(10),
            Duration::from_secs(10),
        );
        while Instant::now() < end {
            // The next checkpoint, or past the end when none is left.
            let at = checkpoints.last().copied().unwrap_or(seconds + 60);
            let checkpoint = tokio::time::sleep_until(
                tokio::time::Instant::from_std(started) + Duration::from_secs(at),
            );
            tokio::select! {
                () = checkpoint => {
                    let at = checkpoints.pop().unwrap_or_default();
                    rss_at.push((at, status_kib(pid, "VmRSS:")));
                }
                _ = progress.tick() => {
                    eprintln!(
                        "{:>4} s: {next} offers, edge RSS {:.1} MiB",
                        started.elapsed().as_secs(),
                        status_kib(pid, "VmRSS:") as f64 / 1024.0
                    );
                }
                _ = offers.tick() => {
                    let id = format!("bench{next}");
                    writeln!(stdin, "offer {id} r{}", (next * 7919) % riders).unwrap();
                    stdin.flush().unwrap();
                    latencies.asked_ms.insert(id.clone(), clock::now_ms());
                    latencies.sent.insert(id, Instant::now());
                    next += 1;
                }
                Some(event) = events.recv() => {
                    latencies.record(event);
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(pid) - cpu_start) as f64 / clock_ticks() as f64;
        // Offers made in the last moments still count if they arrive within a second.
        let grace = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(grace);
        while !latencies.sent.is_empty() {
            tokio::select! {
                () = &mut grace => break,
                Some(event) = events.recv() => {
                    latencies.record(event);
                }
            }
        }
        // Memory while every rider is still connected.
        let memory = ["VmRSS:", "RssAnon:", "RssFile:", "VmHWM:"].map(|f| status_kib(pid, f));
        stop.cancel();
        (cpu / elapsed, latencies, next, memory, rss_at)
    });
    let (share, latencies, offered, [rss, anon, file, hwm], rss_at) = report;
    let Latencies {
        sent,
        asked_ms,
        received_ms,
        from_write,
        from_publish,
    } = latencies;
    let missing = sent.len();
    writeln!(stdin, "quit").ok();
    drop(stdin);
    let _ = child.wait();
    reader.join().unwrap();
    // The write's own share (the durable commit on this disk) and the edge's after it.
    let mut commit = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut from_commit = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for (id, committed_ms) in committed.lock().unwrap().iter() {
        if let Some(asked) = asked_ms.get(id) {
            commit.record((committed_ms - asked).max(0) as u64).unwrap();
        }
        if let Some(received) = received_ms.get(id) {
            from_commit
                .record((received - committed_ms).max(0) as u64)
                .unwrap();
        }
    }
    println!(
        "riders: {riders} simulated riders over {}, 1 location/s each, {seconds} s, {offered} offers",
        if tls { "TLS" } else { "the loopback listener" }
    );
    println!(
        "edge allocator: {}",
        if allocator_tuned {
            "tuned (flashkart_edge::allocator: fixed mmap threshold, 2 arenas)"
        } else {
            "glibc defaults"
        }
    );
    println!("edge CPU: {:.1}% of one core", share * 100.0);
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (at, kib) in &rss_at {
        println!("edge RSS at {} min: {:.1} MiB", at / 60, mib(*kib));
    }
    println!(
        "edge RSS: {:.1} MiB = {:.1} MB (anonymous {:.1} MiB, file-backed {:.1} MiB; peak {:.1} MiB)",
        mib(rss),
        rss as f64 * 1024.0 / 1e6,
        mib(anon),
        mib(file),
        mib(hwm)
    );
    println!(
        "edge RSS with no rider connected: {:.1} MiB; {:.1} KiB more per connected rider",
        mib(idle),
        rss.saturating_sub(idle) as f64 / riders.max(1) as f64
    );
    println!(
        "offer -> rider, from the assignment write: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        from_write.value_at_quantile(0.5) as f64 / 1000.0,
        from_write.value_at_quantile(0.99) as f64 / 1000.0,
        from_write.max() as f64 / 1000.0
    );
    println!(
        "  of which the assignment's durable commit: p50 {} ms, p99 {} ms, max {} ms (ms clock)",
        commit.value_at_quantile(0.5),
        commit.value_at_quantile(0.99),
        commit.max()
    );
    println!(
        "offer -> rider, from the assignment's commit: p50 {} ms, p99 {} ms, max {} ms (ms clock)",
        from_commit.value_at_quantile(0.5),
        from_commit.value_at_quantile(0.99),
        from_commit.max()
    );
    println!(
        "offer -> rider, from the edge's publish: p50 {:.1} ms, p99 {:.1} ms (ms clock)",
        from_publish.value_at_quantile(0.5) as f64 / 1000.0,
        from_publish.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!("offers not received within the run: {missing}");
}
