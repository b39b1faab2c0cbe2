//! The cr-sqlite extension, embedded in the binary and loaded into every connection.
//!
//! The build script compiles cr-sqlite from source; the library is embedded here so the edge
//! ships as one file. At start-up it is written once to a cache directory (named by its SHA-256,
//! checked before every use, so a damaged or stale copy is replaced rather than loaded) and
//! loaded with SQLite's extension loader.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::Error;

static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crsqlite.so"));

/// SHA-256 of the embedded library, computed at build time.
pub const SHA256: &str = env!("FLASHKART_CRSQLITE_SHA256");
/// The cr-sqlite release the library was built from.
pub const VERSION: &str = env!("FLASHKART_CRSQLITE_VERSION");
const ENTRY_POINT: &str = "sqlite3_crsqlite_init";

/// Where the library is extracted when the caller names no directory: the user's cache
/// directory, or the system temp directory on machines without a home.
pub fn default_cache_dir() -> PathBuf {
    directories::ProjectDirs::from("io", "flashkart", "flashkart")
        .map(|dirs| dirs.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("flashkart-cache"))
}

/// Writes the embedded library into `dir` unless an identical copy is already there, and
/// returns its path.
pub fn extract(dir: &Path) -> Result<PathBuf, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("crsqlite-{VERSION}-{}.so", &SHA256[..16]));
    if let Ok(existing) = fs::read(&path)
        && hex_sha256(&existing) == SHA256
    {
        return Ok(path);
    }
    // Write beside the target and rename, so a concurrent start never loads a partial file.
    let staged = dir.join(format!(".crsqlite-{}.tmp", uuid::Uuid::now_v7()));
    let mut file = fs::File::create(&staged).map_err(io(&staged))?;
    file.write_all(LIBRARY).map_err(io(&staged))?;
    file.sync_all().map_err(io(&staged))?;
    drop(file);
    fs::rename(&staged, &path).map_err(io(&path))?;
    let written = fs::read(&path).map_err(io(&path))?;
    if hex_sha256(&written) != SHA256 {
        return Err(Error::Extension {
            path,
            message: "extracted library does not match its build-time hash".into(),
        });
    }
    Ok(path)
}

/// Loads cr-sqlite into `conn`; must run before the connection touches any replicated table.
pub fn load(conn: &Connection, library: &Path) -> Result<(), Error> {
    let fail = |e: rusqlite::Error| Error::Extension {
        path: library.to_path_buf(),
        message: e.to_string(),
    };
    // SAFETY: the library is our own cr-sqlite build, verified against its build-time hash by
    // `extract`; extension loading is switched off again right after.
    #[allow(unsafe_code)]
    unsafe {
        conn.load_extension_enable().map_err(fail)?;
        let loaded = conn
            .load_extension(library, Some(ENTRY_POINT))
            .map_err(fail);
        conn.load_extension_disable().map_err(fail)?;
        loaded
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
