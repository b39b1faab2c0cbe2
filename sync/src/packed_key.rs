//! cr-sqlite's packed primary keys, read in Rust before anything hands one to the extension.
//!
//! Every change names its row by the primary key packed into one blob
//! (`crsql_pack_columns`). cr-sqlite's own unpacker trusts that blob: an empty one, an integer
//! length above 8 or a truncated value makes it panic, and a panic inside the extension aborts
//! the whole process. So a key that arrives from a peer is decoded here first, with the
//! extension's exact semantics (big-endian, sign-extended lengths and integers), checked
//! against the table's key columns, and accepted only if packing its values again gives the
//! same bytes. What passes is a key cr-sqlite itself would have produced.
//!
//! The format: one byte with the number of columns, then per column a byte whose low 3 bits are
//! the type (1 integer, 2 float, 3 text, 4 blob, 5 null) and whose high 5 bits are the length
//! of the integer that follows (the value for integers, the byte length for text and blobs).

/// One column of a packed key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl KeyValue {
    /// The value as SQLite binds it.
    pub fn to_sql(&self) -> rusqlite::types::Value {
        use rusqlite::types::Value;
        match self {
            Self::Integer(i) => Value::Integer(*i),
            Self::Real(r) => Value::Real(*r),
            Self::Text(t) => Value::Text(t.clone()),
            Self::Blob(b) => Value::Blob(b.clone()),
            Self::Null => Value::Null,
        }
    }
}

/// Why a packed key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty primary key")]
    Empty,
    #[error("primary key ends inside column {column}")]
    Truncated { column: usize },
    #[error("primary key column {column} has unknown type {tag}")]
    UnknownType { column: usize, tag: u8 },
    #[error("primary key column {column} declares a {len}-byte integer (at most 8)")]
    IntegerTooLong { column: usize, len: usize },
    #[error("primary key column {column} has a negative length")]
    NegativeLength { column: usize },
    #[error("primary key column {column} is not UTF-8 text")]
    NotUtf8 { column: usize },
    #[error("{extra} bytes after the primary key's last column")]
    Trailing { extra: usize },
    #[error("primary key is not in cr-sqlite's canonical packing")]
    NotCanonical,
}

const INTEGER: u8 = 1;
const FLOAT: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;
const NULL: u8 = 5;

