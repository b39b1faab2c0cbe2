//! Min-cost assignment of bundles to riders. Each bundle has a sparse list of candidate riders
//! with integer costs and a "leave it for a later tick" cost; the solver finds the assignment
//! of least total cost, using each rider at most once, by successive shortest augmenting paths
//! (Dijkstra with node potentials, stopping at the first free rider as in Jonker-Volgenant).
//! Leaving a bundle is modelled as a private dummy rider only that bundle can take, so every
//! search ends quickly and more bundles than riders (or the reverse) need no special case.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Candidate edges per bundle in compressed rows, plus each bundle's cost of staying
/// unassigned. Costs are non-negative.
#[derive(Debug, Clone, Default)]
pub struct AssignmentProblem {
    riders: usize,
    row_start: Vec<usize>,
    edge_rider: Vec<u32>,
    edge_cost: Vec<i64>,
    leave_cost: Vec<i64>,
}

impl AssignmentProblem {
    pub fn new(riders: usize) -> Self {
        Self {
            riders,
            row_start: vec![0],
            ..Self::default()
        }
    }

    /// Adds the next bundle: its candidate `(rider index, cost)` pairs and its cost of being
    /// left for later. Negative costs are treated as zero.
    pub fn push_bundle(&mut self, candidates: impl IntoIterator<Item = (usize, i64)>, leave: i64) {
        for (rider, cost) in candidates {
            if rider < self.riders {
                // Rider indices fit in u32: a roster is far smaller than 4 billion.
                self.edge_rider.push(rider as u32);
                self.edge_cost.push(cost.max(0));
            }
        }
        self.row_start.push(self.edge_rider.len());
        self.leave_cost.push(leave.max(0));
    }

    pub fn bundles(&self) -> usize {
        self.leave_cost.len()
    }

    /// The least-cost assignment: for each bundle, the rider index it gets, or `None` when
    /// leaving it is cheaper.
    pub fn solve(&self) -> Vec<Option<usize>> {
        Solver::new(self).run()
    }
}

const UNSET: u32 = u32::MAX;

/// Node numbering: bundles `0..n`, riders `n..n+m`, bundle b's dummy `n+m+b`.
struct Solver<'a> {
    problem: &'a AssignmentProblem,
    bundles: usize,
    riders: usize,
    potential: Vec<i64>,
    distance: Vec<i64>,
    /// For a rider/dummy node: the bundle it was reached from.
    reached_from: Vec<u32>,
    done: Vec<bool>,
    /// For a bundle: its matched rider/dummy node and that edge's cost.
    bundle_match: Vec<u32>,
    bundle_match_cost: Vec<i64>,
    /// For a rider/dummy node: its matched bundle.
    rider_match: Vec<u32>,
    touched: Vec<u32>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
}

