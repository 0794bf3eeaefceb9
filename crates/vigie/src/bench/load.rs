//! A lean HTTP/1.1 load generator, in the manner of wrk: each connection keeps
//! one request in flight over keep-alive, writes a request already formatted
//! as bytes, and reads the answer only as far as its status and length.
//!
//! Why not reqwest: a full client spends about as much CPU per request as the
//! server does, and on a 2-core machine the generator shares the cores with
//! Vigie, so the figure would measure the client as much as Vigie.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The largest answer head or body the generator accepts.
const MAX_ANSWER: usize = 64 * 1024;

/// Counts of answers, shared by the connections.
#[derive(Default)]
pub(super) struct Tally {
    /// Answers with the expected status.
    pub expected: AtomicU64,
    /// Other answers, and connections lost.
    pub unexpected: AtomicU64,
}

/// Requests from `connections` connections to `addr` until `stop`:
/// connection `c` sends `request(c, n)` for n = 0, 1, 2…
pub(super) fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    expect: u16,
    request: impl Fn(usize, u64) -> Vec<u8> + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
) -> (Arc<Tally>, Vec<JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let request = Arc::new(request);
    let tasks = (0..connections.max(1))
        .map(|c| {
            let (tally, request, stop) = (Arc::clone(&tally), Arc::clone(&request), Arc::clone(&stop));
            tokio::spawn(async move {
                if let Err(e) = connection(addr, c, expect, &*request, &stop, &tally).await {
                    tally.unexpected.fetch_add(1, Ordering::Relaxed);
                    eprintln!("load generator, connection {c}: {e:#}");
                }
            })
        })
        .collect();
    (tally, tasks)
}

async fn connection(
    addr: SocketAddr,
    c: usize,
    expect: u16,
    request: &(dyn Fn(usize, u64) -> Vec<u8> + Send + Sync),
    stop: &AtomicBool,
    tally: &Tally,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(&request(c, n)).await.context("sending")?;
        n += 1;
        let status = read_answer(&mut stream, &mut buf).await?;
        if status == expect {
            &tally.expected
        } else {
            &tally.unexpected
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads one answer (head and `Content-Length` body) and returns its status.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut answer = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = answer.parse(buf).context("parsing the answer")? {
            let status = answer.code.context("an answer without a status")?;
            let length = answer
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(Some(0))
                .context("an unreadable Content-Length")?;
            anyhow::ensure!(length <= MAX_ANSWER, "an answer body of {length} bytes");
            while buf.len() < head + length {
                fill(stream, buf).await?;
            }
            anyhow::ensure!(
                buf.len() == head + length,
                "bytes after the answer: pipelining is not used"
            );
            return Ok(status);
        }
        anyhow::ensure!(buf.len() <= MAX_ANSWER, "an answer head over {MAX_ANSWER} bytes");
        fill(stream, buf).await?;
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await.context("reading the answer")?;
    anyhow::ensure!(read > 0, "the server closed the connection");
    buf.extend_from_slice(&chunk[..read]);
    Ok(())
}

/// An HTTP/1.1 request with a JSON body, as bytes.
pub(super) fn json_request(method: &str, host: SocketAddr, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
