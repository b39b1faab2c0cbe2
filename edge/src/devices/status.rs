//! The devices' health as the store reports it to HQ.
//!
//! Why a module of its own: the live stream and `/metrics` tell the people in the store; HQ
//! watches a city of stores and sees only what syncs. So each configured device has one row of
//! the edge-owned, synced `device_status` table, written when its health or its faults change
//! (never on a status poll that found nothing new), and a device removed from the
//! configuration loses its row. The cloud projects the rows into its dashboard.

use flashkart_hw::Health;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::work::ctx::Ctx;

/// What one device's row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub kind: String,
    pub health: &'static str,
    pub reason: String,
    pub faults: String,
}

/// The stored word for a device's health, and why it is not connected.
pub fn health_words(health: &Health) -> (&'static str, String) {
    match health {
        Health::Connecting => ("connecting", String::new()),
        Health::Connected => ("connected", String::new()),
        Health::Disconnected { reason } => ("disconnected", reason.clone()),
        Health::Unhealthy { reason } => ("unhealthy", reason.clone()),
    }
}

fn current(conn: &Connection, device_id: &str) -> Result<Option<Reported>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT kind, health, reason, faults FROM device_status WHERE device_id = ?1",
        )?
        .query_row([device_id], |r| {
            let health: String = r.get(1)?;
            Ok(Reported {
                kind: r.get(0)?,
                health: stored_health(&health),
                reason: r.get(2)?,
                faults: r.get(3)?,
            })
        })
        .optional()?)
}

fn stored_health(word: &str) -> &'static str {
    match word {
        "connected" => "connected",
        "disconnected" => "disconnected",
        "unhealthy" => "unhealthy",
        _ => "connecting",
    }
}

/// Writes `device_id`'s row if `change` makes it differ from what is stored; says whether it
/// wrote. `change` gets the stored row (or a fresh one of `kind`, connecting) to amend.
pub fn record(
    conn: &Connection,
    ctx: &Ctx,
    device_id: &str,
    kind: &str,
    change: impl FnOnce(&mut Reported),
) -> Result<bool, Error> {
    let stored = current(conn, device_id)?;
    let mut next = stored.clone().unwrap_or_else(|| Reported {
        kind: kind.to_owned(),
        health: "connecting",
        reason: String::new(),
        faults: String::new(),
    });
    next.kind = kind.to_owned();
    change(&mut next);
    if stored.as_ref() == Some(&next) {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO device_status (device_id, store_id, kind, health, reason, faults, changed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, health = excluded.health,
            reason = excluded.reason, faults = excluded.faults, changed_at = excluded.changed_at",
    )?
    .execute(params![
        device_id,
        ctx.store_id,
        next.kind,
        next.health,
        next.reason,
        next.faults,
        ctx.at
    ])?;
    Ok(true)
}

/// At start: every configured device gets a row (connecting, until the manager says more),
/// and rows of devices no longer configured are deleted. Says how many rows changed.
pub fn configure(
    conn: &Connection,
    ctx: &Ctx,
    devices: &[(String, String)],
) -> Result<usize, Error> {
    let mut changed = 0;
    for (device_id, kind) in devices {
        if record(conn, ctx, device_id, kind, |row| {
            row.health = "connecting";
            row.reason.clear();
        })? {
            changed += 1;
        }
    }
    let stored: Vec<String> = conn
        .prepare_cached("SELECT device_id FROM device_status")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for device_id in stored {
        if !devices.iter().any(|(id, _)| *id == device_id) {
            conn.prepare_cached("DELETE FROM device_status WHERE device_id = ?1")?
                .execute([&device_id])?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use flashkart_sync::schema::store::MIGRATIONS;
    use flashkart_sync::{StoreConfig, StoreDb};

    use super::*;

    async fn db() -> (tempfile::TempDir, StoreDb) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path().join("store.db"));
        config.extension_dir = Some(dir.path().join("ext"));
        let db = StoreDb::open(config, MIGRATIONS).await.unwrap();
        (dir, db)
    }

    fn rows(conn: &Connection) -> Vec<(String, String, String, String, String)> {
        conn.prepare(
            "SELECT device_id, kind, health, reason, faults FROM device_status ORDER BY device_id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[tokio::test]
    async fn a_row_is_written_only_when_something_changed_and_removed_devices_go() {
        let (_dir, db) = db().await;
        let written = db
            .write(|conn| {
                let ctx = Ctx::new("s1", "devices");
                let configured = [
                    ("printer-1".to_owned(), "printer".to_owned()),
                    ("scanner-1".to_owned(), "scanner".to_owned()),
                ];
                let first = configure(conn, &ctx, &configured)?;
                let again = configure(conn, &ctx, &configured)?;
                let paper = record(conn, &ctx, "printer-1", "printer", |row| {
                    row.faults = "paper out".into();
                })?;
                let same = record(conn, &ctx, "printer-1", "printer", |row| {
                    row.faults = "paper out".into();
                })?;
                let (health, reason) = health_words(&Health::Disconnected {
                    reason: "port gone".into(),
                });
                let gone = record(conn, &ctx, "scanner-1", "scanner", |row| {
                    row.health = health;
                    row.reason = reason;
                })?;
                Ok::<_, Error>((first, again, paper, same, gone))
            })
            .await
            .unwrap();
        assert_eq!(written, (2, 0, true, false, true));
        let stored = db.read(|conn| Ok::<_, Error>(rows(conn))).await.unwrap();
        assert_eq!(
            stored,
            vec![
                (
                    "printer-1".into(),
                    "printer".into(),
                    "connecting".into(),
                    String::new(),
                    "paper out".into()
                ),
                (
                    "scanner-1".into(),
                    "scanner".into(),
                    "disconnected".into(),
                    "port gone".into(),
                    String::new()
                ),
            ]
        );
        // The scanner leaves the configuration: its row goes; the printer's faults stay.
        let removed = db
            .write(|conn| {
                let ctx = Ctx::new("s1", "devices");
                configure(
                    conn,
                    &ctx,
                    &[("printer-1".to_owned(), "printer".to_owned())],
                )
            })
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let stored = db.read(|conn| Ok::<_, Error>(rows(conn))).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].4, "paper out");
    }
}
