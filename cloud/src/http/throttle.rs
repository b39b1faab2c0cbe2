//! A bound on failed secret checks per client address: a caller whose credentials keep
//! failing is answered 429 without the check being made again, so guessing a secret (a webhook
//! signing key, say) costs the guesser time and the cloud nothing.
//!
//! Failures are counted per key (an IP address, or for customer sign-ins also the e-mail
//! tried) in a fixed window; the map holds at most `MAX_ADDRESSES` entries (a flood of keys
//! clears the oldest windows first), so it is bounded whatever the callers do. Behind a load
//! balancer every caller shares its address and the limit becomes global, which still bounds
//! the guessing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys (addresses, e-mails) tracked at most.
const MAX_ADDRESSES: usize = 10_000;

/// Failures allowed per key (by default a client address) and window.
#[derive(Debug)]
pub struct FailureThrottle<K = IpAddr> {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash> FailureThrottle<K> {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` while `key` has used up its failures in the current window.
    pub fn check(&self, key: K) -> Result<(), u64> {
        let Ok(failures) = self.failures.lock() else {
            return Ok(());
        };
        match failures.get(&key) {
            Some((since, count)) if *count >= self.max_failures => {
                let left = self.window.saturating_sub(since.elapsed());
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs().max(1))
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed check from `key`.
    pub fn failed(&self, key: K) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&key) {
            let window = self.window;
            failures.retain(|_, (since, _)| since.elapsed() < window);
            if failures.len() >= MAX_ADDRESSES {
                failures.clear();
            }
        }
        let entry = failures.entry(key).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_back_after_its_failures_and_others_are_not() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let (guesser, other): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("ip"),
            "192.0.2.2".parse().expect("ip"),
        );
        for _ in 0..3 {
            assert_eq!(throttle.check(guesser), Ok(()));
            throttle.failed(guesser);
        }
        assert!(throttle.check(guesser).is_err());
        assert_eq!(throttle.check(other), Ok(()));
    }

    #[test]
    fn the_window_passes() {
        let throttle = FailureThrottle::new(1, Duration::from_millis(0));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        throttle.failed(ip);
        assert_eq!(throttle.check(ip), Ok(()));
    }
}
