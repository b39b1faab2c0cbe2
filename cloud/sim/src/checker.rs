//! Our own checker of MDRP solution files (`solution`), so the benchmark's figures rest on the
//! files alone and not on the simulator that produced them. It enforces the rules the
//! instances define (the instances' README): each order in at most one assignment; no
//! assignment before its orders were placed or before the courier's shift; pickup not before
//! every order is ready, not before the courier arrived and spent half the pickup service,
//! and not after the courier's off time; one restaurant per bundle; drop-offs in bundle order,
//! each at arrival plus half the drop-off service and left half a service later; couriers
//! never teleport (each move starts where the last ended, no departure before the courier is
//! free, travel = ceil(metres / metres per minute)). It then recomputes every metric from the
//! files, for the benchmark's printed figures to be compared against.

use std::collections::HashMap;
use std::path::Path;

use crate::mdrp::Instance;
use crate::replay::Metrics;
use crate::solution::{ASSIGNMENTS_FILE, COURIERS_FILE, ORDERS_FILE, ORDERS_HEADER, Place};

/// Violations reported at most; a broken writer would otherwise print thousands.
const MAX_VIOLATIONS: usize = 50;
/// Times and coordinates are printed with at most six decimals.
const EPSILON: f64 = 1e-6;

/// Which rule a solution broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A line that is not what the file's format says.
    Format,
    /// A courier, order or restaurant the instance does not have.
    UnknownName,
    /// The orders file disagrees with the instance (placement, restaurant, position, ready).
    InstanceMismatch,
    /// An order in two assignments, or listed twice.
    AssignedTwice,
    /// Assigned before an order in it was placed, or before the courier's shift.
    EarlyAssignment,
    /// Picked up before an order in it was ready.
    PickupBeforeReady,
    /// Picked up after the courier's off time.
    PickupAfterOffTime,
    /// Orders of two restaurants in one bundle.
    TwoRestaurants,
    /// A move that does not start where the courier is.
    Teleport,
    /// A move that leaves before the courier is free (still travelling or in service, or not
    /// yet assigned).
    DepartedEarly,
    /// A pickup before the courier could have arrived and spent half the pickup service.
    ServiceSkipped,
    /// Moves that do not follow the courier's assignments (wrong restaurant, drop-offs out of
    /// bundle order, a courier's moves not together or not in time order).
    MoveOrder,
    /// A drop-off time the moves do not give.
    DropoffMismatch,
    /// A move or delivery no assignment explains, or an assignment with no moves.
    Unexplained,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub file: &'static str,
    /// 1-based, counting the header; 0 when no single line is at fault.
    pub line: usize,
    pub rule: Rule,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {}: {:?}: {}",
            self.file, self.line, self.rule, self.detail
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("reading {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} rule violation(s), first: {}", .0.len(), .0[0])]
    Violations(Vec<Violation>),
}

/// Checks the three files in `dir` against `instance`; the metrics they give when valid.
pub fn check_dir(instance: &Instance, dir: &Path) -> Result<Metrics, CheckError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| CheckError::Io { path, source })
    };
    check(
        instance,
        &read(ASSIGNMENTS_FILE)?,
        &read(ORDERS_FILE)?,
        &read(COURIERS_FILE)?,
    )
}

/// Checks a solution given as the three files' contents.
pub fn check(
    instance: &Instance,
    assignments: &str,
    orders: &str,
    couriers: &str,
) -> Result<Metrics, CheckError> {
    let mut checker = Checker::new(instance);
    let parsed_assignments = checker.parse_assignments(assignments);
    let parsed_orders = checker.parse_orders(orders);
    let moves = checker.parse_moves(couriers);
    checker.check_assignments(&parsed_assignments, &parsed_orders);
    checker.check_moves(&parsed_assignments, &parsed_orders, &moves);
    if checker.violations.is_empty() {
        Ok(metrics(instance, &parsed_assignments, &parsed_orders))
    } else {
        Err(CheckError::Violations(checker.violations))
    }
}

