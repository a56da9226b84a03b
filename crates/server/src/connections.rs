//! Connections to the head node's one port (API, dashboard and agent gateway), and the limits
//! that keep slow or hostile clients from using them all up.
//!
//! Terms:
//! - A connection is *pending* while it owes the head node a request head: from being accepted
//!   (its TLS handshake included) until its first request head has arrived, and again whenever a
//!   kept-alive connection is idle between requests. A real client is pending for milliseconds;
//!   a slowloris client, which sends a header line now and then, is pending all its life.
//! - The [`Budget`] counts pending connections per [`Source`] (an IPv4 address or an IPv6 /64)
//!   and in all, and open connections in all. When a new or newly idle connection would go over a
//!   limit, the *oldest* pending connection is *evicted* (closed) instead of the new one being
//!   refused: a flood of slow connections only ever pushes out its own oldest members, while a
//!   real client from the same address, whose head follows its connection at once, gets
//!   through. A new connection is refused only when every open connection is busy serving.
//! - Each connection's [`Activity`] gives it a *deadline*, and a watchdog closes the connection
//!   when it passes: the first head must arrive within [`HEAD_TIMEOUT`] of the accept; a
//!   kept-alive connection may idle for [`KEEP_ALIVE_IDLE_TIMEOUT`], then has [`HEAD_TIMEOUT`]
//!   from the next head's first byte; a request body may not pause for [`BODY_STALL_TIMEOUT`]
//!   and must average [`MIN_BODY_RATE`] once it has been waited for [`BODY_GRACE`]; a client must
//!   not leave a response unread for [`WRITE_STALL_TIMEOUT`]. A response itself has no time
//!   limit (server-sent events stream for hours), nor does an upgraded connection (an agent's
//!   WebSocket: the gateway watches its heartbeats).
//!
//! The budget and the deadlines are plain data, changed by plain functions; the async shell
//! below them (the accept loop, one task per connection, and wrappers around the socket and the
//! bodies that report what they see) reads the clock and closes sockets.

use crate::tls::Peer;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How long a new connection has to deliver its first request head, counted from the accept and
/// so including the TLS handshake; and how long a kept-alive connection has to finish a head once
/// its first byte came.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may sit idle between requests.
pub const KEEP_ALIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a request body may pause while the head node waits for it.
pub const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the head node waits for a request body before it must keep up [`MIN_BODY_RATE`].
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// Bytes per second of waiting that a request body must average after [`BODY_GRACE`]: each
/// byte received buys `1 / MIN_BODY_RATE` s more of waiting.
pub const MIN_BODY_RATE: u64 = 1024;
/// How long a client may leave a response unread, the head node unable to write a byte.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pending connections from one source (an IPv4 address, an IPv6 /64).
pub const PENDING_PER_SOURCE: usize = 256;
/// Pending connections from all sources.
pub const PENDING_TOTAL: usize = 2_048;
/// Open connections, at most; fewer where the process may open few files: half its limit.
pub const MAX_OPEN_CONNECTIONS: usize = 16_384;
/// The largest request head (request line and headers); a larger one is answered 431.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// One open connection, numbered in the order they were accepted.
pub type ConnId = u64;

/// Whose connections count together: one IPv4 address, or one IPv6 /64 (what one host or site
/// is usually given, so that a host cannot dodge the limit by using more of its addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Source(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX))))),
            v4 => Source(v4),
        }
    }
}

/// The numbers the [`Budget`] keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub pending_per_source: usize,
    pub pending_total: usize,
    pub open_total: usize,
}

impl Limits {
    /// The limits for a process that may open `fd_limit` files: at most half of them for
    /// connections, the rest left for the database, blobs, logs and child processes.
    pub fn for_fd_limit(fd_limit: u64) -> Limits {
        let half = usize::try_from(fd_limit / 2).unwrap_or(usize::MAX);
        let open_total = MAX_OPEN_CONNECTIONS.min(half).max(16);
        let pending_total = PENDING_TOTAL.min(open_total);
        Limits { pending_per_source: PENDING_PER_SOURCE.min(pending_total), pending_total, open_total }
    }
}

