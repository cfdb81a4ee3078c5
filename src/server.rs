//! Accepting HTTP connections: the limits every server of this crate (the ledger, a mirror, a
//! witness) puts on its clients before a request reaches the router.
//!
//! A public ledger is reached by phones on slow networks and by anyone else. Without limits a
//! client can hold a connection open forever by sending its request headers a byte at a time,
//! or by never sending a second request on a keep-alive connection ("slowloris"); enough of
//! them exhaust the process's file descriptors and nobody else is served. So:
//! - a connection gets [`ConnectionLimits::header_timeout`] to send each request's headers,
//!   counted from when the server starts waiting for them (after accepting, and after each
//!   answer on a keep-alive connection): the same timer closes idle connections;
//! - at most [`ConnectionLimits::max_connections`] are open at once; beyond that the server
//!   stops accepting until one closes, and new clients wait in the kernel's queue.
//!
//! Request bodies and answers have their own deadlines, in the router's middleware.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// What a server allows its clients' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers, idle keep-alive time included.
    pub header_timeout: Duration,
}

/// The default connection limit: under a process's usual file-descriptor limit (1,024 soft
/// on many systems) with room for the store's files only where that limit is raised, as it is
/// for services; a server behind a proxy needs far fewer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default time for a request's headers, in seconds: a phone on a poor network sends its
/// few hundred bytes of headers well within it.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
        }
    }
}

/// Counters of the connections a server accepted, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    accepted: AtomicU64,
    header_timeouts: AtomicU64,
    at_limit: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed because their request headers did not come in time.
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }

    /// Times the server stopped accepting because the connection limit was reached.
    pub fn at_limit(&self) -> u64 {
        self.at_limit.load(Ordering::Relaxed)
    }

    /// The counters in the Prometheus text format, each line ending in a newline.
    pub fn prometheus(&self) -> String {
        format!(
            "# HELP reman_ledger_connections_open HTTP connections open now.\n\
             # TYPE reman_ledger_connections_open gauge\n\
             reman_ledger_connections_open {}\n\
             # HELP reman_ledger_connections_accepted_total HTTP connections accepted since start.\n\
             # TYPE reman_ledger_connections_accepted_total counter\n\
             reman_ledger_connections_accepted_total {}\n\
             # HELP reman_ledger_connections_header_timeouts_total Connections closed because a request's headers did not arrive in time (slow or idle clients).\n\
             # TYPE reman_ledger_connections_header_timeouts_total counter\n\
             reman_ledger_connections_header_timeouts_total {}\n\
             # HELP reman_ledger_connections_at_limit_total Times the server stopped accepting connections because the connection limit was reached.\n\
             # TYPE reman_ledger_connections_at_limit_total counter\n\
             reman_ledger_connections_at_limit_total {}\n",
            self.open(),
            self.accepted(),
            self.header_timeouts(),
            self.at_limit()
        )
    }
}

/// Serves `app` over HTTP/1.1 on `listener` within `limits` until `shutdown` completes; then
/// stops accepting, closes idle connections, lets each busy one finish its answer and returns
/// once every connection is closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections watch this to start their graceful shutdown; the server waits until every
    // receiver is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    // At the limit under a flood, the server is there at every accept: say so now and then.
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                stats.at_limit.fetch_add(1, Ordering::Relaxed);
                if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                    warned = Some(std::time::Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; accepting again when one closes (see reman_ledger_connections_at_limit_total)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors, most likely: wait instead of spinning.
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers on keep-alive connections: do not let Nagle's algorithm delay them.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let service = TowerToHyperService::new(app.clone());
        let stats = stats.clone();
        let mut stop = stop_rx.clone();
        let timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { drop(stop.wait_for(|stop| *stop).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "closed a connection whose request headers did not come in time");
                } else {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// How often, at most, the server logs that it is at its connection limit.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Errors of one incoming connection (it went away before it was accepted), as opposed to the
/// listener's own trouble.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
