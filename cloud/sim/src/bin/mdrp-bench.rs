//! Replays Meal Delivery Routing Problem instance folders through the dispatcher and through
//! the nearest-available-courier baseline, printing one JSON line per instance:
//! `{"instance", "dispatcher": {...}, "greedy": {...}}`. Progress goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use flashkart_cloud::dispatch::DispatchConfig;
use flashkart_cloud_sim::mdrp::Instance;
use flashkart_cloud_sim::replay::{DispatcherPolicy, GreedyPolicy, Metrics, replay};
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
    /// Instance folders (orders.txt, couriers.txt, restaurants.txt, instance_parameters.txt).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Line<'a> {
    instance: &'a str,
    dispatcher: Metrics,
    greedy: Metrics,
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
    let mut failed = false;
    for dir in &args.dirs {
        match run(dir, args.tick_minutes, &config) {
            Ok(line) => println!("{line}"),
            Err(error) => {
                eprintln!("{}: {error}", dir.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(
    dir: &std::path::Path,
    tick_minutes: f64,
    config: &DispatchConfig,
) -> Result<String, Box<dyn std::error::Error>> {
    let instance = Instance::load(dir)?;
    eprintln!(
        "{}: {} orders, {} couriers, {} restaurants",
        instance.name,
        instance.orders.len(),
        instance.couriers.len(),
        instance.restaurants.len()
    );
    let started = Instant::now();
    let dispatcher = replay(
        &instance,
        &mut DispatcherPolicy::for_instance(&instance, config.clone()),
        tick_minutes,
    )?;
    let dispatcher_time = started.elapsed();
    let started = Instant::now();
    let greedy = replay(
        &instance,
        &mut GreedyPolicy::for_instance(&instance),
        tick_minutes,
    )?;
    eprintln!(
        "{}: replayed in {:.2?} (dispatcher), {:.2?} (greedy)",
        instance.name,
        dispatcher_time,
        started.elapsed()
    );
    Ok(serde_json::to_string(&Line {
        instance: &instance.name,
        dispatcher,
        greedy,
    })?)
}
