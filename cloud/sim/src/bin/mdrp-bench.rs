//! Replays Meal Delivery Routing Problem instance folders through the dispatcher and through
//! the nearest-available-courier baseline, printing one JSON line per instance:
//! `{"instance", "dispatcher": {...}, "greedy": {...}}`, then a summary line with the means
//! over all instances. Every solution is checked by our own checker (`checker`) from its
//! files, and the run fails if the checker refuses one or computes other figures than the
//! replay printed. `--solutions DIR` also writes the files, for the instances' public checker.
//! Progress goes to stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use flashkart_cloud::dispatch::DispatchConfig;
use flashkart_cloud_sim::checker;
use flashkart_cloud_sim::mdrp::Instance;
use flashkart_cloud_sim::replay::{
    DispatcherPolicy, GreedyPolicy, Metrics, Policy, Replayed, replay,
};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(about = "Replay MDRP instances through the dispatcher and a greedy baseline")]
struct Args {
    /// Minutes of simulated time between dispatcher ticks (MDRP times are whole minutes).
    #[arg(long, default_value_t = 1.0)]
    tick_minutes: f64,
    /// Cost weight per minute of travel (default: the dispatcher's).
    #[arg(long)]
    travel_weight: Option<f64>,
    /// Cost weight per order beyond a courier's guaranteed pay (default: the dispatcher's).
    #[arg(long)]
    extra_pay_weight: Option<f64>,
    /// Writes each solution's three files into DIR/<instance>/<policy>/.
    #[arg(long, value_name = "DIR")]
    solutions: Option<PathBuf>,
    /// A folder of instance folders: replays every one of them.
    #[arg(long, value_name = "DIR")]
    all: Option<PathBuf>,
    /// Instance folders (orders.txt, couriers.txt, restaurants.txt, instance_parameters.txt).
    #[arg(required_unless_present = "all")]
    dirs: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Line<'a> {
    instance: &'a str,
    orders: usize,
    dispatcher: &'a Metrics,
    greedy: &'a Metrics,
}

#[derive(Serialize)]
struct Summary {
    instances: usize,
    dispatcher: Means,
    greedy: Means,
}

/// Means over instances of each figure.
#[derive(Serialize, Default)]
struct Means {
    orders_delivered: f64,
    orders_undelivered: f64,
    click_to_door_mean: f64,
    click_to_door_p90: f64,
    share_over_target: f64,
    ready_to_pickup_mean: f64,
    orders_per_courier_hour: f64,
    cost_per_order: f64,
    orders_per_trip: f64,
}

