//! NGSI-LD tenants (`NGSILD-Tenant`): separate twins and stores in one Vigie.
//!
//! The default tenant (no header) is the city's own data, fed by MQTT. Any
//! other tenant appears on its first write, with no restart and no
//! configuration: its entities live in a SQLite file of its own beside the
//! main one (`vigie.db` → `vigie.tenant-<name>.db`), with its own twin and
//! writer, so one tenant's load or data never reaches another. Reads of a
//! tenant that was never written answer `NonexistentTenant`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigie_store::Store;

use crate::api::ApiError;
use crate::audit::Audit;
use crate::config::Config;
use crate::ingest::{AuditTrail, IngestHandle, Writer, WriterTask};
use crate::metrics::Metrics;
use crate::outbound::HttpClient;
use crate::security::Security;
use crate::subscriptions::{DeliveryOptions, Subscriptions};
use crate::twin::Twin;

/// The request header naming the tenant.
pub const TENANT_HEADER: &str = "NGSILD-Tenant";
/// Longest tenant name.
const MAX_NAME_LEN: usize = 64;

/// One tenant's data: its store, its live twin and its writer's queue.
pub struct Tenant {
    /// `None` for the default tenant.
    pub name: Option<String>,
    pub store: Arc<dyn Store>,
    pub twin: Arc<Twin>,
    pub ingest: IngestHandle,
    pub subscriptions: Arc<Subscriptions>,
}

/// What every tenant's subscriptions share.
#[derive(Clone)]
pub struct Notifying {
    pub security: Arc<Security>,
    pub http: Arc<HttpClient>,
    pub options: DeliveryOptions,
}

impl Notifying {
    pub fn from_config(config: &Config, security: Arc<Security>) -> anyhow::Result<Self> {
        let c = &config.ngsi_ld;
        let http = HttpClient::new(
            &c.outbound_ca_file,
            false,
            Duration::from_secs(c.notification_timeout_secs.max(1)),
            64 * 1024,
        )?;
        Ok(Self {
            security,
            http: Arc::new(http),
            options: DeliveryOptions {
                batch_max: c.notification_batch_max.max(1),
                retry_max: Duration::from_secs(c.notification_retry_max_secs.max(1)),
                ..DeliveryOptions::default()
            },
        })
    }

    /// A tenant's subscriptions, loaded from its store, delivering until `stop`.
    pub async fn subscriptions(
        &self,
        store: &Arc<dyn Store>,
        twin: &Arc<Twin>,
        stop: &CancellationToken,
    ) -> Result<Arc<Subscriptions>, vigie_store::StoreError> {
        Subscriptions::load(
            Arc::clone(store),
            Arc::clone(twin),
            Arc::clone(&self.security),
            Arc::clone(&self.http),
            self.options.clone(),
            stop.clone(),
        )
        .await
    }
}

/// Every tenant, the default one first.
pub struct Tenants {
    default: Arc<Tenant>,
    others: tokio::sync::Mutex<HashMap<String, Arc<Tenant>>>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    notifying: Notifying,
    audit: Arc<Audit>,
    stop: CancellationToken,
    /// Writers of the other tenants, awaited at shutdown.
    writers: Mutex<Vec<WriterTask>>,
}

