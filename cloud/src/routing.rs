//! Choosing the store for an order.
//!
//! A pure function over what the read model and the registry say right now, so every rule is
//! testable without a database: a store is a candidate when the address is inside its service
//! area and radius, it is open and not paused by HQ, its edge has been heard from within the
//! grace period, and its backlog is under capacity. Among candidates, one store that has every line in stock beats
//! any split or short order (a second bag from another store doubles the delivery); then a
//! store that can still meet its SLA beats one that cannot; then the earliest estimated
//! delivery (preparation behind the backlog plus the ride) wins, which is also the nearest store
//! when backlogs are equal.

/// What routing knows about one store for one order.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub store_id: String,
    pub in_area: bool,
    pub distance_m: f64,
    pub max_radius_m: f64,
    pub open: bool,
    /// HQ paused the store: no new orders, as if it were closed.
    pub paused: bool,
    pub online: bool,
    pub backlog: u32,
    pub capacity: u32,
    pub sla_minutes: u32,
    /// Available pieces for each line, in line order.
    pub available: Vec<i64>,
}

/// Estimation constants (configurable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimates {
    /// Minutes to pick and pack one order with nothing queued.
    pub prep_minutes: f64,
    /// Extra minutes per order already open at the store.
    pub minutes_per_queued_order: f64,
    /// Rider speed.
    pub speed_m_per_min: f64,
}

impl Estimates {
    /// Minutes from now to the door if `candidate` takes the order.
    pub fn eta_minutes(&self, candidate: &Candidate) -> f64 {
        self.prep_minutes
            + self.minutes_per_queued_order * f64::from(candidate.backlog)
            + candidate.distance_m / self.speed_m_per_min.max(1.0)
    }
}

/// The chosen store and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub store_id: String,
    pub eta_minutes: f64,
    pub has_everything: bool,
    pub sla_reachable: bool,
    pub distance_m: f64,
}

/// Why no store was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoStore {
    #[error("the address is outside every store's service area")]
    OutsideAreas,
    #[error("no store serving this address can take an order now ({0})")]
    Unavailable(String),
}

/// Picks the store for an order of `quantities` (one per line).
pub fn choose(
    candidates: &[Candidate],
    quantities: &[i64],
    estimates: &Estimates,
) -> Result<Choice, NoStore> {
    let serving: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.in_area && c.distance_m <= c.max_radius_m)
        .collect();
    if serving.is_empty() {
        return Err(NoStore::OutsideAreas);
    }
    let mut reasons = Vec::new();
    let mut best: Option<(Choice, (bool, bool, u64, i64))> = None;
    for candidate in serving {
        if candidate.paused {
            reasons.push(format!("{} is paused", candidate.store_id));
            continue;
        }
        if !candidate.open {
            reasons.push(format!("{} is closed", candidate.store_id));
            continue;
        }
        if !candidate.online {
            reasons.push(format!("{} is offline", candidate.store_id));
            continue;
        }
        if candidate.backlog >= candidate.capacity {
            reasons.push(format!("{} is at capacity", candidate.store_id));
            continue;
        }
        let lines_in_stock = quantities
            .iter()
            .enumerate()
            .filter(|(i, qty)| candidate.available.get(*i).copied().unwrap_or(0) >= **qty)
            .count();
        let has_everything = lines_in_stock == quantities.len();
        let eta = estimates.eta_minutes(candidate);
        let sla_reachable = eta <= f64::from(candidate.sla_minutes);
        // Higher is better on every component; eta in whole seconds, negated.
        let rank = (
            has_everything,
            sla_reachable,
            lines_in_stock as u64,
            -(eta * 60.0).round() as i64,
        );
        if best.as_ref().is_none_or(|(_, r)| rank > *r) {
            best = Some((
                Choice {
                    store_id: candidate.store_id.clone(),
                    eta_minutes: eta,
                    has_everything,
                    sla_reachable,
                    distance_m: candidate.distance_m,
                },
                rank,
            ));
        }
    }
    best.map(|(choice, _)| choice)
        .ok_or_else(|| NoStore::Unavailable(reasons.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: &str, distance_m: f64, available: Vec<i64>) -> Candidate {
        Candidate {
            store_id: id.into(),
            in_area: true,
            distance_m,
            max_radius_m: 5_000.0,
            open: true,
            paused: false,
            online: true,
            backlog: 0,
            capacity: 10,
            sla_minutes: 30,
            available,
        }
    }

    const EST: Estimates = Estimates {
        prep_minutes: 5.0,
        minutes_per_queued_order: 2.0,
        speed_m_per_min: 250.0,
    };

    #[test]
    fn nearest_store_with_everything_wins() {
        let stores = [
            store("far", 3_000.0, vec![5, 5]),
            store("near", 500.0, vec![5, 5]),
        ];
        let choice = choose(&stores, &[1, 2], &EST).expect("a store");
        assert_eq!(choice.store_id, "near");
        assert!(choice.has_everything && choice.sla_reachable);
    }

    #[test]
    fn a_store_with_everything_beats_a_nearer_one_without() {
        let stores = [
            store("near", 500.0, vec![5, 0]),
            store("far", 3_000.0, vec![5, 5]),
        ];
        assert_eq!(
            choose(&stores, &[1, 2], &EST).map(|c| c.store_id),
            Ok("far".into())
        );
    }

    #[test]
    fn backlog_moves_orders_to_a_store_that_meets_the_sla() {
        let mut busy = store("busy", 500.0, vec![5]);
        busy.backlog = 9;
        busy.sla_minutes = 15;
        let calm = store("calm", 2_000.0, vec![5]);
        let choice = choose(&[busy.clone(), calm], &[1], &EST).expect("a store");
        assert_eq!(choice.store_id, "calm");
        busy.backlog = 10;
        assert!(matches!(
            choose(&[busy], &[1], &EST),
            Err(NoStore::Unavailable(reason)) if reason.contains("capacity")
        ));
    }

    #[test]
    fn outside_every_area_or_radius_is_refused() {
        let mut outside = store("a", 500.0, vec![5]);
        outside.in_area = false;
        let mut too_far = store("b", 9_000.0, vec![5]);
        too_far.max_radius_m = 5_000.0;
        assert_eq!(
            choose(&[outside, too_far], &[1], &EST),
            Err(NoStore::OutsideAreas)
        );
    }

    #[test]
    fn a_paused_store_gets_nothing_and_the_refusal_says_so() {
        let mut paused = store("paused", 100.0, vec![5]);
        paused.paused = true;
        let other = store("other", 4_000.0, vec![5]);
        assert_eq!(
            choose(&[paused.clone(), other], &[1], &EST).map(|c| c.store_id),
            Ok("other".into())
        );
        assert_eq!(
            choose(&[paused], &[1], &EST),
            Err(NoStore::Unavailable("paused is paused".into()))
        );
    }

    #[test]
    fn offline_and_closed_stores_get_nothing() {
        let mut offline = store("offline", 100.0, vec![5]);
        offline.online = false;
        let mut closed = store("closed", 100.0, vec![5]);
        closed.open = false;
        let open = store("open", 4_000.0, vec![0]);
        let choice = choose(&[offline.clone(), closed.clone(), open], &[1], &EST);
        assert_eq!(choice.map(|c| c.store_id), Ok("open".into()));
        assert!(matches!(
            choose(&[offline, closed], &[1], &EST),
            Err(NoStore::Unavailable(_))
        ));
    }
}