/// What the budget says about a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Serve it, and close these (the oldest pending connections) to make room.
    Admitted { evict: Vec<ConnId> },
    /// Close it: every open connection is busy serving a request.
    Refused,
}

#[derive(Debug)]
struct OpenConn {
    source: Source,
    /// Its place in the pending queues while it is pending.
    turn: Option<u64>,
}

/// Counts open and pending connections, and picks which to evict. See the module docs.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    next_turn: u64,
    open: HashMap<ConnId, OpenConn>,
    /// Pending connections by turn: the first is the one pending longest.
    pending: BTreeMap<u64, ConnId>,
    pending_by_source: HashMap<Source, BTreeMap<u64, ConnId>>,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        assert!(limits.pending_per_source > 0 && limits.pending_total > 0 && limits.open_total > 0, "{limits:?}");
        Budget {
            limits,
            next_turn: 0,
            open: HashMap::new(),
            pending: BTreeMap::new(),
            pending_by_source: HashMap::new(),
        }
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A connection `id` from `source` was just accepted; it starts pending.
    pub fn admit(&mut self, id: ConnId, source: Source) -> Admission {
        debug_assert!(!self.open.contains_key(&id), "connection {id} admitted twice");
        let mut evict = Vec::new();
        if self.open.len() >= self.limits.open_total {
            let Some((_, oldest)) = self.pending.first_key_value() else { return Admission::Refused };
            let oldest = *oldest;
            self.closed(oldest);
            evict.push(oldest);
        }
        self.open.insert(id, OpenConn { source, turn: None });
        evict.extend(self.idle(id));
        Admission::Admitted { evict }
    }

    /// Connection `id` delivered a request head: it is no longer pending.
    pub fn delivered(&mut self, id: ConnId) {
        let Some(turn) = self.open.get_mut(&id).and_then(|c| c.turn.take()) else { return };
        let source = self.open[&id].source;
        self.unqueue(turn, source);
        self.check();
    }

    /// Connection `id` owes a request head again (idle between requests): it queues as the newest
    /// pending connection. Returns the connections to evict to make room for it.
    pub fn idle(&mut self, id: ConnId) -> Vec<ConnId> {
        let Some(conn) = self.open.get(&id) else { return Vec::new() };
        if conn.turn.is_some() {
            return Vec::new();
        }
        let source = conn.source;
        let mut evict = Vec::new();
        while self.pending_by_source.get(&source).map_or(0, BTreeMap::len) >= self.limits.pending_per_source {
            let oldest = *self.pending_by_source[&source].first_key_value().expect("not empty").1;
            self.closed(oldest);
            evict.push(oldest);
        }
        while self.pending.len() >= self.limits.pending_total {
            let oldest = *self.pending.first_key_value().expect("not empty").1;
            self.closed(oldest);
            evict.push(oldest);
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        self.open.get_mut(&id).expect("open").turn = Some(turn);
        self.pending.insert(turn, id);
        self.pending_by_source.entry(source).or_default().insert(turn, id);
        self.check();
        evict
    }

    /// Connection `id` is gone (closed, or evicted); forgetting an unknown one does nothing.
    pub fn closed(&mut self, id: ConnId) {
        if let Some(conn) = self.open.remove(&id)
            && let Some(turn) = conn.turn
        {
            self.unqueue(turn, conn.source);
        }
    }

    fn unqueue(&mut self, turn: u64, source: Source) {
        self.pending.remove(&turn);
        if let Some(queue) = self.pending_by_source.get_mut(&source) {
            queue.remove(&turn);
            if queue.is_empty() {
                self.pending_by_source.remove(&source);
            }
        }
    }

    fn check(&self) {
        debug_assert!(self.open.len() <= self.limits.open_total);
        debug_assert!(self.pending.len() <= self.limits.pending_total);
        debug_assert_eq!(self.pending.len(), self.pending_by_source.values().map(BTreeMap::len).sum::<usize>());
        debug_assert!(
            self.pending_by_source.values().all(|q| !q.is_empty() && q.len() <= self.limits.pending_per_source)
        );
        debug_assert!(self.pending.iter().all(|(turn, id)| self.open.get(id).is_some_and(|c| c.turn == Some(*turn))));
    }
}

