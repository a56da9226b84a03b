//! A head node under a slowloris flood (issue 14): thousands of connections from one address,
//! each sending its request head (or its TLS handshake) a few bytes at a time. The head node must
//! keep answering the CLI and agents from that same address meanwhile, and close every slow
//! connection within its stated bound.

mod common;

use common::{Cluster, eventually};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thunderhead_server::connections::{BODY_GRACE, HEAD_TIMEOUT, PENDING_PER_SOURCE};

/// How many slow connections the flood opens.
const FLOOD: usize = 2_000;
/// How much later than its bound a connection may be seen closed: the test polls every 250 ms.
const SLACK: Duration = Duration::from_secs(2);
/// The longest the flood's thread runs, whatever happens to the test.
const FLOOD_LIFETIME: Duration = Duration::from_secs(60);
/// The head node's limit of open files during the flood: fewer than the flood.
const FD_LIMIT: u32 = 1_024;
/// What the issue asks of the CLI during a flood.
const CLI_BOUND: Duration = Duration::from_secs(1);

struct Slow {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Instant>,
}

/// Whether the server closed `stream` (non-blocking); whatever it sent is read and dropped.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Slow connections held open by a thread that sends each a little more every second and notes
/// when the server closes it. The thread ends when the flood drops, or after [`FLOOD_LIFETIME`].
struct Flood {
    conns: Arc<Mutex<Vec<Slow>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    /// Opens `count` connections to `addr`, each sending `opening`, then `trickle` every second.
    fn open(addr: SocketAddr, count: usize, opening: &'static [u8], trickle: &'static [u8]) -> Flood {
        // This process holds the flood's sockets: let it open as many files as it may.
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else { continue };
            let opened = Instant::now();
            if stream.write_all(opening).is_err() || stream.set_nonblocking(true).is_err() {
                conns.push(Slow { stream, opened, closed: Some(opened) });
                continue;
            }
            conns.push(Slow { stream, opened, closed: None });
        }
        assert!(conns.len() >= count / 2, "only {} of {count} slow connections opened", conns.len());
        let conns = Arc::new(Mutex::new(conns));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (conns, stop) = (conns.clone(), stop.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut last_trickle = start;
                while !stop.load(Ordering::Relaxed) && start.elapsed() < FLOOD_LIFETIME {
                    let trickle_now = last_trickle.elapsed() >= Duration::from_secs(1);
                    if trickle_now {
                        last_trickle = Instant::now();
                    }
                    for slow in conns.lock().unwrap().iter_mut().filter(|s| s.closed.is_none()) {
                        if closed_by_server(&mut slow.stream) {
                            slow.closed = Some(Instant::now());
                        } else if trickle_now {
                            let _ = slow.stream.write(trickle);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        Flood { conns, stop, thread: Some(thread) }
    }

    fn still_open(&self) -> usize {
        self.conns.lock().unwrap().iter().filter(|s| s.closed.is_none()).count()
    }

    /// How long each connection lived, in the order they were opened; `None` for one still open.
    fn lifetimes(&self) -> Vec<Option<Duration>> {
        self.conns.lock().unwrap().iter().map(|s| s.closed.map(|c| c - s.opened)).collect()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lowers the head node's limit of open files to `limit`, below the flood's size, as on a machine
/// with a common default: without bounds of its own, the head node would run out of descriptors.
fn limit_open_files(c: &Cluster, limit: u32) {
    let out = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(c.server_pid().to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "prlimit: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `thunderhead node list` and asserts it answered, within [`CLI_BOUND`] of wall time.
fn node_list_answers_in_time(c: &Cluster) {
    for attempt in 1..=3 {
        let start = Instant::now();
        let out = c.try_th(&["node", "list", "--json"]);
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "node list failed during the flood (attempt {attempt}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took < CLI_BOUND, "node list took {took:?} during the flood (attempt {attempt})");
    }
}

/// Waits until the server has evicted the flood's oldest connections down to the pending bound
/// of one address, and asserts it holds the rest (the CLI is then tested against a held flood).
fn flood_is_held_at_the_pending_bound(flood: &Flood) {
    eventually(5, "the flood to be cut to the pending bound of one address", || {
        (flood.still_open() <= PENDING_PER_SOURCE).then_some(())
    });
    let held = flood.still_open();
    assert!(held >= PENDING_PER_SOURCE / 2, "the server holds {held} slow connections: the flood should be held");
}

/// Asserts every slow connection was closed within [`HEAD_TIMEOUT`] of its opening (the newest
/// ones by that timeout, not sooner).
fn flood_is_cut_off_in_time(flood: &Flood) {
    eventually((HEAD_TIMEOUT + SLACK * 2).as_secs(), "every slow connection to be closed", || {
        (flood.still_open() == 0).then_some(())
    });
    let lifetimes = flood.lifetimes();
    let longest = lifetimes.iter().flatten().max().copied().unwrap_or_default();
    assert!(longest <= HEAD_TIMEOUT + SLACK, "a slow connection lived {longest:?}, over {HEAD_TIMEOUT:?}");
    let newest = lifetimes.last().copied().flatten().unwrap();
    assert!(
        newest + Duration::from_secs(1) >= HEAD_TIMEOUT,
        "the newest slow connection was closed after {newest:?}, before its head timeout: it should have been waited for"
    );
}

#[test]
fn slow_tls_handshakes_do_not_lock_out_the_cli_or_agents() {
    let mut c = Cluster::start();
    c.join_token();
    limit_open_files(&c, FD_LIMIT);
    let addr: SocketAddr = format!("127.0.0.1:{}", c.port).parse().unwrap();
    // A TLS record header announcing a 512-byte handshake message, then its bytes one by one.
    let flood = Flood::open(addr, FLOOD, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], &[0x00]);
    node_list_answers_in_time(&c);
    flood_is_held_at_the_pending_bound(&flood);
    node_list_answers_in_time(&c);

    // An agent from the same address enrols and connects its WebSocket during the flood.
    c.start_agent("under-flood", 1);
    eventually(HEAD_TIMEOUT.as_secs(), "the agent to join during the flood", || {
        c.json(&["node", "list"]).as_array().unwrap().iter().any(|n| n["name"] == "under-flood").then_some(())
    });
    node_list_answers_in_time(&c);
    flood_is_cut_off_in_time(&flood);
}

/// Sends a request whose body comes one byte a second; returns how long the connection lived
/// and how many bytes the server sent back.
fn trickle_a_body(addr: SocketAddr, token: &str) -> (Duration, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let start = Instant::now();
    let mut received = 0;
    let mut buf = [0u8; 4096];
    while start.elapsed() < BODY_GRACE * 3 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let _ = stream.write(b" ");
            }
            Err(_) => break,
        }
    }
    (start.elapsed(), received)
}

#[test]
fn slow_request_heads_and_bodies_are_cut_off_while_the_api_and_agent_route_answer() {
    let c = Cluster::start_with(&["--insecure-http"]);
    limit_open_files(&c, FD_LIMIT);
    let addr: SocketAddr = format!("127.0.0.1:{}", c.port).parse().unwrap();
    let access: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.access_file()).unwrap()).unwrap();
    let token = access["token"].as_str().unwrap().to_string();

    let flood = Flood::open(
        addr,
        FLOOD,
        b"GET /api/v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n",
        b"X-Slow: 1\r\n",
    );
    let body = std::thread::spawn(move || trickle_a_body(addr, &token));
    node_list_answers_in_time(&c);
    flood_is_held_at_the_pending_bound(&flood);
    node_list_answers_in_time(&c);

    // The agents' WebSocket route switches protocols during the flood.
    let mut ws = TcpStream::connect(addr).unwrap();
    ws.set_read_timeout(Some(CLI_BOUND)).unwrap();
    ws.write_all(
        b"GET /agent/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut answer = [0u8; 12];
    ws.read_exact(&mut answer).expect("the agent route answers during the flood");
    assert_eq!(&answer, b"HTTP/1.1 101", "{}", String::from_utf8_lossy(&answer));
    drop(ws);

    flood_is_cut_off_in_time(&flood);
    let (lived, received) = body.join().unwrap();
    assert_eq!(received, 0, "a trickled body is cut off, not answered");
    assert!(
        lived + Duration::from_secs(1) >= BODY_GRACE && lived <= BODY_GRACE + SLACK,
        "a body trickled at a byte a second was cut off after {lived:?} (its bound: {BODY_GRACE:?} of waiting)"
    );
}
