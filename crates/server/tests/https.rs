//! HTTPS through the real server, with certificates generated here: serving,
//! reload without restart, refusal of bad files, and shutdown with open
//! connections.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tls::{Leaf, Pki, get, https_get, served_certificate, tls_connect};
use common::{TestServer, config_for};
use tokio::io::AsyncWriteExt;
use vigie_server::Config;

/// Writes the certificate and key where the configuration names them.
fn install(leaf: &Leaf, cert: &Path, key: &Path) {
    // Written whole then renamed, as a certificate manager does.
    for (path, text) in [(cert, &leaf.cert_pem), (key, &leaf.key_pem)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).expect("write certificate file");
        std::fs::rename(&tmp, path).expect("rename certificate file");
    }
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

fn tls_config(data: &Path, leaf: &Leaf) -> (Config, Files) {
    let files = Files {
        cert: data.join("server.crt"),
        key: data.join("server.key"),
    };
    install(leaf, &files.cert, &files.key);
    let mut config = config_for(data, None);
    config.tls.cert_file = files.cert.display().to_string();
    config.tls.key_file = files.key.display().to_string();
    config.tls.reload_interval_secs = 1;
    (config, files)
}

#[tokio::test]
async fn https_serves_the_api_with_hsts_and_refuses_plain_http() {
    let pki = Pki::new();
    let leaf = pki.leaf("vigie-1");
    let data = tempfile::tempdir().expect("tempdir");
    let (config, _files) = tls_config(data.path(), &leaf);
    let s = TestServer::start_with(config, data).await;
    let addr = s.running.http_addr;

    let res = https_get(addr, pki.client(), "/health").await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.json()["status"], "ok");
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(served_certificate(addr, pki.client()).await, leaf.der);

    // Errors over TLS are ProblemDetails with the same headers (without a
    // credential, an unknown route is answered 401: routes are not revealed).
    let res = https_get(addr, pki.client(), "/no/such/thing").await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert!(res.header("strict-transport-security").is_some());

    // A client that does not trust the CA gets no connection.
    let other = Pki::new();
    assert!(tls_connect(addr, other.client()).await.is_err());

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered on the TLS port: {plain:?}");

    s.running.shutdown().await;
}

#[tokio::test]
async fn certificate_reloads_without_restart_and_a_bad_one_keeps_the_old() {
    let pki = Pki::new();
    let first = pki.leaf("vigie-1");
    let data = tempfile::tempdir().expect("tempdir");
    let (config, files) = tls_config(data.path(), &first);
    let s = TestServer::start_with(config, data).await;
    let addr = s.running.http_addr;
    assert_eq!(served_certificate(addr, pki.client()).await, first.der);

    // A connection opened before the renewal keeps working after it.
    let mut before = tls_connect(addr, pki.client()).await.expect("TLS handshake");

    let second = pki.leaf("vigie-2");
    install(&second, &files.cert, &files.key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_certificate(addr, pki.client()).await == second.der {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = common::tls::exchange(&mut before, &get("/health")).await;
    assert_eq!(res.status, 200);

    // A renewal gone wrong: a certificate whose key is not there, then garbage.
    let third = pki.leaf("vigie-3");
    std::fs::write(&files.cert, &third.cert_pem).expect("write cert");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(served_certificate(addr, pki.client()).await, second.der);
    std::fs::write(&files.cert, "not a certificate").expect("write cert");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let res = https_get(addr, pki.client(), "/health").await;
    assert_eq!(res.status, 200);
    assert_eq!(served_certificate(addr, pki.client()).await, second.der);

    // Fixed: served again.
    install(&third, &files.cert, &files.key);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(addr, pki.client()).await != third.der {
        assert!(Instant::now() < deadline, "the fixed certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.running.shutdown().await;
}

async fn start_error(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    match vigie_server::start(config, listener, axum::Router::new()).await {
        Ok(running) => {
            running.shutdown().await;
            panic!("started with bad TLS files")
        }
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_with_the_file_named() {
    let pki = Pki::new();
    let leaf = pki.leaf("vigie-1");
    let other = pki.leaf("vigie-other");
    let data = tempfile::tempdir().expect("tempdir");
    let (config, files) = tls_config(data.path(), &leaf);
    let cert = files.cert.display().to_string();
    let key = files.key.display().to_string();

    let mut missing = config.clone();
    missing.tls.cert_file = data.path().join("absent.crt").display().to_string();
    let err = start_error(missing).await;
    assert!(
        err.contains("cannot read certificate file") && err.contains("absent.crt"),
        "{err}"
    );

    std::fs::write(&files.cert, "garbage\n").expect("write");
    let err = start_error(config.clone()).await;
    assert!(err.contains(&cert) && err.contains("no certificate found"), "{err}");

    std::fs::write(&files.cert, &leaf.cert_pem).expect("write");
    std::fs::write(&files.key, &leaf.cert_pem).expect("write");
    let err = start_error(config.clone()).await;
    assert!(err.contains(&key) && err.contains("no private key found"), "{err}");

    std::fs::write(&files.key, &other.key_pem).expect("write");
    let err = start_error(config.clone()).await;
    assert!(
        err.contains(&key) && err.contains(&cert) && err.contains("does not match"),
        "{err}"
    );

    let truncated = &leaf.cert_pem[..leaf.cert_pem.len() / 2];
    std::fs::write(&files.cert, truncated).expect("write");
    std::fs::write(&files.key, &leaf.key_pem).expect("write");
    let err = start_error(config).await;
    assert!(err.contains(&cert), "{err}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_or_half_open_connections() {
    let pki = Pki::new();
    let leaf = pki.leaf("vigie-1");
    let data = tempfile::tempdir().expect("tempdir");
    let (config, _files) = tls_config(data.path(), &leaf);
    let s = TestServer::start_with(config, data).await;
    let addr = s.running.http_addr;

    // An idle keep-alive connection after one request...
    let mut idle = tls_connect(addr, pki.client()).await.expect("TLS handshake");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut idle, &mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...and one that never starts its handshake.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), s.running.shutdown())
        .await
        .expect("shutdown within 5 s despite open connections");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_at_once() {
    let pki = Pki::new();
    let first = pki.leaf("vigie-1");
    let data = tempfile::tempdir().expect("tempdir");
    let (mut config, files) = tls_config(data.path(), &first);
    // No periodic check: only the signal can reload.
    config.tls.reload_interval_secs = 0;
    let s = TestServer::start_with(config, data).await;
    let addr = s.running.http_addr;
    assert_eq!(served_certificate(addr, pki.client()).await, first.der);

    let second = pki.leaf("vigie-2");
    install(&second, &files.cert, &files.key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_certificate(addr, pki.client()).await, first.der);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(addr, pki.client()).await != second.der {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.running.shutdown().await;
}
