//! Staff, PINs and sessions: who may do what at this store.
//!
//! Staff and their PIN hashes (argon2id) live only in the store database, in plain local
//! tables that never replicate. Signing in with a PIN gives a bearer token; the database keeps
//! only its SHA-256, so a copy of the database signs nobody in. Roles are ordered: a lead can
//! do what a picker can, a manager what a lead can.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::lockout::MAX_PIN_LEN;
use crate::work::ctx::{hours_from_now, now};

/// What a member of staff may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Picker,
    Lead,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Picker => "picker",
            Self::Lead => "lead",
            Self::Manager => "manager",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "picker" => Ok(Self::Picker),
            "lead" => Ok(Self::Lead),
            "manager" => Ok(Self::Manager),
            other => Err(Error::Invalid(format!("unknown role `{other}`"))),
        }
    }
}

/// A signed-in member of staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub staff_id: String,
    pub name: String,
    pub role: Role,
    pub expires_at: String,
}

impl Session {
    /// Refuses unless this session's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{} is a {}; this needs a {} or above",
                self.staff_id,
                self.role.as_str(),
                role.as_str()
            )))
        }
    }
}

/// A new member of staff.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub pin: String,
}

/// Hashes a PIN of `min_len` to [`MAX_PIN_LEN`] digits (slow on purpose: run it off the
/// writer thread).
pub fn hash_pin(pin: &str, min_len: usize) -> Result<String, Error> {
    let min_len = min_len.min(MAX_PIN_LEN);
    if pin.len() < min_len || pin.len() > MAX_PIN_LEN || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "a PIN is {min_len} to {MAX_PIN_LEN} digits"
        )));
    }
    hash_any(pin)
}

fn hash_any(pin: &str) -> Result<String, Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| Error::PinHash(e.to_string()))?;
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::PinHash(e.to_string()))
}

/// Stores a member of staff (the PIN already hashed with [`hash_pin`]).
pub fn upsert(conn: &Connection, staff: &NewStaff, pin_hash: &str) -> Result<(), Error> {
    crate::limits::id("staff id", &staff.id)?;
    crate::limits::text("name", &staff.name, crate::limits::MAX_NAME)?;
    conn.prepare_cached(
        "INSERT INTO staff (id, name, role, pin_hash, active, created_at) VALUES (?1, ?2, ?3, ?4, 1, ?5)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role,
            pin_hash = excluded.pin_hash, active = 1",
    )?
    .execute(params![staff.id, staff.name, staff.role.as_str(), pin_hash, now()])?;
    Ok(())
}

/// A member of staff as the manager's list shows them (never the PIN's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub active: bool,
}

/// Every member of staff, by name.
pub fn list(conn: &Connection) -> Result<Vec<Member>, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, role, active FROM staff ORDER BY name, id")?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, bool>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, name, role, active)| {
            Ok(Member {
                id,
                name,
                role: Role::parse(&role)?,
                active,
            })
        })
        .collect()
}

/// Replaces a member's PIN (already hashed) and ends their sessions: a PIN is reset because it
/// is forgotten or known to someone else, and in the second case their tablets must sign in
/// again. Returns the ended sessions' token hashes, for the caller's cache.
pub fn set_pin(conn: &Connection, staff_id: &str, pin_hash: &str) -> Result<Vec<String>, Error> {
    let changed = conn
        .prepare_cached("UPDATE staff SET pin_hash = ?2 WHERE id = ?1")?
        .execute(params![staff_id, pin_hash])?;
    if changed == 0 {
        return Err(Error::not_found("staff member", staff_id));
    }
    Ok(conn
        .prepare_cached("DELETE FROM staff_sessions WHERE staff_id = ?1 RETURNING token_sha256")?
        .query_map([staff_id], |row| row.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Ends one session (sign-out). Ending an unknown session is not an error: the caller is
/// signed out either way.
pub fn end_session(conn: &Connection, token_hash: &str) -> Result<(), Error> {
    conn.prepare_cached("DELETE FROM staff_sessions WHERE token_sha256 = ?1")?
        .execute([token_hash])?;
    Ok(())
}

/// How many active staff there are (none on a fresh store: the manager is bootstrapped).
pub fn active_count(conn: &Connection) -> Result<i64, Error> {
    Ok(
        conn.query_row("SELECT count(*) FROM staff WHERE active = 1", [], |row| {
            row.get(0)
        })?,
    )
}

/// Why a PIN check failed. Both answer the caller the same; only the log tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No active member of staff has this id.
    UnknownId,
    WrongPin,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownId => "unknown_id",
            Self::WrongPin => "wrong_pin",
        }
    }
}

/// A hash of a random PIN with the same argon2 parameters as real ones: an unknown id is
/// verified against it so that it costs the same time as a known one and ids cannot be listed
/// by timing.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let pin = format!("{:016}", rand::random::<u64>() % 10_000_000_000_000_000);
        // Hashing fails only if argon2 itself cannot run, and then no real PIN verifies either.
        hash_any(&pin).unwrap_or_default()
    })
}

/// Computes the dummy hash now (start-up) rather than during the first unknown sign-in.
pub fn warm_up() {
    let _ = dummy_hash();
}

