//! The connection layer under the router: accepts TCP connections and serves each with hyper's HTTP/1
//! server, so that slow, idle or hostile clients on the LAN cannot exhaust the daemon.
//!
//! - Every connection is tracked in a [`Table`]: when it was accepted, whether a request is in flight,
//!   when it last went idle, when the next request's first byte arrived, whether a response is stuck
//!   because nobody reads it.
//! - One reaper task closes connections past their deadline: a request's line and headers must arrive
//!   within `http.header_timeout_s` (from the accept, or from the first byte of a later request), a
//!   kept-alive connection may sit without a request for `http.idle_timeout_s`, and a response nobody
//!   reads is dropped after the same idle time. A response being streamed (task events over SSE) is a
//!   request in flight, so a silent SSE client is never cut. hyper's own `header_read_timeout` is not used:
//!   it restarts whenever a kept-alive connection goes idle, so it would also close idle connections at
//!   the header timeout. Bodies get their deadline in [`super::intake`].
//! - Connections are capped at `http.max_connections`, lowered to fit the open-file limit. At the cap a new
//!   connection does not wait: the oldest connection that has not completed a request is closed, else the
//!   one idle longest, else the oldest event stream (a browser's EventSource reconnects by itself; without
//!   this, a few hundred open streams would lock every other client out). Only when every connection is
//!   serving an ordinary request is the newcomer refused with 503. The cap being hit is logged, at most
//!   every 10 s.
//! - A request answered before its body was read (401, 413) gets a short lingering close: the write side is
//!   shut and the rest of the body discarded for up to 2 s, so the client reads the answer instead of a
//!   reset.
use axum::Router;
use axum::body::Bytes;
use axum::http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::ServiceExt;

use super::limits::HttpLimits;

/// Descriptors kept free for everything that is not a client connection: the job store, model and data
/// files, blocking threads' reads, the MQTT and journald sockets, lingering closes.
const FD_RESERVE: u64 = 128;
/// Never ask for more than this soft limit, even when the hard limit is "unlimited".
const FD_CEILING: u64 = 1 << 20;
/// hyper's per-connection read and write buffers (and so the largest request head); its default of ~400 KB
/// times a few hundred slow connections would be hundreds of MB on a Pi.
const MAX_BUF: usize = 64 * 1024;
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Pending connections the kernel queues for us. tokio binds with 128: a burst of slow clients fills that
/// in milliseconds and every further SYN, a real client's too, is dropped and retried only a second later.
const BACKLOG: i32 = 1024;

/// Why a connection is closed by the server rather than by its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum CloseReason {
    None = 0,
    HeaderTimeout = 1,
    IdleTimeout = 2,
    /// A response nobody reads for the idle timeout.
    Stalled = 3,
    /// Room for a new connection at the cap.
    Evicted = 4,
    Shutdown = 5,
}

impl CloseReason {
    fn from_u8(v: u8) -> CloseReason {
        match v {
            1 => CloseReason::HeaderTimeout,
            2 => CloseReason::IdleTimeout,
            3 => CloseReason::Stalled,
            4 => CloseReason::Evicted,
            5 => CloseReason::Shutdown,
            _ => CloseReason::None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CloseReason::None => "none",
            CloseReason::HeaderTimeout => "request headers not received within http.header_timeout_s",
            CloseReason::IdleTimeout => "idle for http.idle_timeout_s",
            CloseReason::Stalled => "response unread for http.idle_timeout_s",
            CloseReason::Evicted => "closed to make room at http.max_connections",
            CloseReason::Shutdown => "shutting down",
        }
    }
}

/// One connection's state, shared by its task, its I/O wrapper, its requests and the reaper. Times are
/// milliseconds since the table's epoch plus one, so 0 means "not set".
struct Conn {
    epoch: Instant,
    accepted: u64,
    in_flight: AtomicU32,
    served: AtomicU32,
    idle_since: AtomicU64,
    head_started: AtomicU64,
    write_blocked: AtomicU64,
    /// When the response in flight turned out to be an event stream (0: it is not).
    streaming: AtomicU64,
    lingering: AtomicBool,
    linger_wanted: AtomicBool,
    closing: AtomicBool,
    reason: AtomicU8,
    close: Notify,
}

