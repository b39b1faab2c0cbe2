//! A TCP relay in front of a real server, for staging outages without losing the server's
//! state: [`Relay::down`] closes the relay's port (new connections are refused) and cuts every
//! open connection; [`Relay::up`] opens the same port again. Used in front of localstripe and
//! in front of the cloud (a store losing its link).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP relay that can close its port and open the same one again.
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    shared: Arc<RelayShared>,
    accepting: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct RelayShared {
    upstream: Mutex<SocketAddr>,
    connections: Mutex<Vec<AbortHandle>>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(RelayShared {
            upstream: Mutex::new(upstream),
            connections: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Self {
            addr,
            shared,
            accepting: tokio::sync::Mutex::new(Some(task)),
        }
    }

    pub fn point_to(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = upstream;
    }

    pub async fn down(&self) {
        if let Some(task) = self.accepting.lock().await.take() {
            task.abort();
            // The listener is closed when the task is gone, not when abort() returns.
            let _ = task.await;
        }
        let connections = std::mem::take(
            &mut *self
                .shared
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for connection in connections {
            connection.abort();
        }
    }

    pub async fn up(&self) {
        let mut accepting = self.accepting.lock().await;
        if accepting.is_none() {
            let listener = bind(self.addr);
            *accepting = Some(tokio::spawn(accept(listener, self.shared.clone())));
        }
    }
}

/// A listener with SO_REUSEADDR, so that the relay's port can be opened again at once
/// although connections it cut linger in TIME_WAIT.
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("relay socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("binding the relay on {addr}: {e}"));
    socket.listen(128).expect("relay listen")
}

async fn accept(listener: TcpListener, shared: Arc<RelayShared>) {
    while let Ok((mut client, _)) = listener.accept().await {
        let upstream = *shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let task = tokio::spawn(async move {
            // Upstream down (mid-restart): the client's connection closes unanswered.
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        let mut connections = shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}
