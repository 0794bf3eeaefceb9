//! HTTP hardening through the real server: slow and numerous clients,
//! security headers, and errors as ProblemDetails that give nothing away.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::config_for;
use common::tls::{get as get_request, http_raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vigie_server::api::ApiError;
use vigie_server::{Config, Running};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

async fn start(config: Config, extra: Router) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    vigie_server::start(config, listener, extra).await.expect("start")
}

/// Authentication is off here: these tests are about what every response
/// looks like, the raw client sends no credential (tests/security.rs covers
/// access; an unauthenticated unknown route answers 401 there).
fn config(data: &tempfile::TempDir) -> Config {
    let mut config = config_for(data.path(), None);
    config.security.enabled = false;
    config
}

/// Routes that fail the ways a handler can: slowly, by panicking, and with
/// an internal error whose text must stay in the log.
fn failing_routes() -> Router {
    Router::new()
        .route(
            "/test/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/test/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("SELECT password FROM accounts at /var/lib/vigie/vigie.db:42");
                }
                "unreachable"
            }),
        )
        .route(
            "/test/internal",
            get(|| async {
                Err::<(), _>(ApiError::Internal(
                    "error returned from database: (code: 5) database is locked: UPDATE entities SET body = ? \
                     (/var/lib/vigie/vigie.db)"
                        .into(),
                ))
            }),
        )
}

fn assert_security_headers(res: &common::tls::RawResponse) {
    assert_eq!(res.header("content-security-policy"), Some(CSP), "{res:?}");
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(res.header("x-frame-options"), Some("DENY"));
    assert_eq!(res.header("cross-origin-opener-policy"), Some("same-origin"));
    assert!(
        res.header("permissions-policy")
            .is_some_and(|p| p.contains("camera=()"))
    );
    assert_eq!(res.header("cache-control"), Some("no-store"));
    // HSTS only means something over TLS.
    assert_eq!(res.header("strict-transport-security"), None);
}

fn assert_problem(res: &common::tls::RawResponse, status: u16, kind: &str) {
    assert_eq!(res.status, status, "{res:?}");
    assert_eq!(res.header("content-type"), Some("application/problem+json"), "{res:?}");
    let body = res.json();
    assert_eq!(body["status"], status, "{res:?}");
    assert_eq!(
        body["type"].as_str(),
        Some(format!("https://uri.etsi.org/ngsi-ld/errors/{kind}").as_str()),
        "{res:?}"
    );
    assert!(body["title"].is_string() && body["detail"].is_string(), "{res:?}");
    assert_no_internals(&res.body);
}

/// What an error body must never show: SQL, file paths, panic or trace text.
fn assert_no_internals(body: &str) {
    for leak in [
        "SELECT",
        "UPDATE",
        "database",
        "/var/",
        ".db",
        ".rs",
        "panicked",
        "password",
        "backtrace",
    ] {
        assert!(!body.contains(leak), "error body leaks {leak:?}: {body}");
    }
}

#[tokio::test]
async fn security_headers_are_on_api_and_error_responses() {
    let data = tempfile::tempdir().expect("tempdir");
    let s = start(config(&data), failing_routes()).await;
    let addr = s.http_addr;
    for path in [
        "/health",
        "/metrics",
        "/ngsi-ld/v1/entities?type=Streetlight",
        "/nowhere",
        "/test/panic",
    ] {
        let res = http_raw(addr, &get_request(path)).await;
        assert_security_headers(&res);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn framework_and_handler_errors_are_problem_details_without_internals() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = config(&data);
    config.http.request_timeout_secs = 1;
    config.http.max_body_bytes = 1024;
    let s = start(config, failing_routes()).await;
    let addr = s.http_addr;

    // No such route.
    let res = http_raw(addr, &get_request("/no/such/route")).await;
    assert_problem(&res, 404, "ResourceNotFound");

    // A handler's own error keeps its ProblemDetails.
    let res = http_raw(addr, &get_request("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:none")).await;
    assert_problem(&res, 404, "ResourceNotFound");

    // Wrong method: 405 with Allow.
    let res = http_raw(
        addr,
        "DELETE /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_problem(&res, 405, "InvalidRequest");
    assert!(res.header("allow").is_some_and(|a| a.contains("GET")), "{res:?}");

    // A body over the limit, announced by Content-Length: refused before it is read.
    let big = "x".repeat(4096);
    let res = http_raw(
        addr,
        &format!(
            "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        ),
    )
    .await;
    assert_problem(&res, 413, "InvalidRequest");
    // The same, streamed without a length.
    let res = http_raw(
        addr,
        &format!(
            "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ),
    )
    .await;
    assert_problem(&res, 413, "InvalidRequest");

    // Too slow: 408.
    let res = http_raw(addr, &get_request("/test/slow")).await;
    assert_problem(&res, 408, "InternalError");

    // A panic: 500, and the panic message stays in the log.
    let res = http_raw(addr, &get_request("/test/panic")).await;
    assert_problem(&res, 500, "InternalError");

    // An internal error with SQL and a path in it: neither reaches the client.
    let res = http_raw(addr, &get_request("/test/internal")).await;
    assert_problem(&res, 500, "InternalError");

    // The server is still well after all that.
    let res = http_raw(addr, &get_request("/health")).await;
    assert_eq!(res.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_within_the_header_timeout() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = config(&data);
    config.http.header_timeout_secs = 1;
    let s = start(config, Router::new()).await;

    let mut tcp = TcpStream::connect(s.http_addr).await.expect("connect");
    let (mut rd, mut wr) = tcp.split();
    let started = Instant::now();
    let request =
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slowloris\r\nX-Padding: aaaaaaaaaaaaaaaa\r\n";
    let trickle = async {
        // One byte every 300 ms: the headers would take 20 s to arrive.
        for b in request {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = trickle => unreachable!(),
        _ = closed => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => panic!("the slow client still holds its connection after 5 s"),
    }
    let held = started.elapsed();
    assert!(held < Duration::from_secs(3), "held {held:?}");

    // A client that connects and says nothing is closed too.
    let mut silent = TcpStream::connect(s.http_addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection stayed open: {read:?}"
    );

    // Normal clients are unaffected.
    let res = http_raw(s.http_addr, &get_request("/health")).await;
    assert_eq!(res.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = config(&data);
    config.http.max_connections = 2;
    config.http.header_timeout_secs = 30;
    let s = start(config, Router::new()).await;
    let addr = s.http_addr;

    let first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");
    // Let the server accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(addr).await.expect("connect (kernel backlog)");
    third.write_all(get_request("/health").as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut buf)).await;
    assert!(early.is_err(), "answered beyond the connection cap: {buf:?}");

    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("answered once a connection closed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"), "{buf:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let s = start(config(&data), Router::new()).await;
    let big = "a".repeat(70 * 1024);
    let res = http_raw(
        s.http_addr,
        &format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(res.status, 431, "{res:?}");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let res = http_raw(
        s.http_addr,
        &format!("GET /health HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(res.status, 431, "{res:?}");
    s.shutdown().await;
}
