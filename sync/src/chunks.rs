//! Reading one origin's changes in size-bounded chunks, and reassembling whole transactions.
//!
//! cr-sqlite keeps the origin's `db_version` and `seq` on every merged change, so a receiver
//! tracks one position per origin site (a [`Cursor`]) and asks for what follows it. A chunk is
//! cut once it reaches a byte budget, preferably at a transaction boundary; a transaction larger
//! than the budget spans several chunks, and the [`Assembler`] holds its first parts until the
//! last one is there, so a transaction is never applied by halves.

use flashkart_proto::sync::{Change, ChangeBatch, Chunk, Cursor};
use prost::Message;
use rusqlite::{Connection, params};

use crate::changes::{self, to_proto_value};
use crate::{BatchError, Error};

/// A position in one origin's changes: the last change taken. `(0, -1)` is the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub db_version: i64,
    pub seq: i64,
}

impl Position {
    pub const START: Self = Self {
        db_version: 0,
        seq: -1,
    };

    pub fn cursor(self, origin: &[u8; 16]) -> Cursor {
        Cursor {
            origin_site_id: origin.to_vec(),
            db_version: self.db_version,
            seq: self.seq,
        }
    }

    pub fn of(cursor: &Cursor) -> Self {
        Self {
            db_version: cursor.db_version,
            seq: cursor.seq,
        }
    }
}

/// A chunk read by [`read_chunk`], and whether the byte budget cut it short (more may follow
/// at once).
#[derive(Debug, Clone)]
pub struct Read {
    pub chunk: Chunk,
    pub full: bool,
}

/// Reads the changes of `origin` after `after`, up to about `max_bytes` of encoded changes (at
/// least one change). `None` when there is nothing new.
pub fn read_chunk(
    conn: &Connection,
    origin: &[u8; 16],
    after: Position,
    max_bytes: usize,
) -> Result<Option<Read>, Error> {
    let own: Vec<u8> = conn.query_row("SELECT crsql_site_id()", [], |r| r.get(0))?;
    // Two range scans cr-sqlite can push down into its clock tables: the rest of a
    // transaction taken in part, then the transactions after it.
    let rest_of_txn = "SELECT \"table\", pk, cid, val, col_version, db_version, cl, seq
         FROM crsql_changes WHERE site_id = ?1 AND db_version = ?2 AND seq > ?3
         ORDER BY db_version, seq";
    let later = "SELECT \"table\", pk, cid, val, col_version, db_version, cl, seq
         FROM crsql_changes WHERE site_id = ?1 AND db_version > ?2
         ORDER BY db_version, seq";
    let mut chunk = ChunkBuilder::new(after, max_bytes);
    'scans: for (sql, with_seq) in [(rest_of_txn, true), (later, false)] {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = if with_seq {
            stmt.query(params![origin.as_slice(), after.db_version, after.seq])?
        } else {
            stmt.query(params![origin.as_slice(), after.db_version])?
        };
        while let Some(row) = rows.next()? {
            let db_version: i64 = row.get(5)?;
            let seq: i64 = row.get(7)?;
            match chunk.admit(db_version, seq) {
                Admit::Take => chunk.push(Change {
                    table: row.get(0)?,
                    pk: row.get(1)?,
                    cid: row.get(2)?,
                    val: Some(to_proto_value(row.get_ref(3)?)),
                    col_version: row.get(4)?,
                    db_version,
                    site_id: origin.to_vec(),
                    cl: row.get(6)?,
                    seq,
                }),
                Admit::Skip => {}
                Admit::Stop => break 'scans,
            }
        }
    }
    let ChunkBuilder {
        changes,
        last,
        txn_last_seq,
        full,
        ..
    } = chunk;
    if changes.is_empty() {
        return Ok(None);
    }
    let batch = changes::seal(own, after.db_version, last.db_version, changes);
    Ok(Some(Read {
        chunk: Chunk {
            after: Some(after.cursor(origin)),
            batch: Some(batch),
            last_db_version: last.db_version,
            last_seq: last.seq,
            txn_last_seq,
        },
        full,
    }))
}

/// What to do with the next row read.
enum Admit {
    Take,
    Skip,
    Stop,
}

