//! Running a browser test file: Node's test runner drives Debian's chromium through
//! playwright-core (`tests/browser/*.test.mjs`), with the harness's addresses and fixture in
//! its environment. Shared by the tablet's and the dashboard's harnesses, which differ only in
//! what they start and what they hand the page test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The workspace's root (the browser tests and `docs/screenshots` are found from it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Runs `tests/browser/<file>` with `env` besides the browser's own variables (`CHROMIUM`,
/// `TOOLS_DIR`, `SCREENSHOTS` = docs/screenshots, `FAILURE_SHOTS` = target/browser-failures),
/// prints its report and fails the calling test if any browser test failed or it took longer
/// than `within`.
pub async fn run_browser_tests(file: &str, env: &[(&str, String)], within: Duration) {
    let chromium = PathBuf::from("/usr/bin/chromium");
    let tools = workspace().join("target/test-tools");
    assert!(
        chromium.exists() && tools.join("node_modules/playwright-core").exists(),
        "the browser tests need Debian's chromium and playwright-core: run scripts/install-test-deps"
    );
    let screenshots = workspace().join("docs/screenshots");
    std::fs::create_dir_all(&screenshots).expect("screenshots dir");
    let failures = workspace().join("target/browser-failures");
    std::fs::create_dir_all(&failures).expect("failure screenshots dir");

    let mut command = tokio::process::Command::new("node");
    command
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("--test-concurrency=1")
        .arg(format!("tests/browser/{file}"))
        .current_dir(workspace())
        .env("SCREENSHOTS", &screenshots)
        .env("FAILURE_SHOTS", &failures)
        .env("TOOLS_DIR", &tools)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("the browser tests of {file} did not finish within {within:?}"))
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the browser tests of {file} failed ({}); the screens of failed tests are in {}",
        output.status,
        failures.display()
    );
}
