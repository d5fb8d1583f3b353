//! The HTTP edge: tollgate's own accept loop over hyper, so that slow and huge requests cannot
//! take the process down.
//!
//! - **Header size.** A request head (start line and headers) over [`MAX_HEADER_BYTES`] is
//!   answered `431 Request Header Fields Too Large` by hyper, and the connection closed.
//! - **Header read timeout.** A client has `TOLLGATE_HEADER_TIMEOUT_SECS` (10 s) to send a whole
//!   request head (also between keep-alive requests); then its connection is closed.
//! - **Connection cap.** At most `TOLLGATE_MAX_CONNECTIONS` connections are open (by default the
//!   open-file limit less a reserve, so `accept` never fails for want of descriptors). When a new
//!   connection would go over the cap, the connection that has waited longest for a request head
//!   is closed to make room (slow-loris clients never finish theirs; a connection serving a
//!   request is never closed), and a warning is logged, at most once every ten seconds. With every
//!   connection busy, the new one is closed instead.
//!
//! Each request gets the peer address as axum's `ConnectInfo<SocketAddr>`.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Notify, sync::watch};
use tower::ServiceExt as _;

/// The largest request head accepted (431 above).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// How often the "connection limit reached" warning may be logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One open connection, as the cap sees it.
struct Conn {
    /// Requests being served on it now (0 or 1 on HTTP/1.1).
    busy: AtomicUsize,
    /// Closes it when notified.
    evict: Notify,
}

/// The open connections, oldest first (ids only grow).
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    max: usize,
    started: Instant,
    last_warning: AtomicU64,
}

impl Registry {
    /// Registers a new connection, making room for it if needed; `None` when every open
    /// connection is serving a request (the new one is then closed).
    fn admit(&self) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.conns.lock().expect("connection registry");
        if conns.len() >= self.max {
            self.warn(conns.len());
            let idle = conns
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(conn) = conns.remove(&idle) {
                conn.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        conns.insert(id, conn.clone());
        Some((id, conn))
    }

    fn release(&self, id: u64) {
        self.conns.lock().expect("connection registry").remove(&id);
    }

    fn warn(&self, open: usize) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + WARN_EVERY.as_secs())
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                open,
                max = self.max,
                "connection limit reached (TOLLGATE_MAX_CONNECTIONS): closing the connections \
                 that wait longest for a request"
            );
        }
    }
}

/// Counts a request as in progress on its connection until dropped.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        conns: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
        max: max_connections.max(1),
        started: Instant::now(),
        last_warning: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: make room, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some((id, conn)) = registry.admit() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service_conn = conn.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            service_conn.busy.fetch_add(1, Ordering::AcqRel);
            let busy = Busy(service_conn.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(busy);
                response
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let registry = registry.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    // Dropping the connection closes it.
                    () = conn.evict.notified() => break,
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            registry.release(id);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: this resolves when the last one has finished.
    stop_tx.closed().await;
    Ok(())
}