impl<'a> Solver<'a> {
    fn new(problem: &'a AssignmentProblem) -> Self {
        let bundles = problem.bundles();
        let riders = problem.riders;
        let nodes = bundles + riders + bundles;
        Self {
            problem,
            bundles,
            riders,
            potential: vec![0; nodes],
            distance: vec![i64::MAX; nodes],
            reached_from: vec![UNSET; nodes],
            done: vec![false; nodes],
            bundle_match: vec![UNSET; bundles],
            bundle_match_cost: vec![0; bundles],
            rider_match: vec![UNSET; nodes],
            touched: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn run(mut self) -> Vec<Option<usize>> {
        for bundle in 0..self.bundles {
            self.augment(bundle);
        }
        let first_dummy = self.bundles + self.riders;
        self.bundle_match
            .iter()
            .map(|&node| {
                let node = node as usize;
                (node >= self.bundles && node < first_dummy).then(|| node - self.bundles)
            })
            .collect()
    }

    fn relax(&mut self, node: usize, distance: i64, from: u32) {
        if distance < self.distance[node] {
            if self.distance[node] == i64::MAX {
                self.touched.push(node as u32);
            }
            self.distance[node] = distance;
            self.reached_from[node] = from;
            self.heap.push(Reverse((distance, node as u32)));
        }
    }

    /// Finds the shortest augmenting path from the unmatched `source` bundle to a free
    /// rider (its own dummy is always free, so one exists) and flips it.
    fn augment(&mut self, source: usize) {
        let first_dummy = self.bundles + self.riders;
        self.relax(source, 0, UNSET);
        let mut finish: Option<(usize, i64)> = None;
        while let Some(Reverse((distance, node))) = self.heap.pop() {
            let node = node as usize;
            if self.done[node] || distance > self.distance[node] {
                continue;
            }
            self.done[node] = true;
            if node < self.bundles {
                let bundle = node;
                let here = self.potential[bundle];
                let row = self.problem.row_start[bundle]..self.problem.row_start[bundle + 1];
                for edge in row {
                    let target = self.bundles + self.problem.edge_rider[edge] as usize;
                    if self.bundle_match[bundle] as usize != target && !self.done[target] {
                        let reduced = self.problem.edge_cost[edge] + here - self.potential[target];
                        self.relax(target, distance + reduced.max(0), bundle as u32);
                    }
                }
                let dummy = first_dummy + bundle;
                if self.bundle_match[bundle] as usize != dummy && !self.done[dummy] {
                    let reduced = self.problem.leave_cost[bundle] + here - self.potential[dummy];
                    self.relax(dummy, distance + reduced.max(0), bundle as u32);
                }
            } else {
                match self.rider_match[node] {
                    UNSET => {
                        finish = Some((node, distance));
                        break;
                    }
                    matched => {
                        let bundle = matched as usize;
                        if !self.done[bundle] {
                            // Travelling a matched edge backwards gives its cost back.
                            let reduced = -self.bundle_match_cost[bundle] + self.potential[node]
                                - self.potential[bundle];
                            self.relax(bundle, distance + reduced.max(0), UNSET);
                        }
                    }
                }
            }
        }
        if let Some((sink, total)) = finish {
            // Potentials keep every reduced cost non-negative for the next search.
            for &node in &self.touched {
                let node = node as usize;
                if self.done[node] && self.distance[node] < total {
                    self.potential[node] += self.distance[node] - total;
                }
            }
            let mut rider = sink;
            loop {
                let bundle = self.reached_from[rider] as usize;
                let previous = self.bundle_match[bundle];
                self.bundle_match[bundle] = rider as u32;
                self.bundle_match_cost[bundle] = self.edge_cost(bundle, rider);
                self.rider_match[rider] = bundle as u32;
                if bundle == source {
                    break;
                }
                rider = previous as usize;
            }
        }
        for &node in &self.touched {
            let node = node as usize;
            self.distance[node] = i64::MAX;
            self.done[node] = false;
            self.reached_from[node] = UNSET;
        }
        self.touched.clear();
        self.heap.clear();
    }

    fn edge_cost(&self, bundle: usize, node: usize) -> i64 {
        if node >= self.bundles + self.riders {
            return self.problem.leave_cost[bundle];
        }
        let rider = (node - self.bundles) as u32;
        let row = self.problem.row_start[bundle]..self.problem.row_start[bundle + 1];
        row.filter(|&edge| self.problem.edge_rider[edge] == rider)
            .map(|edge| self.problem.edge_cost[edge])
            .min()
            .unwrap_or(self.problem.leave_cost[bundle])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    type Edges = Vec<Vec<(usize, i64)>>;

    fn total(edges: &Edges, leave: &[i64], assignment: &[Option<usize>]) -> i64 {
        assignment
            .iter()
            .enumerate()
            .map(|(bundle, rider)| match rider {
                Some(rider) => edges[bundle]
                    .iter()
                    .filter(|(r, _)| r == rider)
                    .map(|(_, c)| *c)
                    .min()
                    .unwrap_or(i64::MAX / 4),
                None => leave[bundle],
            })
            .sum()
    }

    fn brute_force(edges: &Edges, leave: &[i64], bundle: usize, used: &mut Vec<bool>) -> i64 {
        if bundle == edges.len() {
            return 0;
        }
        let mut best = leave[bundle] + brute_force(edges, leave, bundle + 1, used);
        for &(rider, cost) in &edges[bundle] {
            if !used[rider] {
                used[rider] = true;
                best = best.min(cost + brute_force(edges, leave, bundle + 1, used));
                used[rider] = false;
            }
        }
        best
    }

    #[test]
    fn optimal_on_small_random_cases_checked_by_brute_force() {
        let mut rng = StdRng::seed_from_u64(42);
        for case in 0..3000 {
            let bundles = rng.random_range(0..7);
            let riders = rng.random_range(0..7);
            let mut edges: Edges = vec![Vec::new(); bundles];
            for row in &mut edges {
                for rider in 0..riders {
                    if rng.random_bool(0.6) {
                        row.push((rider, rng.random_range(0..100)));
                    }
                }
            }
            let leave: Vec<i64> = (0..bundles).map(|_| rng.random_range(0..150)).collect();
            let mut problem = AssignmentProblem::new(riders);
            for (row, &cost) in edges.iter().zip(&leave) {
                problem.push_bundle(row.iter().copied(), cost);
            }
            let assignment = problem.solve();
            let mut used = vec![false; riders];
            for rider in assignment.iter().flatten() {
                assert!(!used[*rider], "case {case}: rider used twice");
                used[*rider] = true;
            }
            let expected = brute_force(&edges, &leave, 0, &mut vec![false; riders]);
            assert_eq!(total(&edges, &leave, &assignment), expected, "case {case}");
        }
    }

    #[test]
    fn not_greedy_when_greedy_is_worse() {
        // Bundle 0 is processed first and would grab rider 0 greedily (1 < 2), but then
        // bundle 1 pays 100; optimal is 0->1 and 1->0 for 2 + 2.
        let mut problem = AssignmentProblem::new(2);
        problem.push_bundle([(0, 1), (1, 2)], 1000);
        problem.push_bundle([(0, 2), (1, 100)], 1000);
        assert_eq!(problem.solve(), vec![Some(1), Some(0)]);
    }

    #[test]
    fn more_bundles_than_riders_leaves_the_cheapest_to_leave() {
        let mut problem = AssignmentProblem::new(1);
        problem.push_bundle([(0, 5)], 50);
        problem.push_bundle([(0, 5)], 500);
        assert_eq!(problem.solve(), vec![None, Some(0)]);
    }
}
