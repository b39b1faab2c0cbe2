//! The baseline the dispatcher is measured against: orders in the sequence they were placed,
//! each given to the nearest rider who is free right now, one order per trip, no look-ahead.

use super::model::{Order, OrderId, Rider, RiderId, ServiceTimes};
use super::travel::TravelTime;

/// Pairs each open order (oldest first) with the nearest rider free at `now` who can pick it
/// up before the end of their shift; each rider gets at most one order.
pub fn nearest_available<T: TravelTime>(
    now: f64,
    riders: &[Rider],
    orders: &[Order],
    service: &ServiceTimes,
    travel: &T,
) -> Vec<(RiderId, OrderId)> {
    let mut free: Vec<&Rider> = riders.iter().filter(|rider| rider.free_at <= now).collect();
    let mut by_age: Vec<&Order> = orders.iter().collect();
    by_age.sort_by(|a, b| a.placed_at.total_cmp(&b.placed_at).then(a.id.cmp(&b.id)));
    let mut pairs = Vec::new();
    for order in by_age {
        let nearest = free
            .iter()
            .enumerate()
            .map(|(slot, rider)| (slot, travel.minutes(rider.position, order.pickup)))
            .filter(|&(slot, minutes)| {
                let pickup = order.ready_at.max(now + minutes + service.pickup / 2.0);
                pickup <= free[slot].shift_end
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((slot, _)) = nearest {
            pairs.push((free.swap_remove(slot).id, order.id));
        }
    }
    pairs
}