/// Why the head node closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A new connection did not deliver its first request head within [`HEAD_TIMEOUT`].
    NoHead,
    /// A kept-alive connection began a request head and did not finish it within [`HEAD_TIMEOUT`].
    SlowHead,
    /// A kept-alive connection was idle for [`KEEP_ALIVE_IDLE_TIMEOUT`].
    Idle,
    /// A request body paused for [`BODY_STALL_TIMEOUT`].
    BodyStalled,
    /// A request body came slower than [`MIN_BODY_RATE`].
    BodyTooSlow,
    /// The client left a response unread for [`WRITE_STALL_TIMEOUT`].
    WriteStalled,
    /// Pending too long while more connections came: see [`Budget`].
    Evicted,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expiry::NoHead => "no request head within the head timeout",
            Expiry::SlowHead => "a request head came too slowly",
            Expiry::Idle => "idle between requests for too long",
            Expiry::BodyStalled => "the request body stalled",
            Expiry::BodyTooSlow => "the request body came too slowly",
            Expiry::WriteStalled => "the client stopped reading the response",
            Expiry::Evicted => "evicted: pending the longest while too many connections were pending",
        })
    }
}

/// How a request body has been coming: time is counted only while the handler waits for it, so
/// a handler that reads slowly never counts against its client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyPace {
    bytes: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl BodyPace {
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        let since = self.waiting_since?;
        let stalled = since + BODY_STALL_TIMEOUT;
        let earned = Duration::from_millis(self.bytes.saturating_mul(1000) / MIN_BODY_RATE);
        let too_slow = since + (BODY_GRACE + earned).saturating_sub(self.waited);
        Some(if too_slow < stalled { (too_slow, Expiry::BodyTooSlow) } else { (stalled, Expiry::BodyStalled) })
    }
}

/// What a connection is doing, with what its deadline is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request head: a new connection (since its accept) or a kept-alive one (since
    /// its last response ended).
    AwaitingHead { since: Instant, kept_alive: bool, first_byte: Option<Instant> },
    /// Serving request number `request`, whose body comes at `body`'s pace.
    Serving { request: u64, body: BodyPace },
    /// Switched protocols (a WebSocket): the route's handler owns the connection's liveness.
    Upgraded,
}

/// One connection's state as its socket and bodies report it; gives the connection's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    phase: Phase,
    requests: u64,
    /// Since when the socket has refused to take more of the response.
    write_blocked_since: Option<Instant>,
    evicted: bool,
}

impl Activity {
    pub fn accepted(now: Instant) -> Activity {
        Activity {
            phase: Phase::AwaitingHead { since: now, kept_alive: false, first_byte: None },
            requests: 0,
            write_blocked_since: None,
            evicted: false,
        }
    }

    /// When the connection must be closed unless something changes, and why.
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        let phase = match &self.phase {
            Phase::AwaitingHead { since, kept_alive: false, .. } => Some((*since + HEAD_TIMEOUT, Expiry::NoHead)),
            Phase::AwaitingHead { kept_alive: true, first_byte: Some(first), .. } => {
                Some((*first + HEAD_TIMEOUT, Expiry::SlowHead))
            }
            Phase::AwaitingHead { since, kept_alive: true, first_byte: None } => {
                Some((*since + KEEP_ALIVE_IDLE_TIMEOUT, Expiry::Idle))
            }
            Phase::Serving { body, .. } => body.deadline(),
            Phase::Upgraded => return None,
        };
        let write = self.write_blocked_since.map(|t| (t + WRITE_STALL_TIMEOUT, Expiry::WriteStalled));
        match (phase, write) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Bytes came in. Returns whether the deadline may have changed.
    pub fn on_read(&mut self, now: Instant) -> bool {
        match &mut self.phase {
            Phase::AwaitingHead { kept_alive: true, first_byte: first @ None, .. } => {
                *first = Some(now);
                true
            }
            _ => false,
        }
    }

