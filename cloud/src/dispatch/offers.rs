//! Offers waiting for a rider's answer. An offer holds its orders and its rider until it is
//! accepted, declined, expires, or the rider goes offline; after a decline or expiry that rider
//! is never offered those orders again, and the orders return to the pool so the next tick
//! cascades them to the next best rider.

use std::collections::{HashMap, HashSet};

use super::model::{OrderId, RiderId};

/// One offer sent to a rider.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub rider: RiderId,
    /// Orders in drop-off sequence.
    pub orders: Vec<OrderId>,
    pub offered_at: f64,
    pub expires_at: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("rider {0:?} has no pending offer")]
    NoPendingOffer(RiderId),
    #[error("the offer to rider {0:?} has expired")]
    Expired(RiderId),
}

/// Pending offers and the (rider, order) pairs that must not be offered again.
#[derive(Debug, Clone, Default)]
pub struct OfferBook {
    pending: HashMap<RiderId, Offer>,
    held_orders: HashSet<OrderId>,
    refused: HashMap<OrderId, Vec<RiderId>>,
}

impl OfferBook {
    /// Records an offer. A rider has at most one pending offer; a new one replaces it.
    pub fn record(&mut self, offer: Offer) {
        if let Some(previous) = self.pending.remove(&offer.rider) {
            self.release(&previous);
        }
        self.held_orders.extend(offer.orders.iter().copied());
        self.pending.insert(offer.rider, offer);
    }

    /// The rider accepted: the offer leaves the book and the caller owns the trip.
    pub fn accept(&mut self, rider: RiderId, now: f64) -> Result<Offer, OfferError> {
        let offer = self
            .pending
            .get(&rider)
            .ok_or(OfferError::NoPendingOffer(rider))?;
        if now > offer.expires_at {
            self.expire(now);
            return Err(OfferError::Expired(rider));
        }
        let offer = self
            .pending
            .remove(&rider)
            .ok_or(OfferError::NoPendingOffer(rider))?;
        self.release(&offer);
        Ok(offer)
    }

    /// The rider said no: its orders go back to the pool without this rider.
    pub fn decline(&mut self, rider: RiderId) -> Result<Offer, OfferError> {
        let offer = self
            .pending
            .remove(&rider)
            .ok_or(OfferError::NoPendingOffer(rider))?;
        self.release(&offer);
        self.refuse(&offer);
        Ok(offer)
    }

    /// Ends the offers that were not answered in time, as if declined.
    pub fn expire(&mut self, now: f64) -> Vec<Offer> {
        let late: Vec<RiderId> = self
            .pending
            .values()
            .filter(|offer| now > offer.expires_at)
            .map(|offer| offer.rider)
            .collect();
        late.into_iter()
            .filter_map(|rider| self.decline(rider).ok())
            .collect()
    }

    /// The rider went offline: their pending offer is withdrawn and its orders re-planned.
    /// Not a refusal, so the rider may get the orders again after coming back.
    pub fn rider_offline(&mut self, rider: RiderId) -> Option<Offer> {
        let offer = self.pending.remove(&rider)?;
        self.release(&offer);
        Some(offer)
    }

    /// The rider accepted and the store recorded it in time: the store judges the timeout
    /// (it refuses a late answer), so its acceptance stands even if it reaches the caller
    /// after `expires_at`, as it does when the caller was down in between.
    pub fn accepted(&mut self, rider: RiderId) -> Result<Offer, OfferError> {
        let offer = self
            .pending
            .remove(&rider)
            .ok_or(OfferError::NoPendingOffer(rider))?;
        self.release(&offer);
        Ok(offer)
    }

    /// Bars `rider` from `order` as a refusal would: a refusal recorded before a restart.
    pub fn bar(&mut self, rider: RiderId, order: OrderId) {
        let riders = self.refused.entry(order).or_default();
        if !riders.contains(&rider) {
            riders.push(rider);
        }
    }

    pub fn pending(&self, rider: RiderId) -> Option<&Offer> {
        self.pending.get(&rider)
    }

