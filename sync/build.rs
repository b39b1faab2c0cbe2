//! Builds cr-sqlite from source and hands the loadable extension to the crate to embed.
//!
//! No crate on crates.io ships cr-sqlite, and its npm package's install script downloads a
//! prebuilt binary, which cannot work on our machines. The npm package does ship the whole C and
//! Rust source with its Makefile, so we fetch it with `npm pack`, apply our small patches from
//! `crsqlite/patches/`, and run its `make loadable` with the machine's stable rustc. The result is
//! cached under the workspace's `target/` keyed by version and patch contents, so a clean build
//! pays for it once; every later build just copies the cached library.

use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const CRSQLITE_VERSION: &str = "0.16.3";
const NPM_PACKAGE: &str = "@vlcn.io/crsqlite";

type BuildResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BuildResult<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let crsqlite_dir = manifest_dir.join("crsqlite");
    let patches = read_patches(&crsqlite_dir.join("patches"))?;
    let bindings = crsqlite_dir.join("sqlite3_capi_bindings.rs");
    println!("cargo:rerun-if-changed={}", crsqlite_dir.display());
    println!("cargo:rerun-if-env-changed=FLASHKART_CRSQLITE_CACHE");

    let key = cache_key(&patches, &bindings)?;
    let cache_root = match env::var_os("FLASHKART_CRSQLITE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir(&manifest_dir).join("crsqlite"),
    };
    let cached = cache_root.join(format!("crsqlite-{CRSQLITE_VERSION}-{key}.so"));
    if !cached.exists() {
        build_extension(&cache_root, &patches, &bindings, &cached)?;
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let embedded = out_dir.join("crsqlite.so");
    fs::copy(&cached, &embedded)?;
    let digest = hex(&Sha256::digest(fs::read(&embedded)?));
    println!("cargo:rustc-env=FLASHKART_CRSQLITE_SHA256={digest}");
    println!("cargo:rustc-env=FLASHKART_CRSQLITE_VERSION={CRSQLITE_VERSION}");
    Ok(())
}

/// A patch file: leading `#` lines say why it exists; the rest is a one-file unified diff.
struct SourcePatch {
    name: String,
    target: String,
    diff: String,
}

fn read_patches(dir: &Path) -> BuildResult<Vec<SourcePatch>> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.retain(|p| p.extension().is_some_and(|e| e == "patch"));
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path)?;
            let diff: String = text
                .lines()
                .skip_while(|l| l.starts_with('#'))
                .skip_while(|l| !l.starts_with("--- "))
                .map(|l| format!("{l}\n"))
                .collect();
            let target = diff
                .lines()
                .find_map(|l| l.strip_prefix("+++ b/"))
                .ok_or_else(|| format!("{}: no `+++ b/` line", path.display()))?
                .to_owned();
            Ok(SourcePatch {
                name: path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
                target,
                diff,
            })
        })
        .collect()
}

fn cache_key(patches: &[SourcePatch], bindings: &Path) -> BuildResult<String> {
    let mut hasher = Sha256::new();
    hasher.update(CRSQLITE_VERSION);
    for patch in patches {
        hasher.update(&patch.name);
        hasher.update(&patch.diff);
    }
    hasher.update(fs::read(bindings)?);
    Ok(hex(&hasher.finalize())[..16].to_owned())
}

/// The workspace's target directory, where the cr-sqlite build is cached across profiles.
fn target_dir(manifest_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out (or with a target triple in between).
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| manifest_dir.join("../target"))
}

