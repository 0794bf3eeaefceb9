//! MQTTS: TLS terminated in front of the broker's plain listener.
//!
//! rmqtt 0.24's own TLS listener (rmqtt-net's `tls` feature) builds rustls
//! with the aws-lc-rs provider, a slow C build we keep out of Vigie. So TLS
//! is terminated here with tokio-rustls on the *ring* provider, and each TLS
//! connection is piped to the broker's plain listener over a loopback TCP
//! connection. The client certificate's Common Name survives the hop: the
//! proxy records it under the local address of its loopback connection,
//! which is exactly the remote address the broker sees, and the
//! authenticate hook looks it up there ([`TlsPeers`]).
//!
//! The certificate, key and client CA are re-read every `reload_interval`
//! when a file's modification time changed; new connections get the new
//! certificate, established ones keep theirs. A reload that fails (a file
//! half-written, a key not matching) is logged and the previous
//! certificate stays in use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::auth::{TlsPeer, TlsPeers};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The MQTTS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListenerConfig {
    /// Address of the MQTTS listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// PEM certificate chain, server certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates client certificates are verified against; `None`:
    /// no client certificates are asked for. Clients without a certificate
    /// are accepted either way (they then authenticate with a password).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for change. Zero disables reloading.
    pub reload_interval: Duration,
}

/// Why the TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

type Mtimes = Vec<Option<SystemTime>>;

fn mtimes(cfg: &TlsListenerConfig) -> Mtimes {
    let mut files = vec![&cfg.cert_file, &cfg.key_file];
    files.extend(cfg.client_ca_file.as_ref());
    files
        .into_iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Reads the files and builds a rustls server configuration (ring provider).
pub fn load_server_config(cfg: &TlsListenerConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&cfg.cert_file)?;
    let key_pem = read(&cfg.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(&cfg.key_file, format!("no usable PEM private key: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_file)? {
                roots
                    .add(ca)
                    .map_err(|e| invalid(ca_file, format!("unusable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                // Password-authenticated devices need no certificate.
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid(ca_file, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&cfg.key_file, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Ok(Arc::new(config))
}

/// The running MQTTS listener: its accept loop (which owns the connection
/// tasks) and its reload task.
#[derive(Debug)]
pub(crate) struct TlsListener {
    pub local_addr: SocketAddr,
    accept: JoinHandle<()>,
    reload: Option<JoinHandle<()>>,
}

impl TlsListener {
    /// Binds `cfg.listen` and pipes every TLS connection to `upstream` (the
    /// plain listener), recording its peer in `peers`.
    pub async fn start(
        cfg: TlsListenerConfig,
        upstream: SocketAddr,
        peers: TlsPeers,
    ) -> Result<Self, crate::BrokerError> {
        let server_config = load_server_config(&cfg).map_err(crate::BrokerError::Tls)?;
        let current = Arc::new(RwLock::new(server_config));
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| crate::BrokerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| crate::BrokerError::Bind {
            addr: cfg.listen,
            source,
        })?;

        let reload = (!cfg.reload_interval.is_zero()).then(|| {
            let current = Arc::clone(&current);
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let mut seen = mtimes(&cfg);
                let mut tick = tokio::time::interval(cfg.reload_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let now = mtimes(&cfg);
                    if now == seen {
                        continue;
                    }
                    match load_server_config(&cfg) {
                        Ok(config) => {
                            *current.write().unwrap_or_else(PoisonError::into_inner) = config;
                            seen = now;
                            tracing::info!(cert_file = %cfg.cert_file.display(), "MQTTS certificate reloaded");
                        }
                        // Keep `seen` so a half-written file is retried next tick.
                        Err(e) => {
                            tracing::warn!(error = %e, "MQTTS certificate not reloaded; keeping the previous one")
                        }
                    }
                }
            })
        });

        let accept = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, remote)) => {
                            let config = Arc::clone(&current.read().unwrap_or_else(PoisonError::into_inner));
                            let peers = Arc::clone(&peers);
                            connections.spawn(proxy(socket, remote, TlsAcceptor::from(config), upstream, peers));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "MQTTS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        tracing::info!(%local_addr, "embedded MQTT broker: MQTTS listening");
        Ok(Self {
            local_addr,
            accept,
            reload,
        })
    }

    /// Stops accepting and closes every MQTTS connection.
    pub async fn shutdown(self) {
        if let Some(reload) = self.reload {
            reload.abort();
            let _ = reload.await;
        }
        // Dropping the accept task's JoinSet aborts the connection tasks.
        self.accept.abort();
        let _ = self.accept.await;
    }
}

/// Removes the peer record when the proxied connection ends, however it ends.
struct PeerGuard {
    peers: TlsPeers,
    key: SocketAddr,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

async fn proxy(socket: TcpStream, remote: SocketAddr, acceptor: TlsAcceptor, upstream: SocketAddr, peers: TlsPeers) {
    let _ = socket.set_nodelay(true);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "MQTTS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "MQTTS handshake timed out");
            return;
        }
    };
    // rustls only hands out a client certificate the client CA verified.
    let cert_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| common_name(cert));
    let mut plain = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%remote, %upstream, error = %e, "MQTTS: cannot reach the broker's plain listener");
            return;
        }
    };
    let _ = plain.set_nodelay(true);
    let key = match plain.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "MQTTS: no local address for the proxied connection");
            return;
        }
    };
    tracing::debug!(%remote, via = %key, cert_cn = ?cert_cn, "MQTTS connection");
    peers.lock().unwrap_or_else(PoisonError::into_inner).insert(
        key,
        TlsPeer {
            remote_addr: Some(remote),
            cert_cn,
        },
    );
    let _guard = PeerGuard { peers, key };
    if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut plain).await {
        tracing::debug!(%remote, error = %e, "MQTTS connection closed");
    }
}

/// The subject Common Name (OID 2.5.4.3) of a DER X.509 certificate: the
/// first one, as UTF-8 (UTF8String, PrintableString or IA5String). A minimal
/// DER walk, enough for certificates rustls has already verified.
pub(crate) fn common_name(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    let (tag, certificate, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // version [0] (optional), serialNumber, signature, issuer, validity, subject.
    let (tag, _, rest) = tlv(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (tag, mut subject, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, rest) = tlv(subject)?;
        subject = rest;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, attribute, rest) = tlv(rdn)?;
            rdn = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = tlv(attribute)?;
            if tag == 0x06 && oid == OID_CN {
                let (tag, value, _) = tlv(value)?;
                // UTF8String, PrintableString, IA5String.
                return matches!(tag, 0x0c | 0x13 | 0x16)
                    .then(|| String::from_utf8(value.to_vec()).ok())
                    .flatten();
            }
        }
    }
    None
}

/// One DER tag-length-value: (tag, value, rest).
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walk_refuses_garbage() {
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x05, 0x01]), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            tlv(&[0x04, 0x02, 0xaa, 0xbb, 0xcc]),
            Some((0x04, &[0xaa, 0xbb][..], &[0xcc][..]))
        );
    }
}