/// The connection a request arrived on, in the request's extensions (absent for requests the MQTT
/// bridge dispatches into the router).
#[derive(Clone)]
pub struct ConnHandle(Arc<Conn>);

impl ConnHandle {
    /// The answer goes out before the body was read: close gently so the client still reads it.
    pub fn linger(&self) {
        self.0.linger_wanted.store(true, Ordering::Relaxed);
    }
}

/// What the reaper and the cap look at, read from a [`Conn`] at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    accepted: u64,
    in_flight: u32,
    served: u32,
    idle_since: u64,
    head_started: u64,
    write_blocked: u64,
    streaming: u64,
    lingering: bool,
}

impl Conn {
    fn new(epoch: Instant) -> Conn {
        let now = ms_since(epoch);
        Conn {
            epoch,
            accepted: now,
            in_flight: AtomicU32::new(0),
            served: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            streaming: AtomicU64::new(0),
            lingering: AtomicBool::new(false),
            linger_wanted: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            reason: AtomicU8::new(CloseReason::None as u8),
            close: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        ms_since(self.epoch)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            accepted: self.accepted,
            in_flight: self.in_flight.load(Ordering::Acquire),
            served: self.served.load(Ordering::Relaxed),
            idle_since: self.idle_since.load(Ordering::Relaxed),
            head_started: self.head_started.load(Ordering::Relaxed),
            write_blocked: self.write_blocked.load(Ordering::Relaxed),
            streaming: self.streaming.load(Ordering::Relaxed),
            lingering: self.lingering.load(Ordering::Relaxed),
        }
    }