    /// Every pending offer, in no particular order.
    pub fn pending_offers(&self) -> impl Iterator<Item = &Offer> {
        self.pending.values()
    }

    /// The offers [`OfferBook::expire`] would end at `now`.
    pub fn overdue(&self, now: f64) -> Vec<Offer> {
        self.pending
            .values()
            .filter(|offer| now > offer.expires_at)
            .cloned()
            .collect()
    }

    /// Whether the order waits on an answer (and so is not re-planned).
    pub fn is_held(&self, order: OrderId) -> bool {
        self.held_orders.contains(&order)
    }

    /// Riders who declined or let expire an offer containing `order`.
    pub fn refused_by(&self, order: OrderId) -> &[RiderId] {
        self.refused.get(&order).map_or(&[], Vec::as_slice)
    }

    /// Forgets the refusals of orders that are finished (delivered or cancelled).
    pub fn forget_order(&mut self, order: OrderId) {
        self.refused.remove(&order);
    }

    fn release(&mut self, offer: &Offer) {
        for order in &offer.orders {
            self.held_orders.remove(order);
        }
    }

    fn refuse(&mut self, offer: &Offer) {
        for &order in &offer.orders {
            self.bar(offer.rider, order);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(rider: u32, orders: &[u32], expires_at: f64) -> Offer {
        Offer {
            rider: RiderId(rider),
            orders: orders.iter().map(|&o| OrderId(o)).collect(),
            offered_at: 0.0,
            expires_at,
        }
    }

    #[test]
    fn a_declined_offer_frees_the_orders_and_bars_the_rider() {
        let mut book = OfferBook::default();
        book.record(offer(1, &[10, 11], 1.0));
        assert!(book.is_held(OrderId(10)));
        assert!(book.decline(RiderId(1)).is_ok());
        assert!(!book.is_held(OrderId(10)));
        assert_eq!(book.refused_by(OrderId(11)), &[RiderId(1)]);
        assert_eq!(
            book.decline(RiderId(1)),
            Err(OfferError::NoPendingOffer(RiderId(1)))
        );
    }

    #[test]
    fn expiry_counts_as_a_decline_and_late_accepts_fail() {
        let mut book = OfferBook::default();
        book.record(offer(1, &[10], 1.0));
        book.record(offer(2, &[20], 5.0));
        assert_eq!(
            book.accept(RiderId(1), 2.0),
            Err(OfferError::Expired(RiderId(1)))
        );
        assert_eq!(book.refused_by(OrderId(10)), &[RiderId(1)]);
        assert!(book.pending(RiderId(2)).is_some());
        assert_eq!(book.expire(6.0).len(), 1);
        assert_eq!(book.refused_by(OrderId(20)), &[RiderId(2)]);
    }

    #[test]
    fn a_restored_book_holds_and_bars_as_before() {
        let mut book = OfferBook::default();
        book.record(offer(1, &[10, 11], 1.0));
        book.bar(RiderId(2), OrderId(10));
        book.bar(RiderId(2), OrderId(10));
        assert_eq!(book.refused_by(OrderId(10)), &[RiderId(2)]);
        assert_eq!(book.overdue(0.5), Vec::new());
        assert_eq!(book.overdue(2.0), vec![offer(1, &[10, 11], 1.0)]);
        // The store recorded the acceptance in time; it arrives late here.
        assert_eq!(book.accepted(RiderId(1)), Ok(offer(1, &[10, 11], 1.0)));
        assert!(!book.is_held(OrderId(11)));
        assert!(book.refused_by(OrderId(11)).is_empty());
        assert_eq!(book.pending_offers().count(), 0);
    }

    #[test]
    fn going_offline_withdraws_without_barring() {
        let mut book = OfferBook::default();
        book.record(offer(3, &[30], 9.0));
        assert!(book.rider_offline(RiderId(3)).is_some());
        assert!(!book.is_held(OrderId(30)));
        assert!(book.refused_by(OrderId(30)).is_empty());
        assert!(book.accept(RiderId(3), 1.0).is_err());
    }
}
