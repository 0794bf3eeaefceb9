//! Serving the HTTP API: plain or TLS (rustls), HTTP/1.1, with the limits that
//! keep slow or numerous clients from holding the server: a cap on open
//! connections, a deadline for the TLS handshake and for each request's
//! headers (which also closes idle keep-alive connections), and a bounded
//! graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Config;

/// Most headers in one request.
const MAX_HEADERS: usize = 100;
/// Largest request head (request line and headers), in bytes.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest wait for open requests to finish at shutdown.
const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How to serve.
#[derive(Clone)]
pub struct ServeOptions {
    /// For the TLS handshake, then for each request's headers.
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// How long open requests may go on after the stop signal.
    pub shutdown_grace: Duration,
    /// `Some` for HTTPS.
    pub tls: Option<TlsAcceptor>,
}

impl ServeOptions {
    pub fn new(config: &Config, tls: Option<TlsAcceptor>) -> Self {
        Self {
            header_timeout: Duration::from_secs(config.http.header_timeout_secs.max(1)),
            max_connections: config.http.max_connections.max(1),
            shutdown_grace: Duration::from_secs(config.http.request_timeout_secs.max(1)).min(MAX_SHUTDOWN_GRACE),
            tls,
        }
    }
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish
/// (idle keep-alive connections close at once) for at most the grace period.
/// Each request carries its peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, app: Router, options: ServeOptions, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // At the cap, stop accepting: further clients wait in the listen backlog.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!(error = %e, "cannot accept HTTP connections");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let (app, http1, stop, tls) = (app.clone(), http1.clone(), stop.clone(), options.tls.clone());
        let header_timeout = options.header_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => connection(http1, tcp, peer, app, stop).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        _ = stop.cancelled() => return,
                        h = tokio::time::timeout(header_timeout, acceptor.accept(tcp)) => h,
                    };
                    match handshake {
                        Ok(Ok(tls)) => connection(http1, tls, peer, app, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    // No new connections from here on.
    drop(listener);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing HTTP connections still busy after the shutdown grace period"
        );
        connections.shutdown().await;
    }
}

/// One connection, HTTP/1.1 with keep-alive, until the client closes, a
/// deadline passes, or `stop` (then it ends after the request in progress).
async fn connection<I>(
    http1: hyper::server::conn::http1::Builder,
    io: I,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|never| match never {})) }
    });
    let conn = http1.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Clients that vanish, or are too slow, are routine: not worth more than debug.
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Errors of one connection, not of the listener: accept the next one.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Logs how the API is exposed, warning when it is plain HTTP beyond this machine.
pub fn log_exposure(listen: SocketAddr, tls: bool) {
    if tls {
        tracing::info!(%listen, "HTTPS (TLS) on the API");
    } else if listen.ip().is_loopback() {
        tracing::info!(%listen, "plain HTTP on localhost only: configure [tls] for production");
    } else {
        tracing::warn!(
            %listen,
            "plain HTTP on a non-loopback address: credentials and data cross the network unencrypted; \
             configure [tls] (tls.cert_file, tls.key_file) or put a TLS proxy in front"
        );
    }
}
