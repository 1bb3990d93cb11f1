//! Connection deadlines (`http.header_read_timeout`, `http.idle_timeout`)
//! against a real server on 127.0.0.1, over raw sockets: silent and
//! slowloris connections are cut off, idle keep-alive connections are
//! closed, live streams are not, shutdown still ends everything, and 2,000
//! idle connections at once are all closed on time.

mod common;

use common::{SseReader, TestServer};
use gmv_serve::ServeConfig;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Slack for scheduling on a shared two-core machine: a deadline may fire
/// this much late and still pass.
const MARGIN: Duration = Duration::from_millis(700);
/// Never wait longer than this for a close that is due.
const PATIENCE: Duration = Duration::from_secs(5);

fn config(header_read_timeout: Duration, idle_timeout: Duration) -> ServeConfig {
    ServeConfig {
        header_read_timeout,
        idle_timeout,
        ..ServeConfig::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// When the server closed `socket` (a read returned 0 or failed), reading
/// and discarding whatever it sent; `None` if it was still open after
/// `wait`.
async fn closed_at(socket: &mut (impl AsyncRead + Unpin), wait: Duration) -> Option<Instant> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `GET path` on a keep-alive connection and reads its whole response
/// (which has a `content-length`).
async fn get(socket: &mut TcpStream, path: &str) -> String {
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before responding");
        response.extend_from_slice(&buf[..n]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .expect("a content-length")
            .trim()
            .parse()
            .unwrap();
        if response.len() >= end + 4 + length {
            return String::from_utf8(response).unwrap();
        }
    }
}

/// Writes `head` a byte at a time, then `X` forever, every `every`, until the
/// server closes the connection (at most `PATIENCE`). Returns the bytes sent.
async fn trickle(
    mut socket: tokio::net::tcp::OwnedWriteHalf,
    head: &'static [u8],
    every: Duration,
) -> usize {
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < PATIENCE {
        let byte = head.get(sent).copied().unwrap_or(b'X');
        if socket.write_all(&[byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(every).await;
    }
    sent
}

/// Trickles a request head on `socket` a byte every 100 ms and checks the
/// server (header-read timeout 300 ms) closes it in time; returns the bytes
/// sent.
async fn slowloris_is_cut_at_300ms(socket: TcpStream, what: &str) -> usize {
    let (mut reader, writer) = socket.into_split();
    let started = Instant::now();
    let trickler = tokio::spawn(trickle(
        writer,
        b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ",
        ms(100),
    ));
    let closed = closed_at(&mut reader, PATIENCE)
        .await
        .unwrap_or_else(|| panic!("the server closes a {what}"));
    assert_between(
        &format!("{what} closed after"),
        closed - started,
        ms(250),
        ms(300) + MARGIN,
    );
    trickler.await.unwrap()
}

fn assert_between(what: &str, took: Duration, low: Duration, high: Duration) {
    println!("{what}: {took:?}");
    assert!(
        (low..=high).contains(&took),
        "{what}: took {took:?}, expected {low:?}..={high:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let server = TestServer::start_with(config(ms(300), Duration::from_secs(60))).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let connected = Instant::now();
    let closed = closed_at(&mut socket, PATIENCE)
        .await
        .expect("the server closes a silent connection");
    assert_between(
        "silent connection closed after",
        closed - connected,
        ms(250),
        ms(300) + MARGIN,
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slowloris_trickling_its_headers_is_closed_after_the_header_read_timeout() {
    let server = TestServer::start_with(config(ms(300), Duration::from_secs(60))).await;
    let socket = TcpStream::connect(server.addr).await.unwrap();
    let sent = slowloris_is_cut_at_300ms(socket, "slowloris").await;
    assert!(sent >= 3, "it was trickling ({sent} bytes)");
    assert!(sent < 20, "and stopped when closed ({sent} bytes)");
    server.stop().await;
}

#[tokio::test]
async fn a_slowloris_on_a_keep_alive_connection_is_cut_by_the_header_timeout_not_the_idle_one() {
    let server = TestServer::start_with(config(ms(300), Duration::from_secs(30))).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    assert!(get(&mut socket, "/healthz").await.ends_with("ok\n"));
    slowloris_is_cut_at_300ms(socket, "keep-alive slowloris").await;
    server.stop().await;
}

#[tokio::test]
async fn a_silent_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(config(Duration::from_secs(5), ms(400))).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    // Requests closer together than the idle timeout keep it open, well
    // past the idle timeout in all.
    let first = Instant::now();
    for _ in 0..6 {
        assert!(get(&mut socket, "/healthz").await.ends_with("ok\n"));
        tokio::time::sleep(ms(200)).await;
    }
    assert!(first.elapsed() > ms(1000));
    let answered = Instant::now();
    assert!(get(&mut socket, "/api/screen")
        .await
        .contains("milestone_every_cny"));
    let closed = closed_at(&mut socket, PATIENCE)
        .await
        .expect("the server closes an idle keep-alive connection");
    assert_between(
        "idle keep-alive connection closed after",
        closed - answered,
        ms(350),
        ms(400) + MARGIN,
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_read_timeout() {
    let server = TestServer::start_with(config(ms(300), ms(1500))).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    assert!(get(&mut socket, "/healthz").await.ends_with("ok\n"));
    let answered = Instant::now();
    assert!(
        closed_at(&mut socket, ms(1000)).await.is_none(),
        "still open at 1s, past the 300ms header timeout"
    );
    assert!(get(&mut socket, "/healthz").await.ends_with("ok\n"));
    let answered_again = Instant::now();
    let closed = closed_at(&mut socket, PATIENCE)
        .await
        .expect("closed after the idle timeout");
    assert!(answered_again - answered >= ms(1000));
    assert_between(
        "idle keep-alive connection closed after",
        closed - answered_again,
        ms(1400),
        ms(1500) + MARGIN,
    );
    server.stop().await;
}

#[tokio::test]
async fn a_live_stream_outlives_both_timeouts_and_keeps_receiving() {
    let mut server = TestServer::start_with(ServeConfig {
        keep_alive: ms(100),
        ..config(ms(300), ms(300))
    })
    .await;
    server.publish();
    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    assert_eq!(reader.next().await.id.as_deref(), Some("1"));
    let opened = Instant::now();
    for seq in 2..=5 {
        // Only keep-alive comments in these gaps, each longer than both
        // timeouts.
        tokio::time::sleep(ms(450)).await;
        server.publish();
        let event = reader
            .next_within(ms(2000))
            .await
            .unwrap_or_else(|| panic!("the stream was cut before snapshot {seq}"));
        assert_eq!(event.id, Some(seq.to_string()));
    }
    println!(
        "stream open {:?} with 300ms timeouts, {} keep-alives",
        opened.elapsed(),
        reader.comments
    );
    assert!(opened.elapsed() > ms(1800));
    assert!(reader.comments >= 8, "{} keep-alives", reader.comments);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_every_kind_of_connection_promptly() {
    // Long deadlines and grace: only a graceful close explains a prompt end.
    let mut server = TestServer::start_with(ServeConfig {
        shutdown_grace: Duration::from_secs(8),
        ..config(Duration::from_secs(10), Duration::from_secs(60))
    })
    .await;
    server.publish();
    let connect = || TcpStream::connect(server.addr);

    let mut silent = connect().await.unwrap();
    let mut idle = connect().await.unwrap();
    assert!(get(&mut idle, "/healthz").await.ends_with("ok\n"));
    let mut half_first = connect().await.unwrap();
    half_first
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut half_next = connect().await.unwrap();
    assert!(get(&mut half_next, "/healthz").await.ends_with("ok\n"));
    half_next
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut live = connect().await.unwrap();
    live.write_all(b"GET /api/live HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let n = timeout(PATIENCE, live.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(ms(100)).await;

    let started = Instant::now();
    server.shutdown.cancel();
    timeout(Duration::from_secs(2), server.server)
        .await
        .expect("serve returns well before the grace period")
        .unwrap()
        .unwrap();
    println!("serve returned {:?} after shutdown", started.elapsed());
    for (name, socket) in [
        ("silent", &mut silent),
        ("idle", &mut idle),
        ("first head half-sent", &mut half_first),
        ("next head half-sent", &mut half_next),
        ("live stream", &mut live),
    ] {
        assert!(
            closed_at(socket, ms(500)).await.is_some(),
            "{name} connection closed"
        );
    }
}

/// Raises this process's open-file limit to `needed` if the hard limit
/// allows; returns the limit in force.
fn allow_open_files(needed: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read or write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < needed {
            let raised = libc::rlimit {
                rlim_cur: needed.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_and_slowloris_connections_are_all_closed_on_time() {
    const CONNECTIONS: usize = 2_000;
    const HEADER_READ: Duration = Duration::from_secs(1);
    // Client and server ends, both in this process, plus room for the rest.
    let limit = allow_open_files(2 * CONNECTIONS as u64 + 512);
    assert!(
        limit >= 2 * CONNECTIONS as u64 + 256,
        "needs {} open files, the limit is {limit}",
        2 * CONNECTIONS + 256
    );
    let server = TestServer::start_with(config(HEADER_READ, HEADER_READ)).await;

    let run = async {
        let started = Instant::now();
        let mut watchers = Vec::with_capacity(CONNECTIONS);
        for i in 0..CONNECTIONS {
            let socket = TcpStream::connect(server.addr).await.unwrap();
            let connected = Instant::now();
            let (mut reader, writer) = socket.into_split();
            // Every other one trickles a header, a byte every 250ms; the
            // rest keep their write half open (dropping it would send a FIN,
            // and the server rightly closes a connection its client closed).
            let (trickler, silent) = if i % 2 == 1 {
                let head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
                (Some(tokio::spawn(trickle(writer, head, ms(250)))), None)
            } else {
                (None, Some(writer))
            };
            watchers.push(tokio::spawn(async move {
                let closed = closed_at(&mut reader, PATIENCE).await;
                drop(silent);
                let sent = match trickler {
                    Some(trickler) => trickler.await.unwrap_or(0),
                    None => 0,
                };
                (closed.map(|at| at - connected), sent)
            }));
        }
        let connecting = started.elapsed();
        let mut lifetimes = Vec::with_capacity(CONNECTIONS);
        let mut trickled = 0;
        for watcher in watchers {
            let (lifetime, sent) = watcher.await.unwrap();
            lifetimes.push(lifetime.expect("every connection is closed"));
            trickled += usize::from(sent >= 2);
        }
        (connecting, started.elapsed(), lifetimes, trickled)
    };
    let (connecting, total, mut lifetimes, trickled) = timeout(Duration::from_secs(30), run)
        .await
        .expect("the load check finishes within 30s");
    lifetimes.sort();
    let (fastest, median, slowest) = (
        lifetimes[0],
        lifetimes[CONNECTIONS / 2],
        lifetimes[CONNECTIONS - 1],
    );
    println!(
        "{CONNECTIONS} connections ({trickled} trickling) opened in {connecting:?}, all closed \
         {total:?} after the first; lifetimes {fastest:?} / {median:?} / {slowest:?} \
         (min / median / max) with header_read_timeout {HEADER_READ:?}"
    );
    assert_eq!(trickled, CONNECTIONS / 2, "half of them were trickling");
    assert!(
        fastest >= HEADER_READ - ms(100),
        "none closed early: {fastest:?}"
    );
    assert!(
        slowest <= HEADER_READ + Duration::from_secs(2),
        "all closed within the timeout plus 2s: {slowest:?}"
    );

    // The server is still serving afterwards.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    assert!(get(&mut socket, "/healthz").await.ends_with("ok\n"));
    drop(socket);
    server.stop().await;
}