    /// A write was tried: the socket took bytes, or was full. Returns whether the deadline may
    /// have changed.
    pub fn on_write(&mut self, blocked: bool, now: Instant) -> bool {
        match (blocked, self.write_blocked_since) {
            (true, None) => {
                self.write_blocked_since = Some(now);
                true
            }
            (false, Some(_)) => {
                self.write_blocked_since = None;
                true
            }
            _ => false,
        }
    }

    /// A request head arrived; returns the request's number.
    pub fn on_head(&mut self) -> u64 {
        self.requests += 1;
        self.phase = Phase::Serving { request: self.requests, body: BodyPace::default() };
        self.requests
    }

    /// The handler waits for more of the request body.
    pub fn on_body_wait(&mut self, now: Instant) {
        if let Phase::Serving { body, .. } = &mut self.phase
            && body.waiting_since.is_none()
        {
            body.waiting_since = Some(now);
        }
    }

    /// `bytes` more of the request body came (0 at its end).
    pub fn on_body_data(&mut self, bytes: usize, now: Instant) {
        if let Phase::Serving { body, .. } = &mut self.phase {
            if let Some(since) = body.waiting_since.take() {
                body.waited += now.saturating_duration_since(since);
            }
            body.bytes = body.bytes.saturating_add(bytes as u64);
        }
    }

    /// Request `request`'s response ended; returns whether the connection now idles, kept alive.
    pub fn on_response_end(&mut self, request: u64, now: Instant) -> bool {
        match self.phase {
            Phase::Serving { request: serving, .. } if serving == request => {
                self.phase = Phase::AwaitingHead { since: now, kept_alive: true, first_byte: None };
                true
            }
            _ => false,
        }
    }

    /// The response switched protocols.
    pub fn on_upgrade(&mut self) {
        self.phase = Phase::Upgraded;
    }
}

// ---------------------------------------------------------------------------------------------
// The async shell.

/// Raises this process's soft limit of open files to its hard limit; returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 1024 };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return hard,
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the limit of open files"),
        }
    }
    soft
}

/// The budget and the connections it may evict, shared by the accept loop and every connection.
struct Registry {
    state: Mutex<RegistryState>,
}

struct RegistryState {
    budget: Budget,
    conns: HashMap<ConnId, Weak<Conn>>,
    next_id: ConnId,
    /// Evictions and refusals since the last warning about them.
    evicted: u64,
    refused: u64,
    last_warning: Option<Instant>,
}

/// How often, at most, the head node warns that it evicts or refuses connections.
const PRESSURE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a new connection from `peer`, evicting others as the budget says; `None` if it is
    /// refused.
    fn admit(self: &Arc<Registry>, peer: SocketAddr) -> Option<Arc<Conn>> {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let Admission::Admitted { evict } = state.budget.admit(id, Source::of(peer.ip())) else {
            state.refused += 1;
            state.warn_under_pressure();
            return None;
        };
        let conn = Arc::new(Conn {
            id,
            registry: self.clone(),
            activity: Mutex::new(Activity::accepted(Instant::now())),
            changed: Notify::new(),
        });
        state.conns.insert(id, Arc::downgrade(&conn));
        let victims = state.take_victims(&evict);
        drop(state);
        evict_all(victims);
        Some(conn)
    }

    fn delivered(&self, id: ConnId) {
        self.lock().budget.delivered(id);
    }

    fn idle(&self, id: ConnId) {
        let mut state = self.lock();
        let evict = state.budget.idle(id);
        let victims = state.take_victims(&evict);
        drop(state);
        evict_all(victims);
    }

    fn closed(&self, id: ConnId) {
        let mut state = self.lock();
        state.budget.closed(id);
        state.conns.remove(&id);
    }
}

impl RegistryState {
    /// Forgets the connections `evict` and returns those still to be closed.
    fn take_victims(&mut self, evict: &[ConnId]) -> Vec<Arc<Conn>> {
        if evict.is_empty() {
            return Vec::new();
        }
        self.evicted += evict.len() as u64;
        self.warn_under_pressure();
        evict.iter().filter_map(|id| self.conns.remove(id)?.upgrade()).collect()
    }

