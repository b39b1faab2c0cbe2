//! What the dispatcher reasons about: riders (roster entry plus where and when they are next
//! free) and orders (store, drop-off, timings). Times are `f64` minutes on one clock chosen by
//! the caller (MDRP: minutes from the start of the day; live: minutes since an epoch).

use super::travel::Point;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RiderId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId(pub u32);

/// The most orders one rider carries at once, whatever the vehicle.
pub const MAX_BUNDLE: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vehicle {
    Bicycle,
    Scooter,
    Car,
}

impl Vehicle {
    /// How many bags the vehicle carries: a bicycle's box holds two.
    pub fn max_orders(self) -> usize {
        match self {
            Vehicle::Bicycle => 2,
            Vehicle::Scooter | Vehicle::Car => MAX_BUNDLE,
        }
    }
}

/// A rider on shift. `position`/`free_at` say where and when the rider can start a new trip:
/// for an idle rider the live position and now, for a busy one the last drop-off and its
/// expected end.
#[derive(Debug, Clone, PartialEq)]
pub struct Rider {
    pub id: RiderId,
    pub vehicle: Vehicle,
    /// Orders the rider agreed to carry at once (further limited by the vehicle and 3).
    pub capacity: u8,
    /// 0 to 5; a better rating wins ties between otherwise equal riders.
    pub rating: f32,
    /// Riders prefer their home store's orders, so they stay near it.
    pub home_store: Option<StoreId>,
    /// Orders the rider can still carry without raising their pay, when pay is the larger of
    /// a per-order rate and an hourly guarantee (0 when paid purely per order): spreading work
    /// over riders below their guarantee costs nothing extra.
    pub guaranteed_orders_left: u32,
    /// No pickup after this time (a rider may still finish drop-offs).
    pub shift_end: f64,
    pub position: Point,
    pub free_at: f64,
}

impl Rider {
    /// The most orders this rider can carry in one trip.
    pub fn max_orders(&self) -> usize {
        usize::from(self.capacity)
            .min(self.vehicle.max_orders())
            .min(MAX_BUNDLE)
    }
}

/// An order waiting for a rider.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub store: StoreId,
    pub pickup: Point,
    pub dropoff: Point,
    pub placed_at: f64,
    /// When the bag is (or is expected to be) packed.
    pub ready_at: f64,
    /// Target click-to-door minutes (the SLA).
    pub target_minutes: f64,
}

impl Order {
    /// The time by which the order should be delivered.
    pub fn deadline(&self) -> f64 {
        self.placed_at + self.target_minutes
    }
}

/// Minutes spent at the store and at the door. Half of each is spent on arrival and half
/// before leaving, as in MDRP: pickup no earlier than arrival + pickup/2, departure pickup/2
/// after; drop-off at arrival + dropoff/2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceTimes {
    pub pickup: f64,
    pub dropoff: f64,
}