    fn bytes_in(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started.compare_exchange(0, self.now(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn write_blocked(&self, blocked: bool) {
        if blocked {
            let _ = self.write_blocked.compare_exchange(0, self.now(), Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    /// Asks the connection's task to close; false when it was already asked.
    fn close_for(&self, reason: CloseReason) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.reason.store(reason as u8, Ordering::Release);
        self.close.notify_one();
        true
    }

    fn reason(&self) -> CloseReason {
        CloseReason::from_u8(self.reason.load(Ordering::Acquire))
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// The deadline a connection is past at `now`, if any.
fn expired(s: &Snapshot, now: u64, limits: &HttpLimits) -> Option<CloseReason> {
    let (header, idle) = (ms(limits.header_timeout), ms(limits.idle_timeout));
    if s.lingering {
        return None;
    }
    if s.in_flight > 0 {
        return (s.write_blocked != 0 && now.saturating_sub(s.write_blocked) > idle).then_some(CloseReason::Stalled);
    }
    if s.served == 0 {
        // A connection is opened to send a request: its first one gets the header timeout from the accept.
        return (now.saturating_sub(s.accepted) > header).then_some(CloseReason::HeaderTimeout);
    }
    if s.head_started != 0 {
        return (now.saturating_sub(s.head_started) > header).then_some(CloseReason::HeaderTimeout);
    }
    (now.saturating_sub(s.idle_since) > idle).then_some(CloseReason::IdleTimeout)
}

/// Order in which connections give way at the cap (lowest first); None for one serving a request.
fn eviction_rank(s: &Snapshot) -> Option<(u8, u64)> {
    if s.lingering {
        Some((0, s.accepted))
    } else if s.in_flight > 0 {
        (s.streaming != 0).then_some((3, s.streaming))
    } else if s.served == 0 {
        Some((1, s.accepted))
    } else {
        Some((2, s.idle_since))
    }
}

/// Every open connection.
struct Table {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Connections not yet asked to close.
    live: AtomicUsize,
    emptied: Notify,
}

impl Table {
    fn new() -> Table {
        Table {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // The map stays consistent even if a holder panicked: every operation is a single insert/remove.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(self.epoch));
        self.lock().insert(id, conn.clone());
        self.live.fetch_add(1, Ordering::AcqRel);
        (id, conn)
    }

    fn remove(&self, id: u64) {
        let (removed, empty) = {
            let mut map = self.lock();
            let removed = map.remove(&id);
            (removed, map.is_empty())
        };
        if let Some(conn) = removed
            && !conn.closing.swap(true, Ordering::AcqRel)
        {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        if empty {
            self.emptied.notify_waiters();
        }
    }

    fn close(&self, conn: &Conn, reason: CloseReason) {
        if conn.close_for(reason) {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn all(&self) -> Vec<Arc<Conn>> {
        self.lock().values().cloned().collect()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The connection to close for a newcomer at the cap.
    fn victim(&self) -> Option<Arc<Conn>> {
        let map = self.lock();
        map.values()
            .filter(|c| !c.closing.load(Ordering::Acquire))
            .filter_map(|c| eviction_rank(&c.snapshot()).map(|rank| (rank, c)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, c)| c.clone())
    }
}

/// Cap events since the last log line, so a flood gives one line every 10 s, not one per connection.
struct CapLog {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
    fd_exhausted: u64,
}

impl CapLog {
    fn note(&mut self, cap: usize, open: usize) {
        if self.last.is_some_and(|t| t.elapsed() < CAP_LOG_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        tracing::warn!(
            cap,
            open,
            evicted = self.evicted,
            refused = self.refused,
            fd_exhausted = self.fd_exhausted,
            "HTTP connection cap reached: closing the oldest connections that have not completed a request (refusing new ones only when all are busy); a client may be holding connections open (raise http.max_connections if this is legitimate load)"
        );
        self.evicted = 0;
        self.refused = 0;
        self.fd_exhausted = 0;
    }
}

/// Raises the soft open-file limit to the hard one (at most 2^20). Returns (old, new).
#[cfg(unix)]
// rlim_t is 32 bits on some targets (armhf): the u64::from conversions are not useless there.
#[allow(clippy::useless_conversion)]
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = u64::from(lim.rlim_cur);
    let target = u64::from(lim.rlim_max).min(FD_CEILING);
    if target <= old {
        return Ok((old, old));
    }
    lim.rlim_cur = libc::rlim_t::try_from(target).unwrap_or(lim.rlim_max);
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((old, target))
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    Ok((0, 0))
}

/// The current soft open-file limit, if it can be read.
#[cfg(unix)]
#[allow(clippy::useless_conversion)]
pub fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: as in raise_fd_limit.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then(|| u64::from(lim.rlim_cur))
}

#[cfg(not(unix))]
pub fn fd_limit() -> Option<u64> {
    None
}

/// Widens the listener's queue of pending connections (calling listen again only changes the backlog).
#[cfg(unix)]
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen on a socket this listener owns and keeps open for the call.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not widen the listen backlog");
    }
}

#[cfg(not(unix))]
fn widen_backlog(_: &TcpListener) {}

/// The connection cap that fits both the config and the open-file limit.
fn effective_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else { return configured };
    let usable = limit.saturating_sub(FD_RESERVE).max(limit / 2).max(1);
    configured.min(usize::try_from(usable).unwrap_or(usize::MAX))
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets requests in flight
/// finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Arc<HttpLimits>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = effective_cap(limits.max_connections, fd_limit());
    if cap < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            cap,
            fd_limit = fd_limit().unwrap_or(0),
            "http.max_connections lowered to fit the open-file limit (raise LimitNOFILE= or `ulimit -n`)"
        );
    }
    widen_backlog(&listener);
    let table = Arc::new(Table::new());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(MAX_BUF).keep_alive(true);
    let builder = Arc::new(builder);
    let reaper = tokio::spawn(reap(table.clone(), limits.clone()));
    let mut cap_log = CapLog { last: None, evicted: 0, refused: 0, fd_exhausted: 0 };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if table.live() >= cap {
                    match table.victim() {
                        Some(v) => {
                            table.close(&v, CloseReason::Evicted);
                            cap_log.evicted += 1;
                        }
                        None => {
                            cap_log.refused += 1;
                            cap_log.note(cap, table.len());
                            refuse(stream);
                            continue;
                        }
                    }
                    cap_log.note(cap, table.len());
                }
                let (id, conn) = table.insert();
                let (router, builder, table) = (router.clone(), builder.clone(), table.clone());
                tokio::spawn(async move {
                    run(stream, peer, conn, router, &builder).await;
                    table.remove(id);
                });
            }
            Err(e) if is_fd_exhaustion(&e) => {
                // The pending connection stays in the backlog; freeing a descriptor lets the next accept take it.
                cap_log.fd_exhausted += 1;
                cap_log.note(cap, table.len());
                if let Some(v) = table.victim() {
                    table.close(&v, CloseReason::Evicted);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A connection reset or aborted before it was accepted concerns that client only.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                // Anything else may repeat at once: pause rather than spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    for conn in table.all() {
        table.close(&conn, CloseReason::Shutdown);
    }
    loop {
        let emptied = table.emptied.notified();
        if table.len() == 0 {
            break;
        }
        emptied.await;
    }
    reaper.abort();
    Ok(())
}

/// The answer when every connection is serving a request.
fn refuse(stream: TcpStream) {
    const BODY: &str =
        r#"{"error":{"code":"too_many_connections","message":"every HTTP connection is busy (http.max_connections); retry shortly"}}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // A fresh socket's send buffer is empty, so this does not block; if it fails the client just sees a close.
    let _ = stream.try_write(head.as_bytes());
}

async fn reap(table: Arc<Table>, limits: Arc<HttpLimits>) {
    let shortest = limits.header_timeout.min(limits.idle_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = ms_since(table.epoch);
        for conn in table.all() {
            if let Some(reason) = expired(&conn.snapshot(), now, &limits) {
                table.close(&conn, reason);
            }
        }
    }
}

enum Ending {
    Done(hyper::Result<()>),
    Closed(CloseReason),
}

async fn run(stream: TcpStream, peer: SocketAddr, conn: Arc<Conn>, router: Router, builder: &hyper::server::conn::http1::Builder) {
    let io = TokioIo::new(Watched { stream, conn: conn.clone() });
    let mut http = builder.serve_connection(io, ConnService { router, conn: conn.clone(), peer });
    let mut graceful = false;
    let ending = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => break Ending::Done(r),
            _ = conn.close.notified() => match conn.reason() {
                CloseReason::Shutdown => {
                    if !graceful {
                        graceful = true;
                        Pin::new(&mut http).graceful_shutdown();
                    }
                }
                reason => break Ending::Closed(reason),
            },
        }
    };
    match ending {
        Ending::Done(Ok(())) => {
            let stream = http.into_parts().io.into_inner().stream;
            if conn.linger_wanted.load(Ordering::Relaxed) && conn.reason() == CloseReason::None {
                linger(stream, &conn).await;
            }
        }
        Ending::Done(Err(e)) => tracing::debug!(error = %e, "HTTP connection ended with an error"),
        Ending::Closed(reason) => tracing::debug!(reason = reason.as_str(), "HTTP connection closed by the server"),
    }
}

/// Shuts the write side and discards what the client still sends, briefly, before closing: closing with
/// unread data sends a reset that can destroy the answer the client has not read yet.
async fn linger(mut stream: TcpStream, conn: &Conn) {
    conn.lingering.store(true, Ordering::Relaxed);
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 8192];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    tokio::select! {
        _ = drain => {}
        _ = tokio::time::sleep(LINGER) => {}
        _ = conn.close.notified() => {}
    }
}

/// The socket, noting for the reaper when bytes arrive and when a write cannot proceed.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_in();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.conn.write_blocked(r.is_pending());
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.conn.write_blocked(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Marks its connection busy from the moment a request's head is parsed until its response body is done.
struct Busy(Arc<Conn>);

impl Busy {
    fn enter(conn: Arc<Conn>) -> Busy {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.served.fetch_add(1, Ordering::Relaxed);
        conn.head_started.store(0, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.write_blocked.store(0, Ordering::Relaxed);
        self.0.streaming.store(0, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Hands each request to the router with its connection and the client's address (login throttling counts
/// per address) attached.
#[derive(Clone)]
struct ConnService {
    router: Router,
    conn: Arc<Conn>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = Busy::enter(self.conn.clone());
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnHandle(self.conn.clone()));
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let stream =
                resp.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if stream {
                busy.0.streaming.store(busy.0.now(), Ordering::Relaxed);
            }
            Ok(resp.map(|inner| Tracked { inner, _busy: busy }))
        })
    }
}

/// A response body that keeps its connection marked busy until hyper has sent (or dropped) it.
struct Tracked {
    inner: axum::body::Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits::new(Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(30), 256, 32 << 20)
    }

    #[test]
    fn deadlines_per_phase() {
        let l = limits();
        let fresh = Snapshot { accepted: 1, idle_since: 1, ..Default::default() };
        assert_eq!(expired(&fresh, 10_000, &l), None);
        assert_eq!(expired(&fresh, 10_002, &l), Some(CloseReason::HeaderTimeout));
        // A fresh connection dripping bytes gets no extension: the deadline runs from the accept.
        let dripping = Snapshot { head_started: 9_000, ..fresh };
        assert_eq!(expired(&dripping, 10_002, &l), Some(CloseReason::HeaderTimeout));
        // Kept alive after one request: the idle timeout, then the header timeout once a byte arrives.
        let idle = Snapshot { accepted: 1, served: 1, idle_since: 5_000, ..Default::default() };
        assert_eq!(expired(&idle, 30_000, &l), None);
        assert_eq!(expired(&idle, 35_001, &l), Some(CloseReason::IdleTimeout));
        let next_head = Snapshot { head_started: 20_000, ..idle };
        assert_eq!(expired(&next_head, 30_001, &l), Some(CloseReason::HeaderTimeout));
        // A request in flight (an SSE stream) is never idle; only a response nobody reads is cut.
        let busy = Snapshot { in_flight: 1, served: 1, idle_since: 1, ..Default::default() };
        assert_eq!(expired(&busy, 1_000_000, &l), None);
        let stalled = Snapshot { write_blocked: 100, ..busy };
        assert_eq!(expired(&stalled, 30_101, &l), Some(CloseReason::Stalled));
        let lingering = Snapshot { lingering: true, ..fresh };
        assert_eq!(expired(&lingering, 1_000_000, &l), None);
    }

    #[test]
    fn eviction_prefers_lingering_then_oldest_without_a_request_then_longest_idle_then_oldest_stream() {
        let lingering = Snapshot { lingering: true, accepted: 900, ..Default::default() };
        let old_fresh = Snapshot { accepted: 10, ..Default::default() };
        let new_fresh = Snapshot { accepted: 500, ..Default::default() };
        let idle = Snapshot { accepted: 1, served: 3, idle_since: 2, ..Default::default() };
        let busy = Snapshot { accepted: 0, in_flight: 1, ..Default::default() };
        let old_stream = Snapshot { in_flight: 1, served: 1, streaming: 5, ..Default::default() };
        let new_stream = Snapshot { in_flight: 1, served: 1, streaming: 50, ..Default::default() };
        let mut ranked: Vec<_> = [
            ("new stream", new_stream),
            ("idle", idle),
            ("busy", busy),
            ("new", new_fresh),
            ("old stream", old_stream),
            ("lingering", lingering),
            ("old", old_fresh),
        ]
        .into_iter()
        .filter_map(|(n, s)| eviction_rank(&s).map(|r| (r, n)))
        .collect();
        ranked.sort();
        let order: Vec<_> = ranked.into_iter().map(|(_, n)| n).collect();
        assert_eq!(order, ["lingering", "old", "new", "idle", "old stream", "new stream"]);
    }

    #[test]
    fn cap_fits_the_open_file_limit() {
        assert_eq!(effective_cap(256, Some(1_048_576)), 256);
        assert_eq!(effective_cap(4096, Some(1024)), 896);
        assert_eq!(effective_cap(4096, Some(200)), 100);
        assert_eq!(effective_cap(300, None), 300);
    }

    #[test]
    fn table_counts_live_connections_and_picks_victims() {
        let t = Table::new();
        let (a, ca) = t.insert();
        let (_b, cb) = t.insert();
        assert_eq!(t.live(), 2);
        let _busy = Busy::enter(cb.clone());
        let v = t.victim().unwrap();
        assert!(Arc::ptr_eq(&v, &ca), "the busy connection is never the victim");
        t.close(&v, CloseReason::Evicted);
        assert_eq!((t.live(), t.len()), (1, 2));
        assert!(t.victim().is_none(), "one already closing, the other busy");
        t.remove(a);
        assert_eq!((t.live(), t.len()), (1, 1));
    }

    #[cfg(unix)]
    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let (old, new) = raise_fd_limit().unwrap();
        assert!(new >= old);
        assert_eq!(fd_limit(), Some(new));
    }
}
