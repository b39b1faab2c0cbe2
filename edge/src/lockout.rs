//! Sign-in throttling: back-off and lockout per staff account and per client address.
//!
//! A 6-digit PIN is only as strong as the number of guesses an attacker gets, so every sign-in
//! attempt is counted against the account it names (known or not, so that lockouts do not tell
//! which ids exist) and against the client's IP address (so that one device spraying one PIN
//! over many ids is stopped too). After `lock_after` failures in a row the account is locked
//! for `lock_ms`, doubling with every further failure up to `max_lock_ms`; the client the same
//! with `client_lock_after`. While locked every attempt is refused before the PIN is checked,
//! even with the right PIN, until the back-off passes or a manager unlocks.
//!
//! An attempt counts as a failure from the moment it starts and is taken back if the PIN turns
//! out right: concurrent guesses fired before the first answer are counted too, so a burst
//! cannot slip more than `lock_after` guesses past the lock.
//!
//! The state is memory only and bounded: at most `max_accounts` and `max_clients` entries.
//! When a map is full the entry touched longest ago is evicted, unlocked entries first, so an
//! attacker cannot flush a lock out by filling the map with fresh names (they would need
//! locked entries, which the per-client lock makes slow). A restart forgets every lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Sign-in rules (`[sign_in]` in edge.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignInConfig {
    /// Fewest digits a PIN may have when it is set (`FLASHKART_EDGE_MIN_PIN_LEN`); existing
    /// shorter PINs still sign in until they are changed.
    pub min_pin_len: usize,
    /// Failures in a row that lock an account.
    pub lock_after: u32,
    /// Failures from one IP address (over any ids) that lock that client out of signing in.
    pub client_lock_after: u32,
    /// First lock, in milliseconds; each further failure doubles it.
    pub lock_ms: u64,
    /// Longest lock, in milliseconds.
    pub max_lock_ms: u64,
    /// A record with no failure for this long is forgotten (a typo last week counts no more).
    pub forget_after_ms: u64,
    /// Accounts tracked at most (unknown ids included).
    pub max_accounts: usize,
    /// Client addresses tracked at most.
    pub max_clients: usize,
    /// Checked sessions kept in memory at most (the database stays the truth: an evicted one
    /// costs one database read at its next request).
    pub max_cached_sessions: usize,
    /// Live sessions per member of staff; signing in once more ends the oldest (that device
    /// signs in again).
    pub max_sessions_per_staff: u32,
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            min_pin_len: 6,
            lock_after: 5,
            client_lock_after: 20,
            lock_ms: 30_000,
            max_lock_ms: 15 * 60_000,
            forget_after_ms: 15 * 60_000,
            max_accounts: 1024,
            max_clients: 4096,
            max_cached_sessions: 4096,
            max_sessions_per_staff: 10,
        }
    }
}

/// The longest PIN accepted when one is set.
pub const MAX_PIN_LEN: usize = 16;

impl SignInConfig {
    /// Refuses settings that would disable the protection or could not be met.
    pub fn validate(&self) -> Result<(), String> {
        if !(4..=MAX_PIN_LEN).contains(&self.min_pin_len) {
            return Err(format!(
                "sign_in.min_pin_len must be 4..={MAX_PIN_LEN}, not {}",
                self.min_pin_len
            ));
        }
        if self.lock_after == 0 || self.client_lock_after == 0 {
            return Err("sign_in.lock_after and client_lock_after must be at least 1".into());
        }
        if self.max_accounts == 0 || self.max_clients == 0 || self.max_cached_sessions == 0 {
            return Err("sign_in.max_* must be at least 1".into());
        }
        if self.max_sessions_per_staff == 0 {
            return Err("sign_in.max_sessions_per_staff must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a sign-in was refused before the PIN was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    Account { retry_after: Duration },
    Client { retry_after: Duration },
}

impl Locked {
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Account { retry_after } | Self::Client { retry_after } => *retry_after,
        }
    }

    /// The metric label and log reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Account { .. } => "account_locked",
            Self::Client { .. } => "client_locked",
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    locked_until: Option<Instant>,
    touched: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            locked_until: None,
            touched: now,
        }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

/// One bounded map of records.
#[derive(Debug)]
struct Table<K> {
    records: HashMap<K, Record>,
    cap: usize,
    threshold: u32,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(cap: usize, threshold: u32) -> Self {
        Self {
            records: HashMap::new(),
            cap: cap.max(1),
            threshold: threshold.max(1),
        }
    }

    fn locked(&self, key: &K, now: Instant) -> Option<Duration> {
        self.records.get(key).and_then(|r| r.locked(now))
    }

