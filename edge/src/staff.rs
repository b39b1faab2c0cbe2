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
use crate::ctx::{hours_from_now, now};

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

/// Hashes a PIN (slow on purpose: run it off the writer thread).
pub fn hash_pin(pin: &str) -> Result<String, Error> {
    if pin.len() < 4 || pin.len() > 12 || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid("a PIN is 4 to 12 digits".into()));
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| Error::PinHash(e.to_string()))?;
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::PinHash(e.to_string()))
}

/// Stores a member of staff (the PIN already hashed with [`hash_pin`]).
pub fn upsert(conn: &Connection, staff: &NewStaff, pin_hash: &str) -> Result<(), Error> {
    if staff.id.trim().is_empty() {
        return Err(Error::Invalid("staff need an id".into()));
    }
    conn.prepare_cached(
        "INSERT INTO staff (id, name, role, pin_hash, active, created_at) VALUES (?1, ?2, ?3, ?4, 1, ?5)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role,
            pin_hash = excluded.pin_hash, active = 1",
    )?
    .execute(params![staff.id, staff.name, staff.role.as_str(), pin_hash, now()])?;
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

/// Checks a PIN (on a reader: argon2 is slow on purpose). Returns the member's name and role.
pub fn verify_pin(conn: &Connection, staff_id: &str, pin: &str) -> Result<(String, Role), Error> {
    let refused = || Error::Unauthorized("unknown staff id or wrong PIN".into());
    let row: Option<(String, String, String)> = conn
        .prepare_cached("SELECT name, role, pin_hash FROM staff WHERE id = ?1 AND active = 1")?
        .query_row([staff_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let (name, role, hash) = row.ok_or_else(refused)?;
    let parsed = PasswordHash::new(&hash).map_err(|e| Error::PinHash(e.to_string()))?;
    Argon2::default()
        .verify_password(pin.as_bytes(), &parsed)
        .map_err(|_| refused())?;
    Ok((name, Role::parse(&role)?))
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

/// Stores a session for a signed-in member.
pub fn start_session(
    conn: &Connection,
    token_hash: &str,
    staff_id: &str,
    hours: u32,
) -> Result<String, Error> {
    let expires_at = hours_from_now(hours);
    conn.prepare_cached(
        "INSERT INTO staff_sessions (token_sha256, staff_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token_hash, staff_id, now(), expires_at])?;
    Ok(expires_at)
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
