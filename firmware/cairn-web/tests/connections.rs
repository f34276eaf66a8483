//! The panel's listener on a real loopback socket (plain HTTP; `cairnd run`'s HTTPS path is
//! checked by tests/system/test_web_limits.py): idle and slow connections are closed within
//! the header timeout, one address gets at most its share, a flood of idle connections beyond
//! the cap leaves room for a fresh request, refusals hyper writes itself are JSON, and memory
//! comes back after a flood. Bounded: loopback only, at most 2,000 connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_web::listen::ConnLimits;
use common::open_panel;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Served {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the panel stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

async fn serve(limits: ConnLimits) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (_, panel) = open_panel(dir.path(), None, false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(cairn_web::serve(
        listener,
        panel.router(),
        None,
        limits,
        async {
            let _ = rx.await;
        },
    ));
    Served {
        _dir: dir,
        addr,
        stop: Some(tx),
        task,
    }
}

/// The tests run one at a time: the memory test measures the whole process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn limits(total: usize, per_address: usize, header_secs: u64) -> ConnLimits {
    ConnLimits {
        max_connections: total,
        max_per_address: per_address,
        header_timeout: Duration::from_secs(header_secs),
        idle_timeout: Duration::from_secs(30),
    }
}

/// A blocking client connection from `from` (any 127.0.0.0/8 address); call from a blocking
/// thread of the test's runtime.
fn connect(to: SocketAddr, from: [u8; 4]) -> TcpStream {
    let rt = tokio::runtime::Handle::current();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((from, 0))).unwrap();
        sock.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// Whether the server has closed `s` (EOF or reset), waiting at most the read timeout.
fn closed(mut s: &TcpStream) -> bool {
    let mut b = [0u8; 4096];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A GET over a fresh connection; returns the status line and the body.
fn get(to: SocketAddr, from: [u8; 4], target: &str) -> (String, String) {
    let mut s = connect(to, from);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_within_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let served = serve(limits(64, 16, 1)).await;
    let addr = served.addr;
    let (idle, slow) = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let idle = connect(addr, [127, 0, 0, 1]);
        let mut slow = connect(addr, [127, 0, 0, 1]);
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let (mut idle_at, mut slow_at) = (None, None);
        let mut i = 0;
        while t0.elapsed() < Duration::from_secs(6) && (idle_at.is_none() || slow_at.is_none()) {
            if slow_at.is_none() {
                if i < head.len() && slow.write_all(&head[i..i + 1]).is_err() {
                    slow_at = Some(t0.elapsed());
                }
                i += 1;
                if closed(&slow) {
                    slow_at = Some(t0.elapsed());
                }
            }
            if idle_at.is_none() && closed(&idle) {
                idle_at = Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        (idle_at, slow_at)
    })
    .await
    .unwrap();
    let idle = idle.expect("an idle connection stayed open 6 s");
    let slow = slow.expect("a header sent a byte at a time stayed open 6 s");
    assert!(idle < Duration::from_millis(2500), "{idle:?}");
    assert!(slow < Duration::from_millis(2500), "{slow:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_at_most_its_share() {
    let _serial = SERIAL.lock().await;
    let served = serve(limits(64, 4, 30)).await;
    let addr = served.addr;
    let (closed_mine, other_open, answer) = tokio::task::spawn_blocking(move || {
        let mine: Vec<_> = (0..10).map(|_| connect(addr, [127, 0, 0, 1])).collect();
        std::thread::sleep(Duration::from_millis(300));
        let closed_mine = mine.iter().filter(|s| closed(s)).count();
        let other = connect(addr, [127, 0, 0, 2]);
        std::thread::sleep(Duration::from_millis(100));
        let other_open = !closed(&other);
        drop(mine);
        std::thread::sleep(Duration::from_millis(200));
        (
            closed_mine,
            other_open,
            get(addr, [127, 0, 0, 1], "/api/v1/openapi.json").0,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        closed_mine, 6,
        "10 connections from one address with a share of 4"
    );
    assert!(other_open, "another address was refused");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_cap_leaves_room_for_a_fresh_request() {
    let _serial = SERIAL.lock().await;
    let served = serve(limits(16, 4, 30)).await;
    let addr = served.addr;
    let (open, answer) = tokio::task::spawn_blocking(move || {
        // 200 idle connections from 50 addresses (4 each: within the per-address share).
        let flood: Vec<_> = (0..200u8)
            .map(|i| connect(addr, [127, 0, 1, 2 + i % 50]))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let open = flood.iter().filter(|s| !closed(s)).count();
        (open, get(addr, [127, 0, 0, 1], "/api/v1/openapi.json").0)
    })
    .await
    .unwrap();
    assert!(open <= 16, "{open} idle connections held with a cap of 16");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "fresh request: {answer}"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_hyper_writes_are_json() {
    let _serial = SERIAL.lock().await;
    let served = serve(limits(64, 16, 10)).await;
    let addr = served.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            // Longer than hyper reads at all (64 KiB): hyper's own 414.
            get(
                addr,
                [127, 0, 0, 1],
                &format!("/api/v1/openapi.json?q={}", "a".repeat(100 << 10)),
            ),
            // Longer than the panel reads (8 KiB).
            get(
                addr,
                [127, 0, 0, 1],
                &format!("/api/v1/openapi.json?q={}", "a".repeat(20 << 10)),
            ),
            get(addr, [127, 0, 0, 1], "/ bad target"),
        ]
    })
    .await
    .unwrap();
    for ((status, body), want) in answers.iter().zip(["414", "414", "400"]) {
        assert!(status.starts_with(&format!("HTTP/1.1 {want}")), "{status}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| {
            panic!("{status}: not JSON: {body:?}");
        });
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_an_idle_flood() {
    let _serial = SERIAL.lock().await;
    let served = serve(limits(256, 32, 30)).await;
    let addr = served.addr;
    // Warm up: one request of each kind, so first-use allocations are not counted.
    let warm =
        tokio::task::spawn_blocking(move || get(addr, [127, 0, 0, 1], "/api/v1/openapi.json").0)
            .await
            .unwrap();
    assert!(warm.starts_with("HTTP/1.1 200"), "{warm}");
    let before = rss_kib();
    let during = tokio::task::spawn_blocking(move || {
        let flood: Vec<_> = (0..2000u32)
            .map(|i| connect(addr, [127, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8]))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let during = rss_kib();
        drop(flood);
        std::thread::sleep(Duration::from_millis(500));
        during
    })
    .await
    .unwrap();
    let after = rss_kib();
    eprintln!("RSS: before {before} KiB, during {during} KiB, after {after} KiB");
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "RSS grew {} KiB over a flood of 2,000 idle connections and stayed",
        after.saturating_sub(before)
    );
    let answer =
        tokio::task::spawn_blocking(move || get(addr, [127, 0, 0, 1], "/api/v1/openapi.json").0)
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    served.stop().await;
}
