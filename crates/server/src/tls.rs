//! TLS for the HTTP listener: the certificate and key from PEM files, checked
//! at start (a bad file stops the start with an error naming it) and reloaded
//! without restart when the files change or on SIGHUP. A reload that fails
//! keeps the certificate in service and logs why.
//!
//! Only rustls' `ring` provider is used, given explicitly: no process-wide
//! default provider is installed.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// Why a certificate or key file cannot be served; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate file {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("key file {key} does not match the certificate in {cert} (the key is not the certificate's)")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring provider, the only one Vigie builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate and key file paths of a configuration.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertificateFiles {
    /// The files named by `[tls]`, or `None` when TLS is not configured.
    pub fn from_config(tls: &TlsConfig) -> Option<Self> {
        tls.enabled().then(|| Self {
            cert: PathBuf::from(&tls.cert_file),
            key: PathBuf::from(&tls.key_file),
        })
    }

    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        Ok((read("certificate", &self.cert)?, read("key", &self.key)?))
    }

    /// Reads, parses and checks both files: the chain parses, the key is
    /// supported and is the end-entity certificate's.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let (cert_pem, key_pem) = self.read()?;
        self.parse(provider, &cert_pem, &key_pem)
    }

    fn parse(&self, provider: &CryptoProvider, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
        let cert_err = |message: String| TlsError::Certificate {
            path: self.cert.clone(),
            message,
        };
        let key_err = |message: String| TlsError::Key {
            path: self.key.clone(),
            message,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_err(format!("malformed PEM: {e}")))?;
        if chain.is_empty() {
            return Err(cert_err(
                "no certificate found (expected PEM '-----BEGIN CERTIFICATE-----' blocks)".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => key_err(
                "no private key found (expected a PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' block)"
                    .into(),
            ),
            other => key_err(format!("malformed PEM: {other}")),
        })?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_err(format!("unsupported or invalid private key: {e}")))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            // A key that cannot tell its public half is checked by clients instead.
            Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
            Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
            }),
            Err(e) => Err(cert_err(format!(
                "the first certificate is not a valid X.509 certificate: {e}"
            ))),
        }
    }
}

/// A hash of both files' contents, to tell whether they changed.
fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    cert_pem.hash(&mut h);
    key_pem.hash(&mut h);
    h.finish()
}

/// SHA-256 of the end-entity certificate, as `openssl x509 -fingerprint -sha256` shows it.
pub fn sha256_fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn leaf_fingerprint(key: &CertifiedKey) -> String {
    key.end_entity_cert()
        .map_or_else(|_| "-".to_owned(), sha256_fingerprint)
}

/// The certificate in service, swapped in place on reload: every new
/// handshake gets the current one, connections already open keep theirs.
#[derive(Debug)]
pub struct ReloadingCert {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The contents last seen (loaded or refused), so a bad file is reported once.
    seen: Mutex<u64>,
}

/// What a reload check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are as last seen.
    Unchanged,
    /// The new certificate is in service; its SHA-256 fingerprint.
    Reloaded(String),
}

impl ReloadingCert {
    /// Loads the files; fails (naming the file and the problem) if they cannot be served.
    pub fn load(files: CertificateFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = files.read()?;
        let key = files.parse(&provider, &cert_pem, &key_pem)?;
        warn_if_key_readable_by_others(&files.key);
        Ok(Self {
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(fingerprint(&cert_pem, &key_pem)),
            files,
            provider,
        })
    }

    /// The certificate in service.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The SHA-256 fingerprint of the certificate in service.
    pub fn fingerprint(&self) -> String {
        leaf_fingerprint(&self.current())
    }

    /// Reloads if the files' contents changed since last seen (or always when
    /// `force`). On error the certificate in service stays.
    pub fn reload(&self, force: bool) -> Result<Reload, TlsError> {
        let (cert_pem, key_pem) = self.files.read()?;
        let print = fingerprint(&cert_pem, &key_pem);
        {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == print && !force {
                return Ok(Reload::Unchanged);
            }
            // Seen, whatever comes of it: a bad file is reported once, not at every check.
            *seen = print;
        }
        let key = Arc::new(self.files.parse(&self.provider, &cert_pem, &key_pem)?);
        let fingerprint = leaf_fingerprint(&key);
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        Ok(Reload::Reloaded(fingerprint))
    }

    /// Checks and logs: a new certificate at info, a refused one at error.
    fn reload_and_log(&self, force: bool) {
        match self.reload(force) {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded(sha256)) => tracing::info!(
                cert = %self.files.cert.display(),
                %sha256,
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                serving = %self.fingerprint(),
                "TLS certificate not reloaded; the previous one stays in service"
            ),
        }
    }

    /// Watches the files until `stop`: every `interval` (none when zero), and
    /// on SIGHUP (unix).
    pub async fn watch(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS certificates reload on the interval only");
                None
            }
        };
        let mut ticks = (!interval.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            let hangup_got = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick => {
                    self.reload_and_log(false);
                    continue;
                }
                got = hup => got.is_some(),
            };
            if hangup_got {
                tracing::info!("SIGHUP: reloading the TLS certificate");
                self.reload_and_log(true);
            } else {
                #[cfg(unix)]
                {
                    hangup = None;
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The server configuration for HTTPS: TLS 1.2 and 1.3, HTTP/1.1 by ALPN,
/// the certificate from `cert`.
pub fn http_server_config(cert: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&cert.provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            key = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the TLS private key is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_path: &Path) {}