struct Assignment {
    line: usize,
    assigned_at: f64,
    pickup_at: f64,
    courier: usize,
    orders: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Delivered {
    line: usize,
    pickup_at: f64,
    dropoff_at: f64,
    courier: usize,
}

struct Move {
    line: usize,
    courier: usize,
    departure: f64,
    origin: Place,
    destination: Place,
}

struct Checker<'a> {
    instance: &'a Instance,
    couriers: HashMap<&'a str, usize>,
    orders: HashMap<&'a str, usize>,
    restaurants: HashMap<&'a str, usize>,
    violations: Vec<Violation>,
}

impl<'a> Checker<'a> {
    fn new(instance: &'a Instance) -> Self {
        let index = |names: Vec<&'a str>| {
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name, i))
                .collect()
        };
        Self {
            instance,
            couriers: index(instance.couriers.iter().map(|c| c.name.as_str()).collect()),
            orders: index(instance.orders.iter().map(|o| o.name.as_str()).collect()),
            restaurants: index(
                instance
                    .restaurants
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect(),
            ),
            violations: Vec::new(),
        }
    }

    fn violate(&mut self, file: &'static str, line: usize, rule: Rule, detail: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                file,
                line,
                rule,
                detail,
            });
        }
    }

    /// The data lines of a file (its first line is the header), numbered from 1 at the header.
    fn data_lines(&mut self, file: &'static str, text: &'a str) -> Vec<(usize, Vec<&'a str>)> {
        let mut lines = text.lines().enumerate();
        if lines
            .next()
            .is_none_or(|(_, header)| header.trim().is_empty())
        {
            self.violate(file, 1, Rule::Format, "no header line".into());
        }
        lines
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| (n + 1, line.split_whitespace().collect()))
            .collect()
    }

    fn time(&mut self, file: &'static str, line: usize, what: &str, text: &str) -> Option<f64> {
        let value = text.parse::<f64>().ok().filter(|v| v.is_finite());
        if value.is_none() {
            self.violate(
                file,
                line,
                Rule::Format,
                format!("{what} `{text}` is not a number"),
            );
        }
        value
    }

    fn courier(&mut self, file: &'static str, line: usize, name: &str) -> Option<usize> {
        let found = self.couriers.get(name).copied();
        if found.is_none() {
            self.violate(
                file,
                line,
                Rule::UnknownName,
                format!("unknown courier `{name}`"),
            );
        }
        found
    }

    fn order(&mut self, file: &'static str, line: usize, name: &str) -> Option<usize> {
        let found = self.orders.get(name).copied();
        if found.is_none() {
            self.violate(
                file,
                line,
                Rule::UnknownName,
                format!("unknown order `{name}`"),
            );
        }
        found
    }

    fn parse_assignments(&mut self, text: &'a str) -> Vec<Assignment> {
        let file = ASSIGNMENTS_FILE;
        let mut out = Vec::new();
        for (line, fields) in self.data_lines(file, text) {
            if fields.len() < 4 {
                self.violate(
                    file,
                    line,
                    Rule::Format,
                    "expected assignment time, pickup time, courier and at least one order".into(),
                );
                continue;
            }
            let assigned_at = self.time(file, line, "assignment time", fields[0]);
            let pickup_at = self.time(file, line, "pickup time", fields[1]);
            let courier = self.courier(file, line, fields[2]);
            let orders: Vec<Option<usize>> = fields[3..]
                .iter()
                .map(|name| self.order(file, line, name))
                .collect();
            if let (Some(assigned_at), Some(pickup_at), Some(courier), Some(orders)) = (
                assigned_at,
                pickup_at,
                courier,
                orders.into_iter().collect::<Option<Vec<_>>>(),
            ) {
                out.push(Assignment {
                    line,
                    assigned_at,
                    pickup_at,
                    courier,
                    orders,
                });
            }
        }
        out
    }

    /// The orders file, checked against the instance; delivered orders by instance index.
    fn parse_orders(&mut self, text: &'a str) -> Vec<Option<Delivered>> {
        let file = ORDERS_FILE;
        let header_ok = text
            .lines()
            .next()
            .is_some_and(|h| h.split_whitespace().eq(ORDERS_HEADER.split_whitespace()));
        if !header_ok {
            self.violate(
                file,
                1,
                Rule::Format,
                format!("the header must name the columns `{ORDERS_HEADER}`"),
            );
        }
        let instance = self.instance;
        let mut seen = vec![false; instance.orders.len()];
        let mut out = vec![None; instance.orders.len()];
        for (line, fields) in self.data_lines(file, text) {
            if fields.len() != 6 && fields.len() != 9 {
                self.violate(
                    file,
                    line,
                    Rule::Format,
                    format!(
                        "{} fields: 6 for an undelivered order, 9 for a delivered one",
                        fields.len()
                    ),
                );
                continue;
            }
            let Some(index) = self.order(file, line, fields[0]) else {
                continue;
            };
            if std::mem::replace(&mut seen[index], true) {
                self.violate(
                    file,
                    line,
                    Rule::AssignedTwice,
                    format!("order {} is listed twice", fields[0]),
                );
                continue;
            }
            let order = &instance.orders[index];
            let restaurant = &instance.restaurants[order.restaurant].name;
            let numbers = [
                ("placement_time", fields[1], order.placed_at),
                ("latitude", fields[3], order.dropoff.x),
                ("longitude", fields[4], order.dropoff.y),
                ("ready_time", fields[5], order.ready_at),
            ];
            for (what, text, expected) in numbers {
                if let Some(value) = self.time(file, line, what, text)
                    && (value - expected).abs() > EPSILON
                {
                    self.violate(
                        file,
                        line,
                        Rule::InstanceMismatch,
                        format!("{what} {value} but the instance says {expected}"),
                    );
                }
            }
            if fields[2] != restaurant {
                self.violate(
                    file,
                    line,
                    Rule::InstanceMismatch,
                    format!(
                        "restaurant {} but the instance says {restaurant}",
                        fields[2]
                    ),
                );
            }
            if fields.len() == 9 {
                let pickup_at = self.time(file, line, "pickup_time", fields[6]);
                let dropoff_at = self.time(file, line, "dropoff_time", fields[7]);
                let courier = self.courier(file, line, fields[8]);
                if let (Some(pickup_at), Some(dropoff_at), Some(courier)) =
                    (pickup_at, dropoff_at, courier)
                {
                    out[index] = Some(Delivered {
                        line,
                        pickup_at,
                        dropoff_at,
                        courier,
                    });
                }
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            let name = instance.orders[missing].name.clone();
            self.violate(
                file,
                0,
                Rule::Format,
                format!("order {name} (and perhaps others) is missing"),
            );
        }
        out
    }

    fn place(&mut self, line: usize, name: &str) -> Option<Place> {
        if name == "0" {
            return Some(Place::Start);
        }
        match (self.orders.get(name), self.restaurants.get(name)) {
            (Some(&order), None) => Some(Place::Dropoff(order)),
            (None, Some(&restaurant)) => Some(Place::Restaurant(restaurant)),
            (Some(_), Some(_)) => {
                self.violate(
                    COURIERS_FILE,
                    line,
                    Rule::UnknownName,
                    format!("`{name}` names both an order and a restaurant"),
                );
                None
            }
            (None, None) => {
                self.violate(
                    COURIERS_FILE,
                    line,
                    Rule::UnknownName,
                    format!("unknown place `{name}`"),
                );
                None
            }
        }
    }

    fn parse_moves(&mut self, text: &'a str) -> Vec<Move> {
        let file = COURIERS_FILE;
        let mut out = Vec::new();
        for (line, fields) in self.data_lines(file, text) {
            if fields.len() != 4 {
                self.violate(
                    file,
                    line,
                    Rule::Format,
                    "expected courier, departure time, origin and destination".into(),
                );
                continue;
            }
            let courier = self.courier(file, line, fields[0]);
            let departure = self.time(file, line, "departure time", fields[1]);
            let origin = self.place(line, fields[2]);
            let destination = self.place(line, fields[3]);
            if let (Some(courier), Some(departure), Some(origin), Some(destination)) =
                (courier, departure, origin, destination)
            {
                out.push(Move {
                    line,
                    courier,
                    departure,
                    origin,
                    destination,
                });
            }
        }
        out
    }

    /// The rules each assignment must keep on its own, and the orders file's agreement.
    fn check_assignments(&mut self, assignments: &[Assignment], orders: &[Option<Delivered>]) {
        let instance = self.instance;
        let file = ASSIGNMENTS_FILE;
        let mut assigned_in: Vec<Option<usize>> = vec![None; instance.orders.len()];
        for a in assignments {
            let courier = &instance.couriers[a.courier];
            if a.assigned_at < courier.on_time {
                self.violate(
                    file,
                    a.line,
                    Rule::EarlyAssignment,
                    format!(
                        "assigned at {} before {}'s shift starts at {}",
                        a.assigned_at, courier.name, courier.on_time
                    ),
                );
            }
            if a.pickup_at > courier.off_time + EPSILON {
                self.violate(
                    file,
                    a.line,
                    Rule::PickupAfterOffTime,
                    format!(
                        "pickup at {} after {}'s off time {}",
                        a.pickup_at, courier.name, courier.off_time
                    ),
                );
            }
            let restaurant = instance.orders[a.orders[0]].restaurant;
            for &index in &a.orders {
                let order = &instance.orders[index];
                if let Some(first) = assigned_in[index].replace(a.line) {
                    self.violate(
                        file,
                        a.line,
                        Rule::AssignedTwice,
                        format!("order {} was already assigned on line {first}", order.name),
                    );
                }
                if order.restaurant != restaurant {
                    self.violate(
                        file,
                        a.line,
                        Rule::TwoRestaurants,
                        format!(
                            "order {} is from {}, the bundle from {}",
                            order.name,
                            instance.restaurants[order.restaurant].name,
                            instance.restaurants[restaurant].name
                        ),
                    );
                }
                if a.assigned_at + EPSILON < order.placed_at {
                    self.violate(
                        file,
                        a.line,
                        Rule::EarlyAssignment,
                        format!(
                            "assigned at {} but order {} was placed at {}",
                            a.assigned_at, order.name, order.placed_at
                        ),
                    );
                }
                if a.pickup_at + EPSILON < order.ready_at {
                    self.violate(
                        file,
                        a.line,
                        Rule::PickupBeforeReady,
                        format!(
                            "picked up at {} but order {} is ready at {}",
                            a.pickup_at, order.name, order.ready_at
                        ),
                    );
                }
                match orders[index] {
                    Some(d)
                        if d.courier == a.courier && (d.pickup_at - a.pickup_at).abs() <= EPSILON => {}
                    Some(d) => self.violate(
                        ORDERS_FILE,
                        d.line,
                        Rule::Unexplained,
                        format!(
                            "order {}'s courier or pickup time differs from its assignment (line {})",
                            order.name, a.line
                        ),
                    ),
                    None => self.violate(
                        ORDERS_FILE,
                        0,
                        Rule::Unexplained,
                        format!(
                            "order {} is assigned (line {}) but not delivered",
                            order.name, a.line
                        ),
                    ),
                }
            }
        }
        for (index, delivered) in orders.iter().enumerate() {
            if let (Some(d), None) = (delivered, assigned_in[index]) {
                self.violate(
                    ORDERS_FILE,
                    d.line,
                    Rule::Unexplained,
                    format!(
                        "order {} is delivered but in no assignment",
                        instance.orders[index].name
                    ),
                );
            }
        }
    }

    /// Walks each courier's moves along their assignments.
    fn check_moves(
        &mut self,
        assignments: &[Assignment],
        orders: &[Option<Delivered>],
        moves: &[Move],
    ) {
        let instance = self.instance;
        let file = COURIERS_FILE;
        let half_pickup = instance.parameters.pickup_service / 2.0;
        let half_dropoff = instance.parameters.dropoff_service / 2.0;
        let mut by_courier: Vec<Vec<&Move>> = vec![Vec::new(); instance.couriers.len()];
        let mut finished = vec![false; instance.couriers.len()];
        let mut current: Option<usize> = None;
        for m in moves {
            if current != Some(m.courier) {
                if let Some(previous) = current {
                    finished[previous] = true;
                }
                if finished[m.courier] {
                    self.violate(
                        file,
                        m.line,
                        Rule::MoveOrder,
                        format!(
                            "{}'s moves are not together",
                            instance.couriers[m.courier].name
                        ),
                    );
                }
                current = Some(m.courier);
            }
            by_courier[m.courier].push(m);
        }
        let mut trips: Vec<Vec<&Assignment>> = vec![Vec::new(); instance.couriers.len()];
        for a in assignments {
            trips[a.courier].push(a);
        }
        for (courier_index, courier) in instance.couriers.iter().enumerate() {
            trips[courier_index].sort_by(|a, b| a.assigned_at.total_cmp(&b.assigned_at));
            let mut moves = by_courier[courier_index].iter();
            let mut here = Place::Start;
            let mut free_at = courier.on_time;
            for trip in &trips[courier_index] {
                let restaurant = Place::Restaurant(instance.orders[trip.orders[0]].restaurant);
                let Some(m) = moves.next() else {
                    self.violate(
                        ASSIGNMENTS_FILE,
                        trip.line,
                        Rule::Unexplained,
                        format!("{} never moves for this assignment", courier.name),
                    );
                    break;
                };
                let arrival = self.follow(m, here, restaurant, free_at.max(trip.assigned_at));
                if trip.pickup_at + EPSILON < arrival + half_pickup {
                    self.violate(
                        file,
                        m.line,
                        Rule::ServiceSkipped,
                        format!(
                            "arrives at {arrival}, so cannot pick up before {} (pickup at {})",
                            arrival + half_pickup,
                            trip.pickup_at
                        ),
                    );
                }
                here = restaurant;
                free_at = trip.pickup_at + half_pickup;
                for &order in &trip.orders {
                    let Some(m) = moves.next() else {
                        self.violate(
                            ASSIGNMENTS_FILE,
                            trip.line,
                            Rule::Unexplained,
                            format!(
                                "{} never moves to drop off {}",
                                courier.name, instance.orders[order].name
                            ),
                        );
                        break;
                    };
                    let arrival = self.follow(m, here, Place::Dropoff(order), free_at);
                    let dropoff = arrival + half_dropoff;
                    if let Some(d) = orders[order]
                        && (d.dropoff_at - dropoff).abs() > EPSILON
                    {
                        self.violate(
                            ORDERS_FILE,
                            d.line,
                            Rule::DropoffMismatch,
                            format!(
                                "drop-off at {} but the courier arrives at {arrival}, so {dropoff}",
                                d.dropoff_at
                            ),
                        );
                    }
                    here = Place::Dropoff(order);
                    free_at = dropoff + half_dropoff;
                }
            }
            for m in moves {
                self.violate(
                    file,
                    m.line,
                    Rule::Unexplained,
                    format!("no assignment of {} explains this move", courier.name),
                );
            }
        }
    }

    /// Checks one move against where the courier is, where it must go and when it may leave;
    /// the arrival time.
    fn follow(&mut self, m: &Move, here: Place, destination: Place, free_at: f64) -> f64 {
        let file = COURIERS_FILE;
        if m.origin != here {
            self.violate(
                file,
                m.line,
                Rule::Teleport,
                format!(
                    "leaves from {} but the courier is at {}",
                    self.name(m.origin, m.courier),
                    self.name(here, m.courier)
                ),
            );
        }
        if m.destination != destination {
            self.violate(
                file,
                m.line,
                Rule::MoveOrder,
                format!(
                    "goes to {} but the assignment's next stop is {}",
                    self.name(m.destination, m.courier),
                    self.name(destination, m.courier)
                ),
            );
        }
        if m.departure + EPSILON < free_at {
            self.violate(
                file,
                m.line,
                Rule::DepartedEarly,
                format!(
                    "departs at {} but the courier is not free before {free_at}",
                    m.departure
                ),
            );
        }
        let from = self.position(m.origin, m.courier);
        let to = self.position(m.destination, m.courier);
        let metres = (to.0 - from.0).hypot(to.1 - from.1);
        m.departure + (metres / self.instance.parameters.metres_per_minute).ceil()
    }

    fn position(&self, place: Place, courier: usize) -> (f64, f64) {
        let point = match place {
            Place::Start => self.instance.couriers[courier].start,
            Place::Restaurant(r) => self.instance.restaurants[r].position,
            Place::Dropoff(o) => self.instance.orders[o].dropoff,
        };
        (point.x, point.y)
    }

    fn name(&self, place: Place, courier: usize) -> String {
        match place {
            Place::Start => format!("{}'s start", self.instance.couriers[courier].name),
            Place::Restaurant(r) => self.instance.restaurants[r].name.clone(),
            Place::Dropoff(o) => self.instance.orders[o].name.clone(),
        }
    }
}

