//! The stop request: SIGTERM from systemd or Kubernetes, SIGINT from Ctrl-C.

/// Installs the SIGTERM and SIGINT handlers now and returns the wait for either, naming the
/// one that came. Installed before the process starts serving, a signal sent the moment it is
/// ready (a supervisor, a test) is a clean stop, not the default action that kills it.
#[cfg(unix)]
pub fn shutdown_signal()
-> std::io::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Ctrl-C where there is no SIGTERM.
#[cfg(not(unix))]
pub fn shutdown_signal()
-> std::io::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sigterm_to_the_process_is_reported_by_name() {
        let wait = shutdown_signal().expect("handlers install");
        // std has no raise(); kill(1) on our own pid delivers the real signal.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        assert_eq!(wait.await, "SIGTERM");
    }
}
