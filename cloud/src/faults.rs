//! Crash points: the crash tests stop the cloud at an exact step (after a payment provider
//! moved money and before the cloud wrote it down, say) to show that a restart finishes the
//! step without doing it twice. A process killed from outside could not be stopped there
//! deterministically.
//!
//! `FLASHKART_CRASH_AT=<point>` makes the process abort (no destructors, no flush, like
//! `kill -9`) when it reaches that point; unset, a crash point costs one comparison. The points
//! are named in the code that passes them (`after-gateway:<operation>`).

use std::sync::OnceLock;

/// Aborts the process if `FLASHKART_CRASH_AT` names this point.
pub fn crash_point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("FLASHKART_CRASH_AT").ok());
    if at.as_deref() == Some(point) {
        tracing::error!(point, "crash point reached (FLASHKART_CRASH_AT): aborting");
        std::process::abort();
    }
}