/// Decodes a packed key, refusing anything cr-sqlite would not have produced.
pub fn decode(bytes: &[u8]) -> Result<Vec<KeyValue>, KeyError> {
    let (&count, mut rest) = bytes.split_first().ok_or(KeyError::Empty)?;
    let mut values = Vec::with_capacity(usize::from(count));
    for column in 0..usize::from(count) {
        let (&tag, after) = rest.split_first().ok_or(KeyError::Truncated { column })?;
        rest = after;
        let kind = tag & 0x07;
        let len = usize::from(tag >> 3);
        let mut take = |n: usize| -> Result<&[u8], KeyError> {
            if rest.len() < n {
                return Err(KeyError::Truncated { column });
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let value = match kind {
            INTEGER | TEXT | BLOB if len > 8 => {
                return Err(KeyError::IntegerTooLong { column, len });
            }
            INTEGER => KeyValue::Integer(signed_be(take(len)?)),
            FLOAT => {
                let raw: [u8; 8] = take(8)?
                    .try_into()
                    .map_err(|_| KeyError::Truncated { column })?;
                KeyValue::Real(f64::from_be_bytes(raw))
            }
            TEXT | BLOB => {
                let n = usize::try_from(signed_be(take(len)?))
                    .map_err(|_| KeyError::NegativeLength { column })?;
                let data = take(n)?.to_vec();
                if kind == TEXT {
                    KeyValue::Text(
                        String::from_utf8(data).map_err(|_| KeyError::NotUtf8 { column })?,
                    )
                } else {
                    KeyValue::Blob(data)
                }
            }
            NULL => KeyValue::Null,
            tag => return Err(KeyError::UnknownType { column, tag }),
        };
        values.push(value);
    }
    if !rest.is_empty() {
        return Err(KeyError::Trailing { extra: rest.len() });
    }
    if encode(&values).as_deref() != Some(bytes) {
        return Err(KeyError::NotCanonical);
    }
    Ok(values)
}

/// Packs values as `crsql_pack_columns` does; `None` for more than 255 columns or a value
/// longer than cr-sqlite can describe.
pub fn encode(values: &[KeyValue]) -> Option<Vec<u8>> {
    let mut out = vec![u8::try_from(values.len()).ok()?];
    for value in values {
        match value {
            KeyValue::Integer(i) => {
                let n = bytes_needed(*i);
                out.push(n << 3 | INTEGER);
                out.extend_from_slice(&i.to_be_bytes()[8 - usize::from(n)..]);
            }
            KeyValue::Real(r) => {
                out.push(FLOAT);
                out.extend_from_slice(&r.to_be_bytes());
            }
            KeyValue::Text(t) => put_bytes(&mut out, TEXT, t.as_bytes())?,
            KeyValue::Blob(b) => put_bytes(&mut out, BLOB, b)?,
            KeyValue::Null => out.push(NULL),
        }
    }
    Some(out)
}

fn put_bytes(out: &mut Vec<u8>, kind: u8, data: &[u8]) -> Option<()> {
    let len = i32::try_from(data.len()).ok()?;
    let n = bytes_needed(i64::from(len));
    out.push(n << 3 | kind);
    out.extend_from_slice(&i64::from(len).to_be_bytes()[8 - usize::from(n)..]);
    out.extend_from_slice(data);
    Some(())
}

/// cr-sqlite's length of an integer: the position of its highest non-zero byte (a negative
/// number always takes 8; zero takes none).
fn bytes_needed(value: i64) -> u8 {
    let bytes = value.to_be_bytes();
    bytes
        .iter()
        .position(|b| *b != 0)
        .map_or(0, |first| u8::try_from(8 - first).unwrap_or(8))
}

/// A big-endian integer of up to 8 bytes, sign-extended from its top bit (what the extension's
/// reader does; an empty slice is 0).
fn signed_be(bytes: &[u8]) -> i64 {
    let Some(&first) = bytes.first() else {
        return 0;
    };
    let mut buf = if first & 0x80 != 0 {
        [0xFF_u8; 8]
    } else {
        [0_u8; 8]
    };
    buf[8 - bytes.len()..].copy_from_slice(bytes);
    i64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_the_extension_documents() {
        // From cr-sqlite's own test: (12, 'str', x'010203').
        let packed = [
            0x03, 0x09, 0x0C, 0x0B, 0x03, b's', b't', b'r', 0x0C, 0x03, 1, 2, 3,
        ];
        assert_eq!(
            decode(&packed),
            Ok(vec![
                KeyValue::Integer(12),
                KeyValue::Text("str".into()),
                KeyValue::Blob(vec![1, 2, 3])
            ])
        );
    }

    #[test]
    fn refuses_what_would_crash_the_extension() {
        assert_eq!(decode(&[]), Err(KeyError::Empty));
        assert_eq!(decode(&[1]), Err(KeyError::Truncated { column: 0 }));
        // An integer declared 9 bytes long (tag 9 << 3 | 1).
        assert!(matches!(
            decode(&[1, 0x49, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(KeyError::IntegerTooLong { .. })
        ));
        // Text whose length byte reads negative.
        assert!(matches!(
            decode(&[1, 0x0B, 0xFF, b'a']),
            Err(KeyError::NegativeLength { .. })
        ));
        assert!(matches!(
            decode(&[1, 0x0B, 0x02, 0xFF, 0xFE]),
            Err(KeyError::NotUtf8 { .. })
        ));
        assert!(matches!(
            decode(&[1, 0x09, 0x01, 0x00]),
            Err(KeyError::Trailing { extra: 1 })
        ));
        // 1 written in two bytes: cr-sqlite writes one.
        assert_eq!(decode(&[1, 0x11, 0x00, 0x01]), Err(KeyError::NotCanonical));
        assert!(matches!(
            decode(&[1, 0x06]),
            Err(KeyError::UnknownType { tag: 6, .. })
        ));
    }

    #[test]
    fn round_trips_values() {
        for value in [
            KeyValue::Integer(0),
            KeyValue::Integer(1),
            KeyValue::Integer(127),
            KeyValue::Integer(-1),
            KeyValue::Integer(i64::MIN),
            KeyValue::Integer(i64::MAX),
            KeyValue::Text(String::new()),
            KeyValue::Text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into()),
            KeyValue::Null,
            KeyValue::Real(1.5),
        ] {
            let packed = encode(std::slice::from_ref(&value)).unwrap_or_default();
            assert_eq!(decode(&packed), Ok(vec![value]));
        }
    }
}