thread_local! {
    static VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Argon2 verifications run on this thread (tests check that unknown ids take the same path).
pub fn verifications_on_this_thread() -> u64 {
    VERIFICATIONS.with(std::cell::Cell::get)
}

/// The one argon2 verification every sign-in goes through, known id or not.
fn verify_hash(hash: &str, pin: &str) -> bool {
    VERIFICATIONS.with(|n| n.set(n.get() + 1));
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(pin.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Checks a PIN (on a reader: argon2 is slow on purpose). Returns the member's name and role,
/// or why not: an unknown id runs the same argon2 verification (against a dummy hash) as a
/// wrong PIN.
pub fn check_pin(
    conn: &Connection,
    staff_id: &str,
    pin: &str,
) -> Result<Result<(String, Role), Refusal>, Error> {
    let row: Option<(String, String, String)> = conn
        .prepare_cached("SELECT name, role, pin_hash FROM staff WHERE id = ?1 AND active = 1")?
        .query_row([staff_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((name, role, hash)) = row else {
        verify_hash(dummy_hash(), pin);
        return Ok(Err(Refusal::UnknownId));
    };
    if !verify_hash(&hash, pin) {
        return Ok(Err(Refusal::WrongPin));
    }
    Ok(Ok((name, Role::parse(&role)?)))
}

/// [`check_pin`] with both refusals as one `Unauthorized` error.
pub fn verify_pin(conn: &Connection, staff_id: &str, pin: &str) -> Result<(String, Role), Error> {
    check_pin(conn, staff_id, pin)?.map_err(|_| refused())
}

/// What the caller hears for an unknown id and for a wrong PIN alike.
pub fn refused() -> Error {
    Error::Unauthorized("unknown staff id or wrong PIN".into())
}

/// A fresh bearer token and the hash the database keeps of it.
pub fn new_token() -> (String, String) {
    let token: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hash = token_hash(&token);
    (token, hash)
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores a session for a signed-in member. Expired sessions are deleted, and the member's
/// oldest live sessions beyond `max_per_staff - 1` end (those devices sign in again), so the
/// table stays bounded by staff x `max_per_staff`. Returns the expiry and the token hashes that
/// ended, so the caller drops them from its cache.
pub fn start_session(
    conn: &Connection,
    token_hash: &str,
    staff_id: &str,
    hours: u32,
    max_per_staff: u32,
) -> Result<(String, Vec<String>), Error> {
    let at = now();
    let mut ended: Vec<String> = conn
        .prepare_cached("DELETE FROM staff_sessions WHERE expires_at <= ?1 RETURNING token_sha256")?
        .query_map([&at], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let keep = i64::from(max_per_staff.max(1)) - 1;
    let oldest: Vec<String> = conn
        .prepare_cached(
            "DELETE FROM staff_sessions WHERE token_sha256 IN (
                SELECT token_sha256 FROM staff_sessions WHERE staff_id = ?1
                ORDER BY created_at DESC, token_sha256 LIMIT -1 OFFSET ?2)
             RETURNING token_sha256",
        )?
        .query_map(params![staff_id, keep], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    ended.extend(oldest);
    let expires_at = hours_from_now(hours);
    conn.prepare_cached(
        "INSERT INTO staff_sessions (token_sha256, staff_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token_hash, staff_id, at, expires_at])?;
    Ok((expires_at, ended))
}

/// The live session a token hash belongs to, if any.
pub fn session(conn: &Connection, token_hash: &str) -> Result<Option<Session>, Error> {
    let row: Option<(String, String, String, String)> = conn
        .prepare_cached(
            "SELECT s.staff_id, st.name, st.role, s.expires_at FROM staff_sessions s
             JOIN staff st ON st.id = s.staff_id AND st.active = 1
             WHERE s.token_sha256 = ?1 AND s.expires_at > ?2",
        )?
        .query_row(params![token_hash, now()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    row.map(|(staff_id, name, role, expires_at)| {
        Ok(Session {
            staff_id,
            name,
            role: Role::parse(&role)?,
            expires_at,
        })
    })
    .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE staff (id TEXT PRIMARY KEY, name TEXT, role TEXT, pin_hash TEXT,
                active INTEGER, created_at TEXT)",
        )
        .expect("staff table");
        let hash = hash_pin("246813", 6).expect("hash");
        upsert(
            &conn,
            &NewStaff {
                id: "lea".into(),
                name: "Lea".into(),
                role: Role::Lead,
                pin: String::new(),
            },
            &hash,
        )
        .expect("lea");
        conn
    }

    #[test]
    fn unknown_ids_run_the_same_argon2_verification_as_wrong_pins() {
        let conn = db();
        let verified = |id: &str, pin: &str| {
            let before = verifications_on_this_thread();
            let result = check_pin(&conn, id, pin).expect("query");
            (
                result.map(|(_, role)| role),
                verifications_on_this_thread() - before,
            )
        };
        assert_eq!(verified("lea", "246813"), (Ok(Role::Lead), 1));
        assert_eq!(verified("lea", "000000"), (Err(Refusal::WrongPin), 1));
        assert_eq!(verified("ghost", "000000"), (Err(Refusal::UnknownId), 1));
        // The dummy hash is a real argon2 hash with the parameters of real ones.
        let dummy = PasswordHash::new(dummy_hash()).expect("a PHC string");
        let real = hash_pin("246813", 6).expect("hash");
        let real = PasswordHash::new(&real).expect("a PHC string");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
        // Both refusals read the same to the caller.
        assert_eq!(
            verify_pin(&conn, "ghost", "0").unwrap_err().to_string(),
            verify_pin(&conn, "lea", "0").unwrap_err().to_string()
        );
    }

    #[test]
    fn pins_are_bounded_by_the_configured_minimum() {
        assert!(hash_pin("1234", 6).is_err());
        assert!(hash_pin("12345a", 6).is_err());
        assert!(hash_pin(&"1".repeat(MAX_PIN_LEN + 1), 6).is_err());
        assert!(hash_pin("1234", 4).is_ok());
    }
}
