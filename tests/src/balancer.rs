//! A TCP load balancer in front of several cloud instances, as a Kubernetes Service or a cloud
//! load balancer is: each new connection goes to the next instance in turn, and one whose
//! port refuses (a killed instance) is passed over for the next, so a dead instance stops
//! getting traffic as soon as it is dead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Round-robin over `upstreams`, skipping those that refuse.
#[derive(Debug)]
pub struct Balancer {
    pub addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Balancer {
    pub async fn start(upstreams: Vec<SocketAddr>) -> Self {
        assert!(!upstreams.is_empty(), "a balancer needs an upstream");
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("balancer listens");
        let addr = listener.local_addr().expect("balancer address");
        let upstreams = Arc::new(upstreams);
        let next = Arc::new(AtomicUsize::new(0));
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstreams, next) = (upstreams.clone(), next.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for n in 0..upstreams.len() {
                        let upstream = upstreams[(first + n) % upstreams.len()];
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // Every instance refuses: the client's connection closes unanswered.
                });
            }
        });
        Self { addr, accepting }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
