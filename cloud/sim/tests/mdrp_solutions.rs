//! The MDRP solutions the benchmark writes, judged by our checker: every instance's solution
//! for both policies passes and the checker's figures from the files equal the replay's; and
//! deliberately broken solutions (an early assignment, a teleport, a pickup before ready, a
//! double assignment, a drop-off too soon) are each refused for the rule they break.

use std::path::{Path, PathBuf};

use flashkart_cloud::dispatch::DispatchConfig;
use flashkart_cloud_sim::checker::{self, CheckError, Rule};
use flashkart_cloud_sim::mdrp::Instance;
use flashkart_cloud_sim::replay::{DispatcherPolicy, GreedyPolicy, Replayed, replay};
use flashkart_cloud_sim::solution::{Place, Solution};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn instances_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mdrp")
}

fn instance(name: &str) -> Result<Instance, Box<dyn std::error::Error>> {
    Ok(Instance::load(&instances_dir().join(name))?)
}

/// The rules the checker reports for `solution`; empty when it passes.
fn refused(instance: &Instance, solution: &Solution) -> Vec<Rule> {
    let [assignments, orders, couriers] = solution.render(instance);
    match checker::check(instance, &assignments, &orders, &couriers) {
        Ok(_) => Vec::new(),
        Err(CheckError::Violations(violations)) => violations.iter().map(|v| v.rule).collect(),
        Err(error) => panic!("unexpected error: {error}"),
    }
}

#[test]
fn every_solution_passes_and_the_figures_are_the_checkers() -> TestResult {
    let mut names: Vec<String> = std::fs::read_dir(instances_dir())?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("orders.txt").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "the four instances of data/mdrp");
    let out = tempfile::tempdir()?;
    for name in names {
        let instance = instance(&name)?;
        let policies: [(&str, Box<dyn flashkart_cloud_sim::replay::Policy>); 2] = [
            (
                "dispatcher",
                Box::new(DispatcherPolicy::for_instance(
                    &instance,
                    DispatchConfig::default(),
                )),
            ),
            ("greedy", Box::new(GreedyPolicy::for_instance(&instance))),
        ];
        for (policy_name, mut policy) in policies {
            let Replayed { metrics, solution } = replay(&instance, policy.as_mut(), 1.0)?;
            let dir = out.path().join(&name).join(policy_name);
            solution.write(&instance, &dir)?;
            let checked = checker::check_dir(&instance, &dir)
                .map_err(|e| format!("{name}/{policy_name}: {e}"))?;
            assert_eq!(checked, metrics, "{name}/{policy_name}");
            assert!(metrics.orders_delivered > 0, "{name}/{policy_name}");
            assert_eq!(
                metrics.orders_delivered + metrics.orders_undelivered,
                instance.orders.len()
            );
        }
    }
    Ok(())
}

/// The greedy solution of the smallest instance, the base each broken one is made from.
fn valid() -> Result<(Instance, Solution), Box<dyn std::error::Error>> {
    let instance = instance("0o50t100s1p100")?;
    let Replayed { solution, .. } =
        replay(&instance, &mut GreedyPolicy::for_instance(&instance), 1.0)?;
    assert!(refused(&instance, &solution).is_empty());
    Ok((instance, solution))
}

#[test]
fn an_assignment_before_its_order_was_placed_is_refused() -> TestResult {
    let (instance, mut solution) = valid()?;
    let first = &mut solution.assignments[0];
    let placed = instance.orders[first.orders[0]].placed_at;
    // The dispatcher must never see an order before its placement: a minute early is enough.
    first.assigned_at = placed - 1.0;
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::EarlyAssignment), "{rules:?}");
    Ok(())
}

#[test]
fn a_courier_that_teleports_is_refused() -> TestResult {
    let (instance, mut solution) = valid()?;
    // A courier's second trip starting from the start location instead of the last drop-off.
    let courier = (0..instance.couriers.len())
        .find(|&c| {
            solution
                .assignments
                .iter()
                .filter(|a| a.courier == c)
                .count()
                >= 2
        })
        .ok_or("no courier with two trips")?;
    let second_trip = solution
        .moves
        .iter_mut()
        .filter(|m| m.courier == courier && matches!(m.destination, Place::Restaurant(_)))
        .nth(1)
        .ok_or("no second trip")?;
    second_trip.origin = Place::Start;
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::Teleport), "{rules:?}");

    // And one that arrives faster than the distance allows: its drop-off a minute too soon.
    let (instance, mut solution) = valid()?;
    let order = solution
        .orders
        .iter()
        .position(Option::is_some)
        .ok_or("nothing delivered")?;
    if let Some(delivered) = solution.orders[order].as_mut() {
        delivered.dropoff_at -= 1.0;
    }
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::DropoffMismatch), "{rules:?}");
    Ok(())
}

#[test]
fn a_pickup_before_the_order_is_ready_is_refused() -> TestResult {
    let (instance, mut solution) = valid()?;
    let trip = solution.assignments[0].clone();
    let ready = trip
        .orders
        .iter()
        .map(|&o| instance.orders[o].ready_at)
        .fold(f64::NEG_INFINITY, f64::max);
    let early = ready - 5.0;
    solution.assignments[0].pickup_at = early;
    for &order in &trip.orders {
        if let Some(delivered) = solution.orders[order].as_mut() {
            delivered.pickup_at = early;
        }
    }
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::PickupBeforeReady), "{rules:?}");
    Ok(())
}

#[test]
fn an_order_assigned_twice_is_refused() -> TestResult {
    let (instance, mut solution) = valid()?;
    let mut again = solution.assignments[0].clone();
    again.courier = (again.courier + 1) % instance.couriers.len();
    solution.assignments.push(again);
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::AssignedTwice), "{rules:?}");
    Ok(())
}

#[test]
fn a_bundle_of_two_restaurants_and_a_pickup_after_off_time_are_refused() -> TestResult {
    let (instance, mut solution) = valid()?;
    let first = solution.assignments[0].clone();
    let other = (0..instance.orders.len())
        .find(|&o| {
            instance.orders[o].restaurant != instance.orders[first.orders[0]].restaurant
                && solution.orders[o].is_none_or(|d| d.courier != first.courier)
        })
        .ok_or("no order of another restaurant")?;
    solution.assignments[0].orders.push(other);
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::TwoRestaurants), "{rules:?}");

    let (instance, mut solution) = valid()?;
    let courier = solution.assignments[0].courier;
    solution.assignments[0].pickup_at = instance.couriers[courier].off_time + 1.0;
    let rules = refused(&instance, &solution);
    assert!(rules.contains(&Rule::PickupAfterOffTime), "{rules:?}");
    Ok(())
}

#[test]
fn malformed_files_are_refused_with_the_line() -> TestResult {
    let (instance, solution) = valid()?;
    let [assignments, orders, couriers] = solution.render(&instance);
    let garbled = assignments.replacen('\n', "\nsoon 12 c1 o1\n", 1);
    match checker::check(&instance, &garbled, &orders, &couriers) {
        Err(CheckError::Violations(violations)) => {
            assert_eq!(violations[0].rule, Rule::Format);
            assert_eq!(violations[0].line, 2);
        }
        other => panic!("garbled assignments accepted: {other:?}"),
    }
    let unknown = couriers.replacen('\n', "\nc1 0 0 nowhere\n", 1);
    assert!(checker::check(&instance, &assignments, &orders, &unknown).is_err());
    Ok(())
}