impl Means {
    fn of(all: &[&Metrics]) -> Self {
        let n = all.len().max(1) as f64;
        let mean = |f: fn(&Metrics) -> f64| {
            (all.iter().map(|m| f(m)).sum::<f64>() / n * 1000.0).round() / 1000.0
        };
        Self {
            orders_delivered: mean(|m| m.orders_delivered as f64),
            orders_undelivered: mean(|m| m.orders_undelivered as f64),
            click_to_door_mean: mean(|m| m.click_to_door_mean),
            click_to_door_p90: mean(|m| m.click_to_door_p90),
            share_over_target: mean(|m| m.share_over_target),
            ready_to_pickup_mean: mean(|m| m.ready_to_pickup_mean),
            orders_per_courier_hour: mean(|m| m.orders_per_courier_hour),
            cost_per_order: mean(|m| m.cost_per_order),
            orders_per_trip: mean(|m| m.orders_per_trip),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.tick_minutes.is_nan() || args.tick_minutes <= 0.0 {
        eprintln!("--tick-minutes must be positive");
        return ExitCode::FAILURE;
    }
    let mut config = DispatchConfig::default();
    if let Some(weight) = args.travel_weight {
        config.weights.travel = weight;
    }
    if let Some(weight) = args.extra_pay_weight {
        config.weights.extra_pay = weight;
    }
    let mut dirs = args.dirs.clone();
    if let Some(all) = &args.all {
        match instance_dirs(all) {
            Ok(found) => dirs.extend(found),
            Err(error) => {
                eprintln!("{}: {error}", all.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if dirs.is_empty() {
        eprintln!("no instance folders to replay");
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    let mut results = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let started = Instant::now();
        match run(dir, &args, &config) {
            Ok((instance, dispatcher, greedy)) => {
                eprintln!(
                    "[{}/{}] {}: {} orders; click-to-door {:.2} min (dispatcher) vs {:.2} \
                     (greedy); solutions checked; {:.1} s",
                    n + 1,
                    dirs.len(),
                    instance.name,
                    instance.orders.len(),
                    dispatcher.click_to_door_mean,
                    greedy.click_to_door_mean,
                    started.elapsed().as_secs_f64()
                );
                let line = Line {
                    instance: &instance.name,
                    orders: instance.orders.len(),
                    dispatcher: &dispatcher,
                    greedy: &greedy,
                };
                match serde_json::to_string(&line) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("{}: {error}", instance.name);
                        failed = true;
                    }
                }
                results.push((dispatcher, greedy));
            }
            Err(error) => {
                eprintln!("[{}/{}] {}: {error}", n + 1, dirs.len(), dir.display());
                failed = true;
            }
        }
    }
    let summary = Summary {
        instances: results.len(),
        dispatcher: Means::of(&results.iter().map(|(d, _)| d).collect::<Vec<_>>()),
        greedy: Means::of(&results.iter().map(|(_, g)| g).collect::<Vec<_>>()),
    };
    eprintln!(
        "summary over {} instances: click-to-door mean {:.2} (dispatcher) vs {:.2} (greedy), \
         ready-to-pickup {:.2} vs {:.2}, over target {:.1}% vs {:.1}%",
        summary.instances,
        summary.dispatcher.click_to_door_mean,
        summary.greedy.click_to_door_mean,
        summary.dispatcher.ready_to_pickup_mean,
        summary.greedy.ready_to_pickup_mean,
        summary.dispatcher.share_over_target * 100.0,
        summary.greedy.share_over_target * 100.0
    );
    match serde_json::to_string(&serde_json::json!({ "summary": summary })) {
        Ok(json) => println!("{json}"),
        Err(error) => {
            eprintln!("summary: {error}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The instance folders directly under `dir` (those with an `orders.txt`), by name.
fn instance_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.join("orders.txt").is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn run(
    dir: &Path,
    args: &Args,
    config: &DispatchConfig,
) -> Result<(Instance, Metrics, Metrics), Box<dyn std::error::Error>> {
    let instance = Instance::load(dir)?;
    let dispatcher = replay_checked(
        &instance,
        "dispatcher",
        &mut DispatcherPolicy::for_instance(&instance, config.clone()),
        args,
    )?;
    let greedy = replay_checked(
        &instance,
        "greedy",
        &mut GreedyPolicy::for_instance(&instance),
        args,
    )?;
    Ok((instance, dispatcher, greedy))
}

/// Replays one policy, writes its files when asked, and has the checker recompute the figures
/// from the files' contents: they must be the replay's.
fn replay_checked(
    instance: &Instance,
    policy_name: &str,
    policy: &mut dyn Policy,
    args: &Args,
) -> Result<Metrics, Box<dyn std::error::Error>> {
    let Replayed { metrics, solution } = replay(instance, policy, args.tick_minutes)?;
    if let Some(root) = &args.solutions {
        solution.write(instance, &root.join(&instance.name).join(policy_name))?;
    }
    let [assignments, orders, couriers] = solution.render(instance);
    let checked = checker::check(instance, &assignments, &orders, &couriers)
        .map_err(|e| format!("{policy_name}: the checker refuses the solution: {e}"))?;
    if checked != metrics {
        return Err(format!(
            "{policy_name}: the checker computes {checked:?} from the files, the replay {metrics:?}"
        )
        .into());
    }
    Ok(metrics)
}