    fn warn_under_pressure(&mut self) {
        if self.last_warning.is_some_and(|t| t.elapsed() < PRESSURE_WARNING_INTERVAL) {
            return;
        }
        tracing::warn!(
            evicted = self.evicted,
            refused = self.refused,
            open = self.budget.open(),
            pending = self.budget.pending(),
            "too many connections: closed those waiting longest for a request, or refused new ones while all were busy (a slow or hostile client?)"
        );
        self.evicted = 0;
        self.refused = 0;
        self.last_warning = Some(Instant::now());
    }
}

/// Closes the connections the budget chose. One that delivered its request head since it was
/// chosen is being served: it is left to finish (the budget no longer counts it), so that no
/// request is acted on and then cut off unanswered.
fn evict_all(victims: Vec<Arc<Conn>>) {
    for conn in victims {
        let mut activity = conn.activity();
        if matches!(activity.phase, Phase::AwaitingHead { .. }) {
            activity.evicted = true;
            drop(activity);
            conn.changed.notify_one();
        }
    }
}

/// One open connection: what its socket and bodies report, and the watchdog's wake-up.
struct Conn {
    id: ConnId,
    registry: Arc<Registry>,
    activity: Mutex<Activity>,
    changed: Notify,
}

impl Conn {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Activity) -> bool) {
        if f(&mut self.activity()) {
            self.changed.notify_one();
        }
    }

    fn head(&self) -> u64 {
        let request = self.activity().on_head();
        self.registry.delivered(self.id);
        self.changed.notify_one();
        request
    }

    fn response_end(&self, request: u64) {
        if self.activity().on_response_end(request, Instant::now()) {
            self.registry.idle(self.id);
            self.changed.notify_one();
        }
    }

    /// Waits until the connection must close, and says why.
    async fn watch(&self) -> Expiry {
        loop {
            let changed = self.changed.notified();
            let deadline = {
                let activity = self.activity();
                if activity.evicted {
                    return Expiry::Evicted;
                }
                activity.deadline()
            };
            match deadline {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The socket, reporting reads and blocked writes to its connection, and leaving the budget
/// when it is dropped (which, for a WebSocket, is when the socket ends, long after the HTTP
/// connection handed it over).
struct Tracked<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I> Drop for Tracked<I> {
    fn drop(&mut self) {
        self.conn.registry.closed(self.conn.id);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.update(|a| a.on_read(Instant::now()));
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> Tracked<I> {
    fn wrote<T>(&self, polled: &Poll<std::io::Result<T>>) {
        match polled {
            Poll::Pending => self.conn.update(|a| a.on_write(true, Instant::now())),
            Poll::Ready(Ok(_)) => self.conn.update(|a| a.on_write(false, Instant::now())),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that reports how it comes.
struct PacedBody {
    inner: Incoming,
    conn: Arc<Conn>,
    waiting: bool,
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Pending if !self.waiting => {
                self.waiting = true;
                self.conn.update(|a| {
                    a.on_body_wait(Instant::now());
                    true
                });
            }
            Poll::Pending => {}
            Poll::Ready(frame) => {
                self.waiting = false;
                let bytes = match frame {
                    Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len),
                    _ => 0,
                };
                self.conn.update(|a| {
                    a.on_body_data(bytes, Instant::now());
                    false
                });
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PacedBody {
    fn drop(&mut self) {
        // The handler stopped waiting for the body: its client is not slow for that.
        if self.waiting {
            self.conn.update(|a| {
                a.on_body_data(0, Instant::now());
                false
            });
        }
    }
}

/// A response body that tells its connection when the response has ended (hyper drops it then).
struct ResponseBody {
    inner: axum::body::Body,
    conn: Arc<Conn>,
    request: u64,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.conn.response_end(self.request);
    }
}

/// Accepts connections on `listener` and serves `app` on each (over TLS when `tls` is given),
/// within `limits` and the timeouts above. Runs until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
) -> Infallible {
    let registry = Arc::new(Registry {
        state: Mutex::new(RegistryState {
            budget: Budget::new(limits),
            conns: HashMap::new(),
            next_id: 0,
            evicted: 0,
            refused: 0,
            last_warning: None,
        }),
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut http = http1::Builder::new();
    // The watchdog bounds the head (hyper's own timer would also cut idle kept-alive
    // connections at the head's bound).
    http.header_read_timeout(None).max_header_size(MAX_HEAD_BYTES);
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(conn) = registry.admit(addr) else { continue };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(conn, tcp, addr, acceptor.clone(), app.clone(), http.clone()));
    }
}

/// Serves one connection until it ends, is handed over (a WebSocket), or its watchdog closes it.
async fn connection(
    conn: Arc<Conn>,
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    http: http1::Builder,
) {
    let io = Tracked { io: tcp, conn: conn.clone() };
    let served = async {
        match acceptor {
            Some(acceptor) => match acceptor.accept(io).await {
                Ok(tls) => {
                    let peer = Peer::of_tls(addr, tls.get_ref().1);
                    serve_http(tls, peer, &conn, app, &http).await;
                }
                Err(e) => tracing::warn!(peer = %addr, error = %e, "refused a TLS connection"),
            },
            None => serve_http(io, Peer { addr, certificate: None }, &conn, app, &http).await,
        }
    };
    tokio::select! {
        () = served => {}
        why = conn.watch() => tracing::debug!(peer = %addr, reason = %why, "closed a connection"),
    }
}

async fn serve_http<I>(io: I, peer: Peer, conn: &Arc<Conn>, app: Router, http: &http1::Builder)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, addr) = (conn.clone(), peer.addr);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (conn, peer, mut app) = (conn.clone(), peer.clone(), app.clone());
        async move {
            let number = conn.head();
            if conn.activity().evicted {
                // Evicted while its head was on the way: the request is not acted on, and the
                // connection closes.
                let refused = hyper::Response::builder()
                    .status(hyper::StatusCode::SERVICE_UNAVAILABLE)
                    .body(axum::body::Body::from("too many connections are pending; try again"))
                    .expect("a plain response");
                return Ok::<_, Infallible>(refused.map(|inner| ResponseBody { inner, conn, request: number }));
            }
            let mut request = request.map(|inner| PacedBody { inner, conn: conn.clone(), waiting: false });
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = match tower_service::Service::call(&mut app, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                conn.activity().on_upgrade();
            }
            Ok::<_, Infallible>(response.map(|inner| ResponseBody { inner, conn, request: number }))
        }
    });
    if let Err(e) = http.serve_connection(TokioIo::new(io), service).with_upgrades().await {
        tracing::debug!(peer = %addr, error = %e, "a connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pending_per_source: usize, pending_total: usize, open_total: usize) -> Limits {
        Limits { pending_per_source, pending_total, open_total }
    }

    fn source(ip: &str) -> Source {
        Source::of(ip.parse().unwrap())
    }

    fn admitted(budget: &mut Budget, id: ConnId, ip: &str) -> Vec<ConnId> {
        match budget.admit(id, source(ip)) {
            Admission::Admitted { evict } => evict,
            Admission::Refused => panic!("connection {id} refused"),
        }
    }

    #[test]
    fn a_flood_from_one_address_evicts_its_own_oldest_pending_connections() {
        let mut budget = Budget::new(limits(3, 100, 100));
        for id in 0..3 {
            assert_eq!(admitted(&mut budget, id, "10.0.0.1"), Vec::<ConnId>::new());
        }
        assert_eq!(admitted(&mut budget, 3, "10.0.0.1"), vec![0]);
        assert_eq!(admitted(&mut budget, 4, "10.0.0.1"), vec![1]);
        // Another address has its own room.
        assert_eq!(admitted(&mut budget, 5, "10.0.0.2"), Vec::<ConnId>::new());
        assert_eq!((budget.open(), budget.pending()), (4, 4));
        // A real client among the flood sends its head at once and is then safe from eviction.
        assert_eq!(admitted(&mut budget, 6, "10.0.0.1"), vec![2]);
        budget.delivered(6);
        for id in 7..20 {
            assert!(!admitted(&mut budget, id, "10.0.0.1").contains(&6));
        }
        assert_eq!(budget.pending(), 4, "three from the flood and one from 10.0.0.2");
    }

    #[test]
    fn the_pending_total_evicts_the_oldest_from_any_address() {
        let mut budget = Budget::new(limits(10, 3, 100));
        admitted(&mut budget, 0, "10.0.0.1");
        admitted(&mut budget, 1, "10.0.0.2");
        admitted(&mut budget, 2, "10.0.0.3");
        assert_eq!(admitted(&mut budget, 3, "10.0.0.4"), vec![0]);
        budget.closed(1);
        assert_eq!(admitted(&mut budget, 4, "10.0.0.4"), Vec::<ConnId>::new());
    }

    #[test]
    fn a_new_connection_is_refused_only_when_every_open_one_is_busy() {
        let mut budget = Budget::new(limits(10, 10, 2));
        admitted(&mut budget, 0, "10.0.0.1");
        admitted(&mut budget, 1, "10.0.0.2");
        budget.delivered(1);
        assert_eq!(admitted(&mut budget, 2, "10.0.0.3"), vec![0], "the pending one makes room");
        budget.delivered(2);
        assert_eq!(budget.admit(3, source("10.0.0.3")), Admission::Refused);
        assert_eq!(budget.open(), 2, "a refused connection takes no place");
        budget.closed(1);
        assert_eq!(admitted(&mut budget, 4, "10.0.0.3"), Vec::<ConnId>::new());
    }

    #[test]
    fn an_idle_kept_alive_connection_queues_behind_newer_pending_ones() {
        let mut budget = Budget::new(limits(2, 10, 10));
        admitted(&mut budget, 0, "10.0.0.1");
        budget.delivered(0);
        admitted(&mut budget, 1, "10.0.0.1");
        // Connection 0 answered its request and idles: it is now the newest pending.
        assert_eq!(budget.idle(0), Vec::<ConnId>::new());
        assert_eq!(budget.idle(0), Vec::<ConnId>::new(), "idling twice changes nothing");
        assert_eq!(admitted(&mut budget, 2, "10.0.0.1"), vec![1]);
        assert_eq!(admitted(&mut budget, 3, "10.0.0.1"), vec![0]);
        // Evicted connections are forgotten at once; their late reports do nothing.
        budget.closed(0);
        budget.delivered(1);
        assert_eq!(budget.idle(1), Vec::<ConnId>::new());
        assert_eq!((budget.open(), budget.pending()), (2, 2));
    }

    #[test]
    fn ipv6_sources_are_64_prefixes_and_mapped_ipv4_is_ipv4() {
        assert_eq!(source("2001:db8:1:2::1"), source("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(source("2001:db8:1:2::1"), source("2001:db8:1:3::1"));
        assert_eq!(source("::ffff:10.0.0.1"), source("10.0.0.1"));
        assert_ne!(source("10.0.0.1"), source("10.0.0.2"));
    }

    #[test]
    fn limits_leave_half_the_file_descriptors_to_the_rest_of_the_head_node() {
        assert_eq!(Limits::for_fd_limit(1 << 20).open_total, MAX_OPEN_CONNECTIONS);
        let small = Limits::for_fd_limit(1024);
        assert_eq!(small, Limits { pending_per_source: PENDING_PER_SOURCE, pending_total: 512, open_total: 512 });
        let tiny = Limits::for_fd_limit(0);
        assert!(tiny.open_total > 0 && tiny.pending_per_source <= tiny.pending_total);
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_new_connection_must_deliver_its_head_within_the_head_timeout_however_it_trickles() {
        let t0 = Instant::now();
        let mut a = Activity::accepted(t0);
        for s in 1..10 {
            assert!(!a.on_read(t0 + secs(s as f64)), "bytes of a first head do not extend its time");
        }
        assert_eq!(a.deadline(), Some((t0 + HEAD_TIMEOUT, Expiry::NoHead)));
    }

    #[test]
    fn a_kept_alive_connection_may_idle_then_must_finish_its_next_head_in_time() {
        let t0 = Instant::now();
        let mut a = Activity::accepted(t0);
        let first = a.on_head();
        assert_eq!(a.deadline(), None, "a request being served has no deadline");
        assert!(a.on_response_end(first, t0 + secs(1.0)));
        assert_eq!(a.deadline(), Some((t0 + secs(1.0) + KEEP_ALIVE_IDLE_TIMEOUT, Expiry::Idle)));
        assert!(a.on_read(t0 + secs(30.0)));
        assert!(!a.on_read(t0 + secs(31.0)), "only the first byte starts the head's clock");
        assert_eq!(a.deadline(), Some((t0 + secs(30.0) + HEAD_TIMEOUT, Expiry::SlowHead)));
        // A late report about the first response does not idle the second request.
        a.on_head();
        assert!(!a.on_response_end(first, t0 + secs(32.0)));
        assert!(matches!(a.phase, Phase::Serving { request: 2, .. }));
    }

    /// Feeds a body of `chunks` of `size` bytes, one every `gap`, the handler waiting all along;
    /// returns when the connection is cut, if it is.
    fn body_cut_after(size: usize, gap: Duration, chunks: u32) -> Option<Duration> {
        let t0 = Instant::now();
        let mut a = Activity::accepted(t0);
        a.on_head();
        for i in 0..chunks {
            let waiting = t0 + gap * i;
            a.on_body_wait(waiting);
            let (deadline, _) = a.deadline().expect("a deadline while the handler waits");
            if deadline < waiting + gap {
                return Some(deadline - t0);
            }
            a.on_body_data(size, waiting + gap);
        }
        a.on_body_data(0, t0 + gap * chunks);
        None
    }

    #[test]
    fn a_trickled_body_is_cut_off_and_a_steady_upload_is_not() {
        // One byte every 5 s: within the stall bound, but far below the rate.
        let cut = body_cut_after(1, secs(5.0), 100).expect("cut off");
        assert!(cut <= BODY_GRACE + secs(1.0), "{cut:?}");
        // 16 KiB a second for 10 minutes, and a slow link's 2 KiB every 1.5 s.
        assert_eq!(body_cut_after(16 << 10, secs(1.0), 600), None);
        assert_eq!(body_cut_after(2 << 10, secs(1.5), 400), None);
        // A steady upload that stops dead.
        let t0 = Instant::now();
        let mut a = Activity::accepted(t0);
        a.on_head();
        a.on_body_wait(t0);
        a.on_body_data(100 << 20, t0 + secs(10.0));
        a.on_body_wait(t0 + secs(10.0));
        assert_eq!(a.deadline(), Some((t0 + secs(10.0) + BODY_STALL_TIMEOUT, Expiry::BodyStalled)));
    }

    #[test]
    fn time_the_handler_spends_elsewhere_does_not_count_against_the_body() {
        let t0 = Instant::now();
        let mut a = Activity::accepted(t0);
        a.on_head();
        a.on_body_data(1 << 10, t0);
        // The handler works for a minute before it asks for more.
        assert_eq!(a.deadline(), None);
        a.on_body_wait(t0 + secs(60.0));
        let (deadline, _) = a.deadline().unwrap();
        assert!(deadline >= t0 + secs(60.0) + BODY_GRACE, "{:?}", deadline - t0);
    }

    #[test]
    fn a_stream_lasts_while_its_client_reads_and_a_websocket_has_no_deadline() {
        let t0 = Instant::now();
        let mut a = Activity::accepted(t0);
        a.on_head();
        for s in 0..1000 {
            assert!(!a.on_write(false, t0 + secs(15.0 * s as f64)));
            assert_eq!(a.deadline(), None);
        }
        assert!(a.on_write(true, t0 + secs(20_000.0)));
        assert_eq!(a.deadline(), Some((t0 + secs(20_000.0) + WRITE_STALL_TIMEOUT, Expiry::WriteStalled)));
        assert!(a.on_write(false, t0 + secs(20_001.0)));
        assert_eq!(a.deadline(), None);
        a.on_upgrade();
        a.on_write(true, t0 + secs(20_002.0));
        assert_eq!(a.deadline(), None);
        assert!(!a.on_response_end(1, t0), "the 101 response ending does not make it pending");
    }
}