    /// Counts a failure (presumed, until the attempt succeeds); locks at the threshold.
    fn fail(&mut self, key: &K, now: Instant, config: &SignInConfig) {
        if !self.records.contains_key(key) && self.records.len() >= self.cap {
            self.evict(now);
        }
        let forget = Duration::from_millis(config.forget_after_ms);
        let record = self
            .records
            .entry(key.clone())
            .or_insert_with(|| Record::new(now));
        if record.locked(now).is_none() && now.duration_since(record.touched) > forget {
            *record = Record::new(now);
        }
        record.failures = record.failures.saturating_add(1);
        record.touched = now;
        if record.failures >= self.threshold {
            // 1x at the threshold, then 2x, 4x ... per further failure, capped.
            let doublings = (record.failures - self.threshold).min(20);
            let lock = Duration::from_millis(
                config
                    .lock_ms
                    .saturating_mul(1_u64 << doublings)
                    .min(config.max_lock_ms.max(config.lock_ms)),
            );
            record.locked_until = Some(now + lock);
        }
    }

    /// Takes back a presumed failure.
    fn undo(&mut self, key: &K) {
        if let Some(record) = self.records.get_mut(key) {
            record.failures = record.failures.saturating_sub(1);
            if record.failures < self.threshold {
                record.locked_until = None;
            }
        }
    }

    fn clear(&mut self, key: &K) -> bool {
        self.records
            .remove(key)
            .is_some_and(|r| r.locked_until.is_some())
    }

    fn evict(&mut self, now: Instant) {
        let victim = self
            .records
            .iter()
            .min_by_key(|(_, r)| (r.locked(now).is_some(), r.touched))
            .map(|(k, _)| k.clone());
        if let Some(victim) = victim {
            self.records.remove(&victim);
        }
    }

    fn locks(&self, now: Instant) -> Vec<(K, Duration, u32)> {
        self.records
            .iter()
            .filter_map(|(k, r)| r.locked(now).map(|left| (k.clone(), left, r.failures)))
            .collect()
    }
}

/// A lock in force, for the manager's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockInfo {
    /// `account` or `client`.
    pub kind: &'static str,
    /// The staff id or the IP address.
    pub key: String,
    pub failures: u32,
    pub retry_after_secs: u64,
}

/// The throttle shared by every sign-in.
#[derive(Debug)]
pub struct Throttle {
    config: SignInConfig,
    inner: Mutex<(Table<String>, Table<IpAddr>)>,
}

/// An attempt in progress: its presumed failure is taken back with [`Throttle::succeeded`].
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    account: String,
    client: Option<IpAddr>,
}

impl Throttle {
    pub fn new(config: SignInConfig) -> Self {
        let accounts = Table::new(config.max_accounts, config.lock_after);
        let clients = Table::new(config.max_clients, config.client_lock_after);
        Self {
            config,
            inner: Mutex::new((accounts, clients)),
        }
    }

    pub fn config(&self) -> &SignInConfig {
        &self.config
    }

    /// Starts an attempt on `account` from `client`, or refuses it while either is locked.
    pub fn begin(&self, account: &str, client: Option<IpAddr>) -> Result<Attempt, Locked> {
        self.begin_at(account, client, Instant::now())
    }

    /// [`Self::begin`] at a given moment (tests move the clock).
    pub fn begin_at(
        &self,
        account: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Locked> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (accounts, clients) = &mut *guard;
        let account = account.to_owned();
        if let Some(retry_after) = client.and_then(|c| clients.locked(&c, now)) {
            return Err(Locked::Client { retry_after });
        }
        if let Some(retry_after) = accounts.locked(&account, now) {
            return Err(Locked::Account { retry_after });
        }
        accounts.fail(&account, now, &self.config);
        if let Some(client) = client {
            clients.fail(&client, now, &self.config);
        }
        Ok(Attempt { account, client })
    }