impl Tenants {
    pub fn new(
        default: Arc<Tenant>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        notifying: Notifying,
        audit: Arc<Audit>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            default,
            others: tokio::sync::Mutex::new(HashMap::new()),
            config,
            metrics,
            notifying,
            audit,
            stop,
            writers: Mutex::new(Vec::new()),
        }
    }

    pub fn default_tenant(&self) -> &Arc<Tenant> {
        &self.default
    }

    /// The tenant a read addresses: `NonexistentTenant` when it was never written.
    pub async fn for_read(&self, headers: &HeaderMap) -> Result<Arc<Tenant>, ApiError> {
        match tenant_name(headers)? {
            None => Ok(Arc::clone(&self.default)),
            Some(name) => self
                .open(&name, false)
                .await?
                .ok_or_else(|| ApiError::NonexistentTenant(format!("tenant '{name}' does not exist"))),
        }
    }

    /// The tenant a write addresses, created on first use.
    pub async fn for_write(&self, headers: &HeaderMap) -> Result<Arc<Tenant>, ApiError> {
        match tenant_name(headers)? {
            None => Ok(Arc::clone(&self.default)),
            Some(name) => self
                .open(&name, true)
                .await?
                .ok_or_else(|| ApiError::Internal(format!("tenant '{name}' could not be created"))),
        }
    }

    /// The names of the tenants that exist (opened or on disk), default excluded.
    pub async fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.others.lock().await.keys().cloned().collect();
        if let Some((dir, prefix)) = self.file_pattern() {
            let found = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            for entry in found {
                let file = entry.file_name();
                let name = file
                    .to_str()
                    .and_then(|f| f.strip_prefix(&prefix))
                    .and_then(|f| f.strip_suffix(".db"));
                if let Some(name) = name
                    && validate(name).is_ok()
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        names
    }

    /// Opens a tenant's store (creating it when `create`), loads its twin and
    /// starts its writer. `None` when it does not exist and `create` is false.
    async fn open(&self, name: &str, create: bool) -> Result<Option<Arc<Tenant>>, ApiError> {
        let mut others = self.others.lock().await;
        if let Some(t) = others.get(name) {
            return Ok(Some(Arc::clone(t)));
        }
        if self.stop.is_cancelled() {
            return Err(ApiError::Unavailable("Vigie is shutting down".into()));
        }
        let path = self
            .store_path(name)
            .ok_or_else(|| ApiError::NoMultiTenantSupport("this store's URL cannot hold other tenants".into()))?;
        if !create && !path.exists() {
            return Ok(None);
        }
        if others.len() >= self.config.api.max_tenants {
            return Err(ApiError::Forbidden(format!(
                "at most {} tenants (api.max_tenants)",
                self.config.api.max_tenants
            )));
        }
        let mut store_config = self.config.store.clone();
        store_config.url = format!("sqlite://{}", path.display());
        let store = crate::open_store(&store_config).await.map_err(|e| {
            tracing::error!(tenant = name, error = %e, "cannot open a tenant's store");
            ApiError::Internal(format!("cannot open tenant '{name}': {e}"))
        })?;
        let twin = Arc::new(
            crate::load_twin(store.as_ref())
                .await
                .map_err(|e| ApiError::Internal(format!("cannot load tenant '{name}': {e}")))?,
        );
        let subscriptions = self
            .notifying
            .subscriptions(&store, &twin, &self.stop)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot load tenant '{name}': {e}")))?;
        let (tx, rx) = mpsc::channel(self.config.ingest.queue_capacity.max(1));
        let tenant = Arc::new(Tenant {
            name: Some(name.to_owned()),
            store: Arc::clone(&store),
            twin: Arc::clone(&twin),
            ingest: IngestHandle::new(tx),
            subscriptions: Arc::clone(&subscriptions),
        });
        let writer = Writer {
            store,
            twin,
            metrics: Arc::clone(&self.metrics),
            batch_max: self.config.ingest.batch_max.max(1),
            observers: vec![subscriptions],
            // The trail is in the main store, not the tenant's.
            audit: AuditTrail::Apart(Arc::clone(&self.audit)),
        };
        let stop = self.stop.clone();
        let task = writer
            .spawn(rx, stop)
            .map_err(|e| ApiError::Internal(format!("cannot start tenant '{name}''s writer: {e}")))?;
        self.writers.lock().unwrap_or_else(PoisonError::into_inner).push(task);
        tracing::info!(tenant = name, entities = tenant.twin.len(), "tenant opened");
        others.insert(name.to_owned(), Arc::clone(&tenant));
        Ok(Some(tenant))
    }

    /// The directory and file-name prefix of tenant stores, from the main store's URL.
    fn file_pattern(&self) -> Option<(PathBuf, String)> {
        let url = &self.config.store.url;
        let path = Path::new(url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?);
        let stem = path.file_stem()?.to_str()?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Some((dir, format!("{stem}.tenant-")))
    }

    fn store_path(&self, name: &str) -> Option<PathBuf> {
        let (dir, prefix) = self.file_pattern()?;
        Some(dir.join(format!("{prefix}{name}.db")))
    }

    /// Closes every other tenant's queue and waits for its writer to drain.
    pub async fn shutdown(&self) {
        let others: Vec<Arc<Tenant>> = self.others.lock().await.drain().map(|(_, t)| t).collect();
        let writers = std::mem::take(&mut *self.writers.lock().unwrap_or_else(PoisonError::into_inner));
        for w in writers {
            w.join().await;
        }
        // Their workers stop with the stop token; their last writes are awaited.
        for tenant in std::iter::once(&self.default).chain(&others) {
            tenant.subscriptions.stopped().await;
        }
    }
}

/// The tenant named by a request, if any; the header's value is validated.
pub fn tenant_name(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Ok(None);
    };
    let name = value
        .to_str()
        .map_err(|_| ApiError::BadRequestData(format!("the {TENANT_HEADER} header is not ASCII text")))?
        .trim();
    if name.is_empty() {
        return Ok(None);
    }
    validate(name)?;
    Ok(Some(name.to_owned()))
}

/// Tenant names become file names: letters, digits, `-` and `_` only.
fn validate(name: &str) -> Result<(), ApiError> {
    let valid = name.len() <= MAX_NAME_LEN && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequestData(format!(
            "tenant '{name}' is not a valid name: up to {MAX_NAME_LEN} letters, digits, '-' or '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_safe_file_names() {
        let mut h = HeaderMap::new();
        assert_eq!(tenant_name(&h).unwrap(), None);
        h.insert(TENANT_HEADER, "city-b_2".parse().unwrap());
        assert_eq!(tenant_name(&h).unwrap().as_deref(), Some("city-b_2"));
        for bad in ["../etc", "a b", "a/b", &"x".repeat(65)] {
            h.insert(TENANT_HEADER, bad.parse().unwrap());
            assert!(matches!(tenant_name(&h), Err(ApiError::BadRequestData(_))), "{bad}");
        }
    }
}
