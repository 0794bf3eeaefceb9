//! Vigie's server: ingestion, the live twin and the HTTP APIs, started from a
//! [`Config`] on listeners the caller binds, and stopped cleanly on demand.

pub mod actions;
pub mod alarms;
pub mod api;
pub mod audit;
pub mod commands;
pub mod config;
pub mod console;
pub mod contexts;
mod http;
pub mod ingest;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod outbound;
mod retention;
pub mod rules;
pub mod security;
pub mod subscriptions;
pub mod tenants;
pub mod tls;
pub mod twin;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigie_core::device::ProvisioningRequest;
use vigie_store::Store;
use vigie_store_sqlite::{Durability, SqliteStore};

pub use config::Config;

use crate::api::AppState;
use crate::audit::Audit;
use crate::ingest::mqtt::{Consumer, ConsumerOptions, parse_broker_url};
use crate::ingest::{DeviceRegistry, IngestHandle, Writer};
use crate::metrics::Metrics;
use crate::twin::Twin;

/// Entities read per page when the twin is loaded at start.
const LOAD_PAGE: usize = 10_000;

/// Opens the store named by the configuration's URL.
pub async fn open_store(config: &config::StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    let durability: Durability = config.durability.parse().map_err(anyhow::Error::msg)?;
    let store = SqliteStore::open_url(&config.url, durability).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

pub(crate) async fn load_twin(store: &dyn Store) -> anyhow::Result<Twin> {
    let mut all = Vec::new();
    loop {
        let page = store
            .entities_page(all.last().map(|e: &vigie_core::Entity| &e.id), LOAD_PAGE)
            .await?;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    Ok(Twin::from_entities(all))
}

/// Reads an IoT Agent provisioning file; every device must validate.
/// Devices may carry `mqtt_password_hash` or a plaintext `mqtt_password`,
/// hashed here (only the hash reaches the store).
pub fn read_devices_file(path: &Path) -> anyhow::Result<Vec<vigie_core::Device>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: ProvisioningRequest =
        serde_json::from_str(&text).with_context(|| format!("{} is not a provisioning document", path.display()))?;
    doc.devices
        .into_iter()
        .map(|d| {
            let salt = ingest::gatekeeper::random_bytes()?;
            d.into_device(salt)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        })
        .collect()
}

/// A running Vigie. Dropping it does not stop it: call [`Running::shutdown`].
pub struct Running {
    pub http_addr: SocketAddr,
    /// The MQTT broker Vigie consumes from (the embedded one's real address when embedded).
    pub mqtt_addr: Option<SocketAddr>,
    /// The embedded broker's MQTTS listener, when `mqtt.embedded_tls_listen` is set.
    pub mqtts_addr: Option<SocketAddr>,
    pub twin: Arc<Twin>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<DeviceRegistry>,
    pub metrics: Arc<Metrics>,
    pub security: Arc<security::Security>,
    pub audit: Arc<Audit>,
    tenants: Arc<tenants::Tenants>,
    config: Arc<Config>,
    ingest: IngestHandle,
    stop: CancellationToken,
    http: JoinHandle<()>,
    writer: JoinHandle<()>,
    consumer: Option<JoinHandle<()>>,
    retention: JoinHandle<()>,
    flusher: JoinHandle<()>,
    anchor: JoinHandle<()>,
    broker: Option<vigie_broker::EmbeddedBroker>,
}

/// Starts Vigie: store, twin, embedded broker (unless an external one is
/// configured), MQTT consumer, writer, retention and HTTP on `http`.
/// `extra` routes are served beside the API (the demo's fault injection).
pub async fn start(config: Config, http: TcpListener, extra: axum::Router) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    // Checked first: a wrong [sso] section stops the start before anything runs.
    let sso = security::oidc::Oidc::from_config(&config.sso, config.security.enabled)?.map(Arc::new);
    // Certificates first: a bad file stops the start before anything runs.
    let tls = match tls::CertificateFiles::from_config(&config.tls) {
        Some(files) => {
            let cert = Arc::new(tls::ReloadingCert::load(files, tls::provider())?);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::http_server_config(Arc::clone(&cert))?);
            tracing::info!(cert = %config.tls.cert_file, sha256 = %cert.fingerprint(), "TLS certificate loaded");
            Some((cert, acceptor))
        }
        None => None,
    };
    let store = open_store(&config.store).await?;
    let audit = Arc::new(Audit::open(Arc::clone(&store), audit::anchor_path(&config)).await?);
    audit
        .record_system(
            "system.start",
            Some(format!("Vigie {} started", env!("CARGO_PKG_VERSION"))),
            None,
        )
        .await?;
    let twin = Arc::new(load_twin(store.as_ref()).await?);
    tracing::info!(entities = twin.len(), "twin loaded");

    let registry = Arc::new(DeviceRegistry::default());
    for d in store.devices().await? {
        registry.insert(d);
    }
    if !config.ingest.devices_file.is_empty() {
        let devices = read_devices_file(Path::new(&config.ingest.devices_file))?;
        store.put_devices(&devices).await?;
        for d in devices {
            registry.insert(d);
        }
    }

    let security = security::Security::load(config.security.clone(), Arc::clone(&store), config.tls.enabled())
        .await
        .context("cannot load accounts and API credentials")?;
    if !security.enabled() {
        tracing::warn!("security.enabled = false: every caller is an administrator; never run so in production");
    }
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let notifying = tenants::Notifying::from_config(&config, Arc::clone(&security))?;
    let subscriptions = notifying
        .subscriptions(&store, &twin, &stop)
        .await
        .context("cannot load subscriptions")?;
    let writer_done = CancellationToken::new();
    let (tx, rx) = mpsc::channel(config.ingest.queue_capacity.max(1));

    let writer = {
        let w = Writer {
            store: Arc::clone(&store),
            twin: Arc::clone(&twin),
            metrics: Arc::clone(&metrics),
            batch_max: config.ingest.batch_max.max(1),
            observers: vec![Arc::clone(&subscriptions) as Arc<dyn ingest::ChangeObserver>],
            audit: ingest::AuditTrail::InBatch(Arc::clone(&audit)),
        };
        let (stop, done) = (stop.clone(), writer_done.clone());
        let task = w.spawn(rx, stop).context("cannot start the writer's thread")?;
        tokio::spawn(async move {
            task.join().await;
            done.cancel();
        })
    };

    // The broker: external when configured, else embedded.
    let mut credentials = (!config.mqtt.username.is_empty()).then(|| {
        (
            config.mqtt.username.clone(),
            vigie_core::credentials::Secret::from_configured(config.mqtt.password.clone()),
        )
    });
    let (broker, broker_host, broker_port) = if config.mqtt.url.is_empty() && config.mqtt.embedded {
        let broker_config = vigie_broker::BrokerConfig {
            listen: config.mqtt.embedded_listen,
            // Vigie acknowledges per committed batch: the window must hold a
            // batch, or the broker would stall waiting for acks.
            max_inflight: config.mqtt.receive_maximum.max(1),
            tls: ingest::gatekeeper::mqtts_config(&config)?,
            ..Default::default()
        };
        let broker = if config.mqtt.require_device_auth {
            // Vigie's own client logs in with a secret made for this run only.
            let (secret, hash) = ingest::gatekeeper::new_secret()?;
            let gatekeeper = ingest::gatekeeper::DeviceGatekeeper::new(
                &config.mqtt,
                hash,
                Arc::clone(&registry),
                Arc::clone(&metrics),
            )?;
            credentials = Some((config.mqtt.client_id.clone(), secret));
            vigie_broker::EmbeddedBroker::start_with_gatekeeper(broker_config, Arc::new(gatekeeper)).await
        } else {
            tracing::warn!("mqtt.require_device_auth = false: any client may publish on any device's topic");
            vigie_broker::EmbeddedBroker::start(broker_config).await
        }
        .context("cannot start the embedded MQTT broker")?;
        let addr = broker.local_addr();
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        (Some(broker), Some(host), addr.port())
    } else if !config.mqtt.url.is_empty() {
        let (host, port) = parse_broker_url(&config.mqtt.url)?;
        (None, Some(host), port)
    } else {
        (None, None, 0)
    };
    let mqtt_addr = match &broker_host {
        Some(host) => tokio::net::lookup_host((host.as_str(), broker_port))
            .await
            .ok()
            .and_then(|mut a| a.next()),
        None => None,
    };
    let commands = Arc::new(commands::Commands::new(
        Arc::clone(&store),
        Arc::clone(&registry),
        std::time::Duration::from_secs(config.commands.timeout_secs.max(1)),
    ));
    let consumer = broker_host.map(|host| {
        let consumer = Consumer::new(
            ConsumerOptions {
                host,
                port: broker_port,
                client_id: config.mqtt.client_id.clone(),
                share_group: config.mqtt.share_group.clone(),
                receive_maximum: config.mqtt.receive_maximum.max(1),
                dead_letter_payload_bytes: config.ingest.dead_letter_payload_bytes,
                credentials,
            },
            Arc::clone(&registry),
            tx.clone(),
            Arc::clone(&metrics),
        )
        .with_commands(Arc::clone(&commands));
        let (stop, done) = (stop.clone(), writer_done.clone());
        tokio::spawn(consumer.run(stop, done))
    });
    tokio::spawn(Arc::clone(&commands).run_timeouts(stop.clone()));
    let notifier = Arc::new(notify::Notifier::from_config(
        &config.mail,
        &config.ngsi_ld.outbound_ca_file,
    )?);
    let rulebook = Arc::new(
        rules::Rulebook::load(
            Arc::clone(&store),
            Arc::clone(&audit),
            rules::load_file(&config.alarms.rules_file)?,
            notifier.mails(),
        )
        .await?,
    );
    let actions = actions::Actions::new(
        Arc::clone(&commands),
        Arc::clone(&notifier),
        IngestHandle::new(tx.clone()),
        Arc::new(actions::AuditedWorkOrders {
            audit: Arc::clone(&audit),
        }),
        Arc::clone(&audit),
    );
    let rules_in_force = rulebook.watch();
    let alarms = Arc::new(
        alarms::Alarms::load(
            Arc::clone(&store),
            Arc::clone(&twin),
            Arc::clone(&audit),
            actions,
            alarms::Policy::from_config(&config, notifier)?,
            rules_in_force.borrow().clone(),
        )
        .await?,
    );
    tokio::spawn(Arc::clone(&alarms).run(stop.clone(), rules_in_force));

    let retention = tokio::spawn(retention::run(
        Arc::clone(&store),
        Arc::clone(&audit),
        config.history.clone(),
        stop.clone(),
    ));

    let flusher = tokio::spawn(Arc::clone(&security).run_flusher(std::time::Duration::from_secs(60), stop.clone()));
    let anchor = tokio::spawn(Arc::clone(&audit).run_anchor(std::time::Duration::from_millis(100), stop.clone()));

    let tenants = Arc::new(tenants::Tenants::new(
        Arc::new(tenants::Tenant {
            name: None,
            store: Arc::clone(&store),
            twin: Arc::clone(&twin),
            ingest: IngestHandle::new(tx.clone()),
            subscriptions,
        }),
        Arc::clone(&config),
        Arc::clone(&metrics),
        notifying,
        Arc::clone(&audit),
        stop.clone(),
    ));
    let contexts = Arc::new(contexts::Contexts::from_config(&config.ngsi_ld)?);
    let state = AppState::new(api::Services {
        contexts,
        tenants: Arc::clone(&tenants),
        config: Arc::clone(&config),
        twin: Arc::clone(&twin),
        ingest: IngestHandle::new(tx.clone()),
        registry: Arc::clone(&registry),
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        security: Arc::clone(&security),
        audit: Arc::clone(&audit),
        sso,
        console: Arc::new(console::Console::load(&config.console)?),
        commands,
        alarms,
        rulebook,
        stop: stop.clone(),
    });
    let http_addr = http.local_addr()?;
    let app = api::hardening::harden(api::router(state, extra), tls.is_some(), &config.http);
    let acceptor = tls.map(|(cert, acceptor)| {
        let interval = std::time::Duration::from_secs(config.tls.reload_interval_secs);
        tokio::spawn(cert.watch(interval, stop.clone()));
        acceptor
    });
    http::log_exposure(http_addr, acceptor.is_some());
    let http = tokio::spawn(http::serve(
        http,
        app,
        http::ServeOptions::new(&config, acceptor),
        stop.clone(),
    ));
    tracing::info!(%http_addr, ?mqtt_addr, "Vigie is serving");
    Ok(Running {
        http_addr,
        mqtt_addr,
        mqtts_addr: broker.as_ref().and_then(|b| b.tls_addr()),
        twin,
        store,
        registry,
        metrics,
        audit,
        ingest: IngestHandle::new(tx),
        stop,
        http,
        writer,
        consumer,
        retention,
        flusher,
        anchor,
        broker,
        security,
        tenants,
        config,
    })
}