    /// The attempt's PIN was right: the account starts afresh, the client's count is taken back.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (accounts, clients) = &mut *guard;
        accounts.clear(&attempt.account);
        if let Some(client) = attempt.client {
            clients.undo(&client);
        }
    }

    /// The attempt turned out not to be a guess (nothing it could have matched): its presumed
    /// failure is taken back from the account and the client, and nothing else changes.
    pub fn not_counted(&self, attempt: Attempt) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (accounts, clients) = &mut *guard;
        accounts.undo(&attempt.account);
        if let Some(client) = attempt.client {
            clients.undo(&client);
        }
    }

    /// Clears an account's failures and lock (a manager's unlock). Returns whether it was locked.
    pub fn unlock_account(&self, account: &str) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.clear(&account.to_owned())
    }

    /// Clears a client address's failures and lock. Returns whether it was locked.
    pub fn unlock_client(&self, client: IpAddr) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.clear(&client)
    }

    /// The locks in force, longest first.
    pub fn locks(&self) -> Vec<LockInfo> {
        let now = Instant::now();
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let info = |kind, key: String, left: Duration, failures| LockInfo {
            kind,
            key,
            failures,
            retry_after_secs: left.as_secs_f64().ceil() as u64,
        };
        let mut locks: Vec<LockInfo> = guard
            .0
            .locks(now)
            .into_iter()
            .map(|(k, left, n)| info("account", k, left, n))
            .chain(
                guard
                    .1
                    .locks(now)
                    .into_iter()
                    .map(|(k, left, n)| info("client", k.to_string(), left, n)),
            )
            .collect();
        locks.sort_by_key(|l| std::cmp::Reverse(l.retry_after_secs));
        locks
    }

    /// Records tracked (accounts, clients): for tests of the bound.
    pub fn tracked(&self) -> (usize, usize) {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0.records.len(), guard.1.records.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config() -> SignInConfig {
        SignInConfig {
            lock_after: 3,
            client_lock_after: 5,
            lock_ms: 1_000,
            max_lock_ms: 4_000,
            max_accounts: 4,
            max_clients: 4,
            ..SignInConfig::default()
        }
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    fn fail(throttle: &Throttle, account: &str, client: Option<IpAddr>) -> Result<(), Locked> {
        // Dropping the attempt without `succeeded` leaves the failure counted.
        throttle.begin(account, client).map(drop)
    }

    /// A clock the tests move by hand.
    struct Clock(Instant);

    impl Clock {
        fn advance(&mut self, by: Duration) {
            self.0 += by;
        }
    }

    fn fail_at(
        throttle: &Throttle,
        account: &str,
        client: Option<IpAddr>,
        clock: &Clock,
    ) -> Result<(), Locked> {
        throttle.begin_at(account, client, clock.0).map(drop)
    }

    #[test]
    fn locks_after_the_threshold_and_backs_off_doubling() {
        let throttle = Throttle::new(config());
        let mut clock = Clock(Instant::now());
        for _ in 0..3 {
            fail_at(&throttle, "manager", None, &clock).expect("not locked yet");
        }
        let locked = throttle
            .begin_at("manager", None, clock.0)
            .expect_err("locked");
        assert_eq!(
            locked,
            Locked::Account {
                retry_after: Duration::from_secs(1)
            }
        );
        clock.advance(Duration::from_millis(1_001));
        // One more failure after the lock passes locks for twice as long.
        fail_at(&throttle, "manager", None, &clock).expect("lock passed");
        let locked = throttle.begin_at("manager", None, clock.0);
        assert_eq!(
            locked.expect_err("locked").retry_after(),
            Duration::from_secs(2)
        );
        clock.advance(Duration::from_millis(2_001));
        fail_at(&throttle, "manager", None, &clock).expect("lock passed");
        clock.advance(Duration::from_millis(4_001));
        fail_at(&throttle, "manager", None, &clock).expect("lock passed");
        // Capped at max_lock_ms.
        let locked = throttle.begin_at("manager", None, clock.0);
        assert_eq!(
            locked.expect_err("locked").retry_after(),
            Duration::from_secs(4)
        );
        // Another account is not affected.
        fail_at(&throttle, "pia", None, &clock).expect("other account");
    }

    #[test]
    fn success_resets_the_account_and_a_manager_unlocks() {
        let throttle = Throttle::new(config());
        fail(&throttle, "lea", None).unwrap();
        fail(&throttle, "lea", None).unwrap();
        throttle.succeeded(throttle.begin("lea", None).unwrap());
        fail(&throttle, "lea", None).unwrap();
        fail(&throttle, "lea", None).unwrap();
        for _ in 0..3 {
            fail(&throttle, "pia", None).unwrap();
        }
        assert!(throttle.begin("pia", None).is_err());
        assert_eq!(throttle.locks().len(), 1);
        assert!(throttle.unlock_account("pia"));
        assert!(throttle.begin("pia", None).is_ok());
        assert!(!throttle.unlock_account("nobody"));
    }

    #[test]
    fn a_client_spraying_ids_is_locked() {
        let throttle = Throttle::new(config());
        for i in 0..5 {
            fail(&throttle, &format!("id-{i}"), IP).unwrap();
        }
        assert!(matches!(
            throttle.begin("id-9", IP),
            Err(Locked::Client { .. })
        ));
        // Others still sign in.
        assert!(throttle.begin("id-9", None).is_ok());
        assert!(throttle.unlock_client(IP.unwrap()));
        assert!(throttle.begin("id-9", IP).is_ok());
    }

    #[test]
    fn maps_are_bounded_and_evict_unlocked_first() {
        let throttle = Throttle::new(config());
        let mut clock = Clock(Instant::now());
        for _ in 0..3 {
            fail_at(&throttle, "manager", None, &clock).unwrap();
        }
        for i in 0..100 {
            clock.advance(Duration::from_millis(1));
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000_u32 + i));
            fail_at(&throttle, &format!("ghost-{i}"), Some(ip), &clock).unwrap();
        }
        assert_eq!(throttle.tracked(), (4, 4));
        // The locked manager survived the flood of fresh ids.
        assert!(throttle.begin_at("manager", None, clock.0).is_err());
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = Throttle::new(SignInConfig {
            forget_after_ms: 10_000,
            ..config()
        });
        let mut clock = Clock(Instant::now());
        fail_at(&throttle, "lea", None, &clock).unwrap();
        fail_at(&throttle, "lea", None, &clock).unwrap();
        clock.advance(Duration::from_secs(11));
        fail_at(&throttle, "lea", None, &clock).unwrap();
        assert!(
            throttle.begin_at("lea", None, clock.0).is_ok(),
            "two old failures were forgotten"
        );
    }
}