/// The figures the instances' README defines, from the checked files: click-to-door and
/// ready-to-pickup over delivered orders, pay = max(per order, per hour of shift) per courier.
fn metrics(
    instance: &Instance,
    assignments: &[Assignment],
    orders: &[Option<Delivered>],
) -> Metrics {
    let parameters = &instance.parameters;
    let mut click_to_door = Vec::new();
    let mut ready_to_pickup = 0.0;
    let mut per_courier = vec![0_usize; instance.couriers.len()];
    for (order, delivered) in instance.orders.iter().zip(orders) {
        if let Some(d) = delivered {
            click_to_door.push(d.dropoff_at - order.placed_at);
            ready_to_pickup += d.pickup_at - order.ready_at;
            per_courier[d.courier] += 1;
        }
    }
    click_to_door.sort_by(f64::total_cmp);
    let delivered = click_to_door.len();
    let divisor = delivered.max(1) as f64;
    let p90 = match delivered {
        0 => 0.0,
        n => click_to_door[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1],
    };
    let shift_hours = |c: &crate::mdrp::Courier| (c.off_time - c.on_time) / 60.0;
    let hours: f64 = instance.couriers.iter().map(shift_hours).sum();
    let pay: f64 = instance
        .couriers
        .iter()
        .zip(&per_courier)
        .map(|(c, &n)| {
            (parameters.pay_per_order * n as f64).max(parameters.pay_per_hour * shift_hours(c))
        })
        .sum();
    let over = click_to_door
        .iter()
        .filter(|&&m| m > parameters.target_click_to_door)
        .count();
    let round = |value: f64| (value * 1000.0).round() / 1000.0;
    Metrics {
        orders_delivered: delivered,
        orders_undelivered: instance.orders.len() - delivered,
        click_to_door_mean: round(click_to_door.iter().sum::<f64>() / divisor),
        click_to_door_p90: round(p90),
        share_over_target: round(over as f64 / divisor),
        ready_to_pickup_mean: round(ready_to_pickup / divisor),
        orders_per_courier_hour: round(delivered as f64 / hours.max(f64::MIN_POSITIVE)),
        cost_per_order: round(pay / divisor),
        orders_per_trip: round(delivered as f64 / assignments.len().max(1) as f64),
    }
}