impl Running {
    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Provisions devices (the store first, then the registry).
    pub async fn provision(&self, devices: Vec<vigie_core::Device>) -> anyhow::Result<()> {
        self.store.put_devices(&devices).await?;
        for d in devices {
            self.registry.insert(d);
        }
        Ok(())
    }

    /// Issues a service token (tests, benchmarks, the demo's simulator).
    pub async fn issue_service_token(
        &self,
        name: &str,
        role: vigie_core::Role,
        scope: vigie_core::ScopeGrant,
    ) -> anyhow::Result<String> {
        let issued = self
            .security
            .issue_credential(
                security::NewCredential {
                    kind: vigie_core::account::CredentialKind::ServiceToken,
                    name: name.to_owned(),
                    role,
                    scope,
                    requests_per_minute: None,
                    expires_at: None,
                },
                "vigie",
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot issue a service token: {e}"))?;
        Ok(issued.token)
    }

    /// Creates or replaces entities through the writer, like a batch upsert.
    pub async fn upsert(&self, entities: Vec<vigie_core::Entity>) -> anyhow::Result<()> {
        for chunk in entities.chunks(5_000) {
            self.ingest
                .write(ingest::WriteOp::Batch {
                    kind: ingest::BatchKind::UpsertReplace,
                    entities: chunk.to_vec(),
                })
                .await?;
        }
        Ok(())
    }

    /// Stops cleanly: no new requests or messages, every queued write made
    /// durable and acknowledged, then the broker closes.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.stop.cancel();
        // Our own queue handle must go, or the writer would wait for it forever.
        drop(self.ingest);
        let _ = self.http.await;
        self.tenants.shutdown().await;
        // The default tenant's queue handle is ours too.
        drop(self.tenants);
        let _ = self.writer.await;
        if let Some(c) = self.consumer {
            let _ = c.await;
        }
        let _ = self.retention.await;
        let _ = self.flusher.await;
        let _ = self.anchor.await;
        if let Some(b) = self.broker {
            b.shutdown().await;
        }
        // What this run made durable: every QoS 1 message counted here was
        // acknowledged after its commit (an operator's last word on the run).
        tracing::info!(
            mqtt_messages = self.metrics.mqtt_messages.load(std::sync::atomic::Ordering::Relaxed),
            points_written = self.metrics.points_written.load(std::sync::atomic::Ordering::Relaxed),
            "stopped"
        );
    }
}