/// Accumulates rows up to the byte budget, then only learns where the cut transaction ends.
struct ChunkBuilder {
    changes: Vec<Change>,
    bytes: usize,
    max_bytes: usize,
    last: Position,
    txn_last_seq: i64,
    cut_in: Option<i64>,
    full: bool,
}

impl ChunkBuilder {
    fn new(after: Position, max_bytes: usize) -> Self {
        Self {
            changes: Vec::new(),
            bytes: 0,
            max_bytes,
            last: after,
            txn_last_seq: after.seq,
            cut_in: None,
            full: false,
        }
    }

    fn admit(&mut self, db_version: i64, seq: i64) -> Admit {
        if let Some(version) = self.cut_in {
            if db_version != version {
                return Admit::Stop;
            }
            self.txn_last_seq = seq;
            return Admit::Skip;
        }
        if self.bytes >= self.max_bytes && !self.changes.is_empty() {
            self.full = true;
            if db_version == self.last.db_version {
                self.cut_in = Some(db_version);
                self.txn_last_seq = seq;
                return Admit::Skip;
            }
            return Admit::Stop;
        }
        Admit::Take
    }

    fn push(&mut self, change: Change) {
        self.bytes += change.encoded_len() + 4;
        self.last = Position {
            db_version: change.db_version,
            seq: change.seq,
        };
        self.txn_last_seq = change.seq;
        self.changes.push(change);
    }
}

/// A chunk that does not fit where the receiver stands.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk continues from {got:?} but the receiver is at {expected:?}")]
    OutOfOrder { expected: Position, got: Position },
    #[error("chunk is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("a transaction being assembled exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

/// Complete transactions of one origin, ready to apply, ending at `last`.
#[derive(Debug, Clone)]
pub struct Complete {
    pub changes: Vec<Change>,
    pub last: Position,
}

impl Complete {
    /// Splits into runs of whole transactions of at most about `max_changes` changes each (a
    /// single bigger transaction stays whole), so a long catch-up is merged in steps that let
    /// the store's own writes in between.
    pub fn split(self, max_changes: usize) -> Vec<Complete> {
        let mut parts = Vec::new();
        let mut current: Vec<Change> = Vec::new();
        for change in self.changes {
            if current.len() >= max_changes.max(1)
                && current
                    .last()
                    .is_some_and(|c| c.db_version != change.db_version)
            {
                parts.push(Self::closed(std::mem::take(&mut current)));
            }
            current.push(change);
        }
        if !current.is_empty() {
            parts.push(Self::closed(current));
        }
        parts
    }

    fn closed(changes: Vec<Change>) -> Complete {
        let last = changes.last().map_or(Position::START, |c| Position {
            db_version: c.db_version,
            seq: c.seq,
        });
        Complete { changes, last }
    }

    /// The changes as a sealed batch from `sender`.
    pub fn batch(&self, sender: &[u8; 16], after: Position) -> ChangeBatch {
        changes::seal(
            sender.to_vec(),
            after.db_version,
            self.last.db_version,
            self.changes.clone(),
        )
    }
}

/// Collects the chunks of one origin in order and hands out whole transactions.
#[derive(Debug)]
pub struct Assembler {
    origin: [u8; 16],
    received: Position,
    pending: Vec<Change>,
    pending_bytes: usize,
    max_pending_bytes: usize,
}

impl Assembler {
    /// Starts at `durable`, the position up to which everything is applied.
    pub fn new(origin: [u8; 16], durable: Position, max_pending_bytes: usize) -> Self {
        Self {
            origin,
            received: durable,
            pending: Vec::new(),
            pending_bytes: 0,
            max_pending_bytes,
        }
    }

    pub fn origin(&self) -> &[u8; 16] {
        &self.origin
    }

    /// Where the next chunk must continue.
    pub fn received(&self) -> Position {
        self.received
    }

