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
//! - a write of an answer that cannot go on for [`ConnectionLimits::write_timeout`] (a
//!   client that stops reading) closes the connection;
//! - at most [`ConnectionLimits::max_connections`] are open at once; beyond that the server
//!   stops accepting until one closes, and new clients wait in the kernel's queue. The limit
//!   is kept under the process's file-descriptor limit ([`fit_to_open_files`]);
//! - a shutdown waits for busy connections for a grace period, then drops them.
//!
//! Request bodies have their own deadlines, in the router's middleware. One client may still
//! open many connections: a public ledger sits behind a proxy that limits clients one by one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What a server allows its clients' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers, idle keep-alive time included.
    pub header_timeout: Duration,
    /// Longest a write of an answer may be blocked by a client that does not read it.
    pub write_timeout: Duration,
}

/// The default connection limit; lowered to fit a smaller file-descriptor limit (see
/// [`fit_to_open_files`]). A server behind a proxy needs far fewer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The longest header timeout a server may be given, in seconds (an hour).
pub const MAX_HEADER_TIMEOUT_SECS: u64 = 3600;

/// The default write timeout: an answer's next bytes wait at most this long for the client
/// to read the ones before (mirrors fetch entry bundles of megabytes, a bit at a time).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// File descriptors kept for the store, the log and outgoing requests, beside connections.
pub const RESERVED_FILES: u64 = 64;

/// The connection limit that fits under a soft limit of `max_open_files` descriptors (with
/// [`RESERVED_FILES`] kept aside), and whether `wanted` had to be lowered: past it, accepting
/// fails for want of descriptors instead of waiting at the limit. `None` (unknown) keeps it.
pub fn fit_to_open_files(wanted: usize, max_open_files: Option<u64>) -> (usize, bool) {
    let Some(files) = max_open_files else {
        return (wanted, false);
    };
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
    if wanted > room {
        (room, true)
    } else {
        (wanted, false)
    }
}

/// This process's soft limit of open files, from `/proc/self/limits` (Linux); `None` where it
/// cannot be read or is unlimited.
pub fn max_open_files() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_open_files(&text)
}

/// The soft "Max open files" of a `/proc/self/limits` text.
pub fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The default time for a request's headers, in seconds: a phone on a poor network sends its
/// few hundred bytes of headers well within it.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// Counters of the connections a server accepted, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    accepted: AtomicU64,
    header_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
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

    /// Connections closed because the client did not read its answer in time.
    pub fn write_timeouts(&self) -> u64 {
        self.write_timeouts.load(Ordering::Relaxed)
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
             # HELP reman_ledger_connections_write_timeouts_total Connections closed because the client did not read its answer in time.\n\
             # TYPE reman_ledger_connections_write_timeouts_total counter\n\
             reman_ledger_connections_write_timeouts_total {}\n\
             # HELP reman_ledger_connections_at_limit_total Times the server stopped accepting connections because the connection limit was reached.\n\
             # TYPE reman_ledger_connections_at_limit_total counter\n\
             reman_ledger_connections_at_limit_total {}\n",
            self.open(),
            self.accepted(),
            self.header_timeouts(),
            self.write_timeouts(),
            self.at_limit()
        )
    }
}

/// Serves `app` over HTTP/1.1 on `listener` within `limits` until `shutdown` completes; then
/// stops accepting, closes idle connections and lets each busy one finish its answer, for at
/// most `grace`: connections still open then are dropped. It returns once every connection
/// task has ended, so that nothing it served (the ledger) is still held.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let wanted = limits.max_connections.clamp(1, MAX_CONNECTIONS);
    let (max_connections, lowered) = fit_to_open_files(wanted, max_open_files());
    if lowered && wanted != DEFAULT_MAX_CONNECTIONS {
        tracing::warn!(
            wanted,
            max_connections,
            "the connection limit is lowered to fit this process's open-file limit (raise it with ulimit -n)"
        );
    } else if lowered {
        tracing::info!(
            max_connections,
            "the default connection limit is lowered to fit this process's open-file limit"
        );
    }
    let slots = Arc::new(Semaphore::new(max_connections));
    // Connections watch this to start their graceful shutdown.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // At the limit under a flood, or out of file descriptors, the server is there at every
    // accept: say so now and then.
    let mut warned_limit = Warned::default();
    let mut warned_accept = Warned::default();
    loop {
        while let Some(ended) = connections.try_join_next() {
            log_panic(ended);
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                stats.at_limit.fetch_add(1, Ordering::Relaxed);
                if warned_limit.due() {
                    tracing::warn!(
                        max_connections,
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
                        if warned_accept.due() {
                            tracing::error!(error = %e, "accepting a connection failed (out of file descriptors? lower --max-connections or raise the limit: ulimit -n)");
                        }
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
        let open = Open::new(stats.clone());
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let io = TokioIo::new(WriteDeadline::new(tcp, limits.write_timeout, stats.clone()));
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let _open = open;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(io, service);
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
                    _open.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "closed a connection whose request headers did not come in time");
                } else {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while let Some(ended) = connections.join_next().await {
            log_panic(ended);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            open = connections.len(),
            "connections still busy after the grace period; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// A connection task that panicked (a bug) is logged: the panic hook alone writes to stderr,
/// not to the server's log.
fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection's task panicked");
    }
}

/// The most connections a server may be told to keep open: far above what a process's file
/// descriptors allow, and within what a semaphore can count.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// A connection counted in [`ConnectionStats::open`] while it lives, however its task ends.
struct Open {
    stats: Arc<ConnectionStats>,
}

impl Open {
    fn new(stats: Arc<ConnectionStats>) -> Open {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open { stats }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a repeated warning was last logged.
#[derive(Default)]
struct Warned(Option<std::time::Instant>);

impl Warned {
    /// Whether to log it now: the first time, then at most every [`WARNING_EVERY`].
    fn due(&mut self) -> bool {
        let due = self.0.is_none_or(|at| at.elapsed() >= WARNING_EVERY);
        if due {
            self.0 = Some(std::time::Instant::now());
        }
        due
    }
}

/// A connection whose writes must make progress: a client that stops reading its answers
/// (one that pipelines requests and reads nothing, or is gone without a word) would otherwise
/// hold its connection, and the server's shutdown, for ever. A write or flush that cannot go
/// on for the limit fails with `TimedOut`, and hyper closes the connection. Reads are left to
/// hyper's header timeout and the router's body deadlines.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Set while a write is blocked: when it must have gone on.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    stats: Arc<ConnectionStats>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration, stats: Arc<ConnectionStats>) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
            stats,
        }
    }

    /// After a blocked write: whether the limit has passed since it first blocked.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client has not read its answer in time",
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write's outcome: progress clears the deadline, a blocked write starts or checks it.
    fn outcome<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Pending => self.poll_stalled(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.outcome(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.outcome(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.outcome(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.outcome(cx, polled)
    }
}

/// How often, at most, the server logs one of its repeated warnings (the connection limit
/// reached, an accept failing).
const WARNING_EVERY: Duration = Duration::from_secs(10);

/// Errors of one incoming connection (it went away before it was accepted), as opposed to the
/// listener's own trouble.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