fn build_extension(
    cache_root: &Path,
    patches: &[SourcePatch],
    bindings: &Path,
    cached: &Path,
) -> BuildResult<()> {
    fs::create_dir_all(cache_root)?;
    let tarball = cache_root.join(format!("vlcn.io-crsqlite-{CRSQLITE_VERSION}.tgz"));
    if !tarball.exists() {
        fetch_tarball(cache_root, &tarball)?;
    }

    // Build in a private directory and move the result into place at the end, so two build
    // scripts running at once (debug and release) never see a half-written library.
    let work = cache_root.join(format!("build-{}", std::process::id()));
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let decoder = flate2::read::GzDecoder::new(fs::File::open(&tarball)?);
    tar::Archive::new(decoder).unpack(&work)?;
    let source = work.join("package");

    // The rust-toolchain.toml files pin a 2023 nightly that cannot be installed here; the
    // stable toolchain builds the source with RUSTC_BOOTSTRAP=1 once they are gone.
    remove_toolchain_pins(&source.join("rs"))?;
    // The package ships build output from its publisher's machine; build from source only.
    for shipped in ["rs/bundle/target", "rs/bundle_static/target"] {
        let dir = source.join(shipped);
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
    }
    for patch in patches {
        apply_patch(&source, patch)?;
    }

    let status = Command::new("make")
        .arg("loadable")
        .current_dir(&source)
        .env_clear()
        .envs(env::vars().filter(|(k, _)| passes_to_nested_build(k)))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("FLASHKART_CRSQLITE_BINDINGS", fs::canonicalize(bindings)?)
        .status()
        .map_err(|e| format!("running `make loadable` for cr-sqlite: {e}"))?;
    if !status.success() {
        return Err(format!("cr-sqlite `make loadable` failed with {status}").into());
    }
    let built = find_built_library(&source)?;
    let staged = cache_root.join(format!("{}.tmp-{}", file_name(cached), std::process::id()));
    fs::copy(built, &staged)?;
    fs::rename(&staged, cached)?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

fn fetch_tarball(cache_root: &Path, tarball: &Path) -> BuildResult<()> {
    let output = Command::new("npm")
        .args([
            "pack",
            &format!("{NPM_PACKAGE}@{CRSQLITE_VERSION}"),
            "--silent",
        ])
        .current_dir(cache_root)
        .output()
        .map_err(|e| {
            format!("running `npm pack` to fetch cr-sqlite's source (is npm installed?): {e}")
        })?;
    if !output.status.success() {
        return Err(format!(
            "`npm pack {NPM_PACKAGE}@{CRSQLITE_VERSION}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    if !tarball.exists() {
        return Err(format!("npm pack did not produce {}", tarball.display()).into());
    }
    Ok(())
}

/// The nested cargo must not inherit this build's cargo/rustc settings (target dir, jobserver,
/// flags, profile), which belong to FlashKart's build, not cr-sqlite's.
fn passes_to_nested_build(key: &str) -> bool {
    !(key.starts_with("CARGO")
        || key.starts_with("RUSTC")
        || key.starts_with("RUSTFLAGS")
        || key.starts_with("RUSTDOC")
        || key.starts_with("DEP_")
        || key.starts_with("MAKEFLAGS")
        || key.starts_with("MFLAGS")
        || matches!(
            key,
            "OUT_DIR" | "TARGET" | "HOST" | "PROFILE" | "OPT_LEVEL" | "DEBUG" | "NUM_JOBS"
        ))
        || key == "CARGO_HOME"
}

fn remove_toolchain_pins(dir: &Path) -> BuildResult<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_toolchain_pins(&path)?;
        } else if path.file_name().is_some_and(|n| n == "rust-toolchain.toml") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn apply_patch(source: &Path, patch: &SourcePatch) -> BuildResult<()> {
    let path = source.join(&patch.target);
    let original = fs::read_to_string(&path)
        .map_err(|e| format!("patch {}: reading {}: {e}", patch.name, path.display()))?;
    let parsed =
        diffy::Patch::from_str(&patch.diff).map_err(|e| format!("patch {}: {e}", patch.name))?;
    let patched = diffy::apply(&original, &parsed).map_err(|e| {
        format!(
            "patch {} does not apply to {}: {e}",
            patch.name, patch.target
        )
    })?;
    fs::File::create(&path)?.write_all(patched.as_bytes())?;
    Ok(())
}

fn find_built_library(source: &Path) -> BuildResult<PathBuf> {
    let dist = source.join("dist");
    for name in ["crsqlite.so", "crsqlite.dylib", "crsqlite.dll"] {
        let candidate = dist.join(name);
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(format!("cr-sqlite build produced no library in {}", dist.display()).into())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
