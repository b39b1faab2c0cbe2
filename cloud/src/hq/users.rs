//! HQ's people: users who sign in to the dashboard with a password, their sessions, and the
//! audit log of what each of them (or the admin token) changed.
//!
//! Why here and not in the registry: these are HQ's own records, like customers and store
//! profiles, and never leave `hq.db`. Passwords are argon2id PHC strings; a session is a random
//! token the browser holds in an HttpOnly cookie (only its SHA-256 is stored) with a CSRF token
//! of its own that every state-changing request must echo in a header. The admin token stays
//! for automation; it is recorded in the audit log as `admin-token`.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::CloudError;
use crate::registry::{hex, token_hash};

use super::{Backend, Hq};

/// What an HQ user may do. Ordered: each role may do everything the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HqRole {
    /// Reads everything, changes nothing.
    Viewer,
    /// Runs the city: store profiles and pauses, catalog, coupons, riders, order cancels.
    Operator,
    /// Also stores' credentials, HQ users and refunds.
    Admin,
}

impl HqRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<Self, CloudError> {
        match text {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            other => Err(CloudError::Corrupt(format!("HQ user role {other:?}"))),
        }
    }
}

/// An HQ user as listed (never the password's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HqUser {
    pub username: String,
    pub name: String,
    pub role: HqRole,
    pub active: bool,
}

/// A signed-in HQ user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HqSession {
    pub username: String,
    pub name: String,
    pub role: HqRole,
    /// Sent back in `X-CSRF-Token` on every request that changes something.
    pub csrf_token: String,
    pub expires_at: String,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: String,
    /// The HQ user's name, or `admin-token`.
    pub actor: String,
    pub role: HqRole,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The `reason` the request gave, if any.
    pub reason: Option<String>,
}

/// An audit entry as stored: at, actor, role, method, path, status, reason.
type AuditRow = (String, String, String, String, String, u16, Option<String>);

/// Most audit entries one listing returns.
pub const MAX_AUDIT_LISTED: u32 = 1_000;