    /// Takes `chunk`; returns the transactions it completes, if any. A chunk that does not
    /// continue at [`Assembler::received`] or fails its digest is refused and nothing changes.
    pub fn add(&mut self, chunk: Chunk) -> Result<Option<Complete>, ChunkError> {
        let after = chunk
            .after
            .as_ref()
            .ok_or_else(|| ChunkError::Malformed("no `after` cursor".into()))?;
        if after.origin_site_id != self.origin {
            return Err(ChunkError::Malformed("chunk of another origin".into()));
        }
        let got = Position::of(after);
        if got != self.received {
            return Err(ChunkError::OutOfOrder {
                expected: self.received,
                got,
            });
        }
        let batch = chunk
            .batch
            .ok_or_else(|| ChunkError::Malformed("no batch".into()))?;
        changes::verify(&batch)?;
        let mut previous = self.received;
        let mut added = 0_usize;
        for change in &batch.changes {
            let position = Position {
                db_version: change.db_version,
                seq: change.seq,
            };
            if position <= previous {
                return Err(ChunkError::Malformed("changes out of order".into()));
            }
            if change.site_id != self.origin {
                return Err(ChunkError::Malformed("change of another origin".into()));
            }
            previous = position;
            added += change.encoded_len();
        }
        let last = Position {
            db_version: chunk.last_db_version,
            seq: chunk.last_seq,
        };
        if last != previous {
            return Err(ChunkError::Malformed("last position does not match".into()));
        }
        if self.pending_bytes + added > self.max_pending_bytes {
            return Err(ChunkError::TooLarge {
                limit: self.max_pending_bytes,
            });
        }
        self.pending.extend(batch.changes);
        self.pending_bytes += added;
        self.received = last;
        // Everything before the chunk's last transaction is complete; that transaction too when
        // the chunk says it ends there.
        let split = if chunk.last_seq >= chunk.txn_last_seq {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .position(|c| c.db_version == last.db_version)
                .unwrap_or(self.pending.len())
        };
        if split == 0 {
            return Ok(None);
        }
        let rest = self.pending.split_off(split);
        let changes = std::mem::replace(&mut self.pending, rest);
        self.pending_bytes = self.pending.iter().map(Message::encoded_len).sum();
        Ok(Some(Complete::closed(changes)))
    }
}

#[cfg(test)]
mod tests {
    use flashkart_proto::sync::{Value, value::Kind};

    use super::*;

    fn change(db_version: i64, seq: i64) -> Change {
        Change {
            table: "bins".into(),
            pk: vec![1],
            cid: "aisle".into(),
            val: Some(Value {
                kind: Some(Kind::Integer(seq)),
            }),
            col_version: 1,
            db_version,
            site_id: vec![9; 16],
            cl: 1,
            seq,
        }
    }

    fn chunk(after: Position, changes: Vec<Change>, txn_last_seq: i64) -> Chunk {
        let last = changes.last().map_or(after, |c| Position {
            db_version: c.db_version,
            seq: c.seq,
        });
        Chunk {
            after: Some(after.cursor(&[9; 16])),
            batch: Some(changes::seal(
                vec![1; 16],
                after.db_version,
                last.db_version,
                changes,
            )),
            last_db_version: last.db_version,
            last_seq: last.seq,
            txn_last_seq,
        }
    }

    #[test]
    fn holds_a_split_transaction_until_its_last_chunk() -> Result<(), ChunkError> {
        let mut assembler = Assembler::new([9; 16], Position::START, 1 << 20);
        let first = chunk(
            Position::START,
            vec![change(1, 0), change(2, 0), change(2, 1)],
            3,
        );
        let done = assembler.add(first)?.map(|c| c.changes.len());
        assert_eq!(done, Some(1), "transaction 1 is complete, 2 is not");
        let at = assembler.received();
        assert_eq!(
            at,
            Position {
                db_version: 2,
                seq: 1
            }
        );
        // A chunk that does not continue where the receiver is gets refused.
        let stray = chunk(Position::START, vec![change(1, 0)], 0);
        assert!(matches!(
            assembler.add(stray),
            Err(ChunkError::OutOfOrder { .. })
        ));
        let rest = chunk(at, vec![change(2, 2), change(2, 3)], 3);
        let done = assembler.add(rest)?.map(|c| (c.changes.len(), c.last));
        assert_eq!(
            done,
            Some((
                4,
                Position {
                    db_version: 2,
                    seq: 3
                }
            ))
        );
        Ok(())
    }

    #[test]
    fn splits_at_transaction_boundaries() {
        let complete = Complete::closed(vec![
            change(1, 0),
            change(1, 1),
            change(1, 2),
            change(2, 0),
            change(3, 0),
        ]);
        let sizes: Vec<usize> = complete.split(2).iter().map(|c| c.changes.len()).collect();
        assert_eq!(sizes, vec![3, 2]);
    }
}
