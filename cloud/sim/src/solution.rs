//! A replay's solution in the three files the MDRP instances' public checker reads, so that
//! what the benchmark claims can be checked by anyone from the files alone (our own checker is
//! `checker`): `solution_info_assignments.txt` (one line per trip), `solution_info_orders.txt`
//! (one line per order, undelivered ones with empty pickup, drop-off and courier) and
//! `solution_info_couriers.txt` (one line per courier move, each courier's moves together and
//! in time order; origin `0` is the courier's start location).

use std::fmt::Write as _;
use std::path::Path;

use crate::mdrp::Instance;

pub const ASSIGNMENTS_FILE: &str = "solution_info_assignments.txt";
pub const ORDERS_FILE: &str = "solution_info_orders.txt";
pub const COURIERS_FILE: &str = "solution_info_couriers.txt";

pub const ASSIGNMENTS_HEADER: &str = "assignment_time pickup_time courier orders";
pub const ORDERS_HEADER: &str = "order placement_time restaurant latitude longitude ready_time pickup_time dropoff_time courier";
pub const COURIERS_HEADER: &str = "courier departure_time origin destination";

/// Where a courier moves from or to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The courier's start location (`0` in the files).
    Start,
    /// A restaurant, by index into [`Instance::restaurants`].
    Restaurant(usize),
    /// An order's drop-off, by index into [`Instance::orders`].
    Dropoff(usize),
}

/// One trip: when it was assigned, when its orders were picked up, by whom, and its orders
/// (indices into [`Instance::orders`]) in drop-off sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub assigned_at: f64,
    pub pickup_at: f64,
    pub courier: usize,
    pub orders: Vec<usize>,
}

/// What happened to a delivered order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivered {
    pub pickup_at: f64,
    pub dropoff_at: f64,
    pub courier: usize,
}

/// One courier move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    pub courier: usize,
    pub departure: f64,
    pub origin: Place,
    pub destination: Place,
}

/// A whole solution, as a replay recorded it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Solution {
    pub assignments: Vec<Assignment>,
    /// One entry per instance order; `None` for an order never delivered.
    pub orders: Vec<Option<Delivered>>,
    pub moves: Vec<Move>,
}

impl Solution {
    /// An empty solution for `orders` orders.
    pub fn new(orders: usize) -> Self {
        Self {
            assignments: Vec::new(),
            orders: vec![None; orders],
            moves: Vec::new(),
        }
    }

    /// Writes the three files into `dir` (created if missing).
    pub fn write(&self, instance: &Instance, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let [assignments, orders, couriers] = self.render(instance);
        std::fs::write(dir.join(ASSIGNMENTS_FILE), assignments)?;
        std::fs::write(dir.join(ORDERS_FILE), orders)?;
        std::fs::write(dir.join(COURIERS_FILE), couriers)
    }

    /// The three files' contents: assignments, orders, couriers.
    pub fn render(&self, instance: &Instance) -> [String; 3] {
        let courier = |index: usize| {
            instance
                .couriers
                .get(index)
                .map_or("?", |c| c.name.as_str())
        };
        let order = |index: usize| instance.orders.get(index).map_or("?", |o| o.name.as_str());
        let place = |place: Place| match place {
            Place::Start => "0",
            Place::Restaurant(index) => instance
                .restaurants
                .get(index)
                .map_or("?", |r| r.name.as_str()),
            Place::Dropoff(index) => order(index),
        };

        let mut assignments = format!("{ASSIGNMENTS_HEADER}\n");
        for a in &self.assignments {
            let _ = write!(
                assignments,
                "{} {} {}",
                minutes(a.assigned_at),
                minutes(a.pickup_at),
                courier(a.courier)
            );
            for &index in &a.orders {
                let _ = write!(assignments, " {}", order(index));
            }
            assignments.push('\n');
        }

        let mut orders = format!("{ORDERS_HEADER}\n");
        for (index, (o, delivered)) in instance.orders.iter().zip(&self.orders).enumerate() {
            let restaurant = instance
                .restaurants
                .get(o.restaurant)
                .map_or("?", |r| r.name.as_str());
            let _ = write!(
                orders,
                "{} {} {} {} {} {}",
                order(index),
                minutes(o.placed_at),
                restaurant,
                minutes(o.dropoff.x),
                minutes(o.dropoff.y),
                minutes(o.ready_at)
            );
            if let Some(d) = delivered {
                let _ = write!(
                    orders,
                    " {} {} {}",
                    minutes(d.pickup_at),
                    minutes(d.dropoff_at),
                    courier(d.courier)
                );
            }
            orders.push('\n');
        }

        // Each courier's moves together, in time order (a stable sort keeps the replay's order
        // of moves made at the same minute).
        let mut moves = self.moves.clone();
        moves.sort_by(|a, b| {
            a.courier
                .cmp(&b.courier)
                .then(a.departure.total_cmp(&b.departure))
        });
        let mut couriers = format!("{COURIERS_HEADER}\n");
        for m in &moves {
            let _ = writeln!(
                couriers,
                "{} {} {} {}",
                courier(m.courier),
                minutes(m.departure),
                place(m.origin),
                place(m.destination)
            );
        }
        [assignments, orders, couriers]
    }
}

/// A time or coordinate as the files carry it: whole numbers without a fraction, others with
/// what they need (the instances' times are whole minutes; half service times make halves).
pub fn minutes(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_the_files_carry_them() {
        assert_eq!(minutes(753.0), "753");
        assert_eq!(minutes(12.5), "12.5");
        assert_eq!(minutes(-3.0), "-3");
        assert_eq!(minutes(0.125), "0.125");
    }
}