pub(super) const SCHEMA: &str = "
    CREATE TABLE hq_users (
        username TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        -- argon2id PHC string
        password_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE TABLE hq_sessions (
        token_sha256 TEXT PRIMARY KEY NOT NULL,
        username TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE hq_audit (
        id TEXT PRIMARY KEY NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT
    );
    CREATE INDEX hq_audit_by_time ON hq_audit (at);
";

pub(super) const PG_SCHEMA: &str = "
    CREATE TABLE hq_users (
        username TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        active BOOLEAN NOT NULL DEFAULT TRUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE hq_sessions (
        token_sha256 TEXT PRIMARY KEY NOT NULL,
        username TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE hq_audit (
        id TEXT PRIMARY KEY NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status BIGINT NOT NULL,
        reason TEXT
    );
    CREATE INDEX hq_audit_by_time ON hq_audit (at);
";

/// Hashes a password (slow on purpose: call it off the async runtime).
pub fn hash_password(password: &str) -> Result<String, CloudError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CloudError::Task(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| CloudError::Task(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (slow on purpose).
pub(super) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Checked against when the username is unknown, so an unknown name takes as long as a known
/// one and the timing does not tell which names exist (customer sign-ins use it too).
pub(super) static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a password anyone has").unwrap_or_default());

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex(&buffer)
}

impl Hq {
    /// Adds or replaces an HQ user; `password_hash` from [`hash_password`], or `None` to keep
    /// the current one (an existing user only: `Ok(false)` when there is none). A new password
    /// or a deactivation signs the user out everywhere.
    pub async fn put_user(
        &self,
        user: HqUser,
        password_hash: Option<String>,
    ) -> Result<bool, CloudError> {
        let now = crate::clock::now_rfc3339();
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let changed = match &password_hash {
                    Some(hash) => {
                        tx.execute(
                            "INSERT INTO hq_users
                                (username, name, role, password_hash, active, created_at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (username) DO UPDATE SET name = excluded.name,
                               role = excluded.role, password_hash = excluded.password_hash,
                               active = excluded.active",
                            &[
                                &user.username,
                                &user.name,
                                &user.role.as_str(),
                                hash,
                                &user.active,
                                &now,
                            ],
                        )
                        .await?
                    }
                    None => {
                        tx.execute(
                            "UPDATE hq_users SET name = $2, role = $3, active = $4
                             WHERE username = $1",
                            &[
                                &user.username,
                                &user.name,
                                &user.role.as_str(),
                                &user.active,
                            ],
                        )
                        .await?
                    }
                };
                if password_hash.is_some() || !user.active {
                    tx.execute(
                        "DELETE FROM hq_sessions WHERE username = $1",
                        &[&user.username],
                    )
                    .await?;
                }
                tx.commit().await?;
                return Ok(changed > 0);
            }
        };
        let written = db
            .write(move |conn| {
                let changed = match &password_hash {
                    Some(hash) => conn.execute(
                        "INSERT INTO hq_users (username, name, role, password_hash, active, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (username) DO UPDATE SET name = excluded.name,
                           role = excluded.role, password_hash = excluded.password_hash,
                           active = excluded.active",
                        params![user.username, user.name, user.role.as_str(), hash, user.active, now],
                    )?,
                    None => conn.execute(
                        "UPDATE hq_users SET name = ?2, role = ?3, active = ?4 WHERE username = ?1",
                        params![user.username, user.name, user.role.as_str(), user.active],
                    )?,
                };
                // A new password or a deactivation ends the user's sessions.
                if password_hash.is_some() || !user.active {
                    conn.execute(
                        "DELETE FROM hq_sessions WHERE username = ?1",
                        [&user.username],
                    )?;
                }
                Ok::<_, flashkart_sync::Error>(changed)
            })
            .await?;
        Ok(written > 0)
    }

    /// Every HQ user, by username.
    pub async fn users(&self) -> Result<Vec<HqUser>, CloudError> {
        const LIST: &str = "SELECT username, name, role, active FROM hq_users ORDER BY username";
        let rows: Vec<(String, String, String, bool)> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(|conn| {
                    conn.prepare_cached(LIST)?
                        .query_map([], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query(LIST, &[])
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
                .collect(),
        };
        rows.into_iter()
            .map(|(username, name, role, active)| {
                Ok(HqUser {
                    username,
                    name,
                    role: HqRole::parse(&role)?,
                    active,
                })
            })
            .collect()
    }

    /// Checks a password and opens a session lasting `hours`: `Ok(None)` for an unknown or
    /// inactive user or a wrong password (the caller cannot tell which), else the session and
    /// the token for the cookie.
    pub async fn sign_in(
        &self,
        username: &str,
        password: String,
        hours: u32,
    ) -> Result<Option<(String, HqSession)>, CloudError> {
        let lookup = username.to_owned();
        let found: Option<(String, String, String)> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT name, role, password_hash FROM hq_users
                         WHERE username = ?1 AND active = 1",
                    )?
                    .query_row([&lookup], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "SELECT name, role, password_hash FROM hq_users
                     WHERE username = $1 AND active",
                    &[&lookup],
                )
                .await?
                .map(|row| (row.get(0), row.get(1), row.get(2))),
        };
        let hash = found
            .as_ref()
            .map_or_else(|| DUMMY_HASH.clone(), |(_, _, hash)| hash.clone());
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| CloudError::Task(e.to_string()))?;
        let Some((name, role, _)) = found.filter(|_| matches) else {
            return Ok(None);
        };
        let role = HqRole::parse(&role)?;
        let token = random_hex(32);
        let session = HqSession {
            username: username.to_owned(),
            name,
            role,
            csrf_token: random_hex(32),
            expires_at: crate::clock::rfc3339(
                crate::clock::now() + time::Duration::hours(i64::from(hours)),
            ),
        };
        let (hash, stored) = (token_hash(&token), session.clone());
        let now = crate::clock::now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    // Expired sessions go whenever someone signs in: the table stays small.
                    conn.execute("DELETE FROM hq_sessions WHERE expires_at <= ?1", [&now])?;
                    conn.execute(
                        "INSERT INTO hq_sessions
                            (token_sha256, username, csrf_token, created_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            hash,
                            stored.username,
                            stored.csrf_token,
                            now,
                            stored.expires_at
                        ],
                    )?;
                    Ok::<_, flashkart_sync::Error>(())
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                tx.execute("DELETE FROM hq_sessions WHERE expires_at <= $1", &[&now])
                    .await?;
                tx.execute(
                    "INSERT INTO hq_sessions
                        (token_sha256, username, csrf_token, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &hash,
                        &stored.username,
                        &stored.csrf_token,
                        &now,
                        &stored.expires_at,
                    ],
                )
                .await?;
                tx.commit().await?;
            }
        }
        Ok(Some((token, session)))
    }

    /// The live session of a cookie's token, if any (its user still active).
    pub async fn session(&self, token: &str) -> Result<Option<HqSession>, CloudError> {
        let hash = token_hash(token);
        let now = crate::clock::now_rfc3339();
        let row: Option<(String, String, String, String, String)> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT s.username, u.name, u.role, s.csrf_token, s.expires_at
                         FROM hq_sessions s
                         JOIN hq_users u ON u.username = s.username AND u.active = 1
                         WHERE s.token_sha256 = ?1 AND s.expires_at > ?2",
                    )?
                    .query_row(params![hash, now], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "SELECT s.username, u.name, u.role, s.csrf_token, s.expires_at
                     FROM hq_sessions s JOIN hq_users u ON u.username = s.username AND u.active
                     WHERE s.token_sha256 = $1 AND s.expires_at > $2",
                    &[&hash, &now],
                )
                .await?
                .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))),
        };
        row.map(|(username, name, role, csrf_token, expires_at)| {
            Ok(HqSession {
                username,
                name,
                role: HqRole::parse(&role)?,
                csrf_token,
                expires_at,
            })
        })
        .transpose()
    }

    /// Ends a session (sign-out); an unknown token is already signed out.
    pub async fn end_session(&self, token: &str) -> Result<(), CloudError> {
        let hash = token_hash(token);
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute("DELETE FROM hq_sessions WHERE token_sha256 = ?1", [hash])?;
                    Ok::<_, flashkart_sync::Error>(())
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute("DELETE FROM hq_sessions WHERE token_sha256 = $1", &[&hash])
                    .await?;
            }
        }
        Ok(())
    }

    /// Records a change HQ made.
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), CloudError> {
        let id = uuid::Uuid::now_v7().to_string();
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "INSERT INTO hq_audit (id, at, actor, role, method, path, status, reason)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &id,
                            &entry.at,
                            &entry.actor,
                            &entry.role.as_str(),
                            &entry.method,
                            &entry.path,
                            &i64::from(entry.status),
                            &entry.reason,
                        ],
                    )
                    .await?;
                return Ok(());
            }
        };
        db.write(move |conn| {
            conn.execute(
                "INSERT INTO hq_audit (id, at, actor, role, method, path, status, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    entry.at,
                    entry.actor,
                    entry.role.as_str(),
                    entry.method,
                    entry.path,
                    entry.status,
                    entry.reason
                ],
            )?;
            Ok::<_, flashkart_sync::Error>(())
        })
        .await?;
        Ok(())
    }

    /// The latest `limit` recorded changes, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, CloudError> {
        let limit = limit.clamp(1, MAX_AUDIT_LISTED);
        let rows: Vec<AuditRow> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT at, actor, role, method, path, status, reason FROM hq_audit
                     ORDER BY at DESC, id DESC LIMIT ?1",
                    )?
                    .query_map([limit], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query(
                    "SELECT at, actor, role, method, path, status, reason FROM hq_audit
                     ORDER BY at DESC, id DESC LIMIT $1",
                    &[&i64::from(limit)],
                )
                .await?
                .iter()
                .map(|row| {
                    let status: i64 = row.get(5);
                    (
                        row.get(0),
                        row.get(1),
                        row.get(2),
                        row.get(3),
                        row.get(4),
                        u16::try_from(status).unwrap_or(u16::MAX),
                        row.get(6),
                    )
                })
                .collect(),
        };
        rows.into_iter()
            .map(|(at, actor, role, method, path, status, reason)| {
                Ok(AuditEntry {
                    at,
                    actor,
                    role: HqRole::parse(&role)?,
                    method,
                    path,
                    status,
                    reason,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_passwords_verify() {
        assert!(HqRole::Viewer < HqRole::Operator && HqRole::Operator < HqRole::Admin);
        let hash = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a phc string"));
    }
}
