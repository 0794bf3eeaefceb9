//! Vigie's embedded MQTT broker: [rmqtt] 0.24 running inside the caller's
//! tokio runtime, so `vigie demo` needs no external broker.
//!
//! One plain-TCP listener speaks MQTT 3.1.1 and 5, optionally with an MQTTS
//! listener in front of it ([`TlsListenerConfig`]). Who may connect, publish
//! and subscribe is decided by a [`Gatekeeper`] when the broker is started
//! with [`EmbeddedBroker::start_with_gatekeeper`]. Shared subscriptions
//! (`$share/{group}/{filter}`, round-robin, connected members first) and
//! retained messages (in memory) are enabled. Nothing is persisted: sessions,
//! queues and retained messages live as long as the [`EmbeddedBroker`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigie_broker::BrokerError> {
//! use vigie_broker::{BrokerConfig, EmbeddedBroker};
//!
//! let broker = EmbeddedBroker::start(BrokerConfig {
//!     listen: "127.0.0.1:0".parse().expect("valid address"),
//!     ..BrokerConfig::default()
//! })
//! .await?;
//! println!("MQTT on {}", broker.local_addr());
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Logging
//!
//! rmqtt logs through the `log` crate, this crate through `tracing`. A
//! binary that installs a `tracing-subscriber` with its default `tracing-log`
//! feature (`tracing_subscriber::fmt().init()` does) receives both; rmqtt's
//! records appear under targets `rmqtt`, `rmqtt_net`, ...
//!
//! # Process-wide state
//!
//! Each broker has its own rmqtt `ServerContext` (sessions, routes, retained
//! messages, share groups): several brokers in one process do not see each
//! other. The only process-global state in rmqtt 0.24 is a cached "system is
//! busy" flag, which we bypass by disabling rmqtt's busy check.
//!
//! [`EmbeddedBroker::shutdown`] frees the broker's state; one idle rmqtt task
//! (its handshake task-queue runner, which rmqtt cannot stop) stays behind
//! per stopped broker.
//!
//! [rmqtt]: https://github.com/rmqtt/rmqtt

mod auth;
mod extensions;
mod tls;

pub use auth::{Client, ConnectAttempt, Gatekeeper, Refusal};
pub use tls::{TlsError, TlsListenerConfig, load_server_config};

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::router::DefaultRouter;
use rmqtt::server::MqttServer;
use rmqtt::shared::DefaultShared;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::auth::{GatekeeperHook, TlsPeers};
use crate::extensions::{MemoryRetainStorage, RoundRobinSharedSubscription};
use crate::tls::TlsListener;

/// Settings of the embedded broker. Every field has a documented default
/// (see [`BrokerConfig::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Address of the MQTT (3.1.1 and 5) TCP listener. Port 0 picks a free
    /// port; read it back with [`EmbeddedBroker::local_addr`].
    /// Default: `127.0.0.1:1883` (local only; use `0.0.0.0` to expose it).
    pub listen: SocketAddr,
    /// Maximum number of sessions, connected or not (persistent sessions of
    /// disconnected clients count too). Further CONNECTs are refused with
    /// "server unavailable". 0 means unlimited. Default: 10 000.
    pub max_connections: usize,
    /// Largest MQTT packet accepted from a client, in bytes. Default: 1 MiB.
    pub max_packet_size: u32,
    /// QoS 1/2 messages in flight per client, both ways (the MQTT 5 "receive
    /// maximum"; a v5 client may ask for fewer). Must be at least 1.
    /// Default: 128.
    pub max_inflight: u16,
    /// Messages queued per session beyond the in-flight window (a slow or
    /// disconnected persistent subscriber). When full, new messages for that
    /// session are dropped (logged by rmqtt). Default: 100 000.
    pub max_mqueue_len: usize,
    /// Longest time a disconnected persistent session is kept: the session
    /// expiry of MQTT 3.1.1 clients with `clean_session = false`, and the cap
    /// on what MQTT 5 clients ask for. Must not be zero. Default: 2 hours.
    pub max_session_expiry: Duration,
    /// Lifetime of queued and retained messages whose publisher set no MQTT 5
    /// message expiry. Default: 24 hours.
    pub message_expiry: Duration,
    /// How long [`EmbeddedBroker::shutdown`] waits for client connections to
    /// close before giving up on them. Default: 5 seconds.
    pub shutdown_timeout: Duration,
    /// A second, MQTTS listener (TLS terminated in front of the plain one,
    /// see [`TlsListenerConfig`]); `None`: plain MQTT only. Default: `None`.
    pub tls: Option<TlsListenerConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)),
            max_connections: 10_000,
            max_packet_size: 1024 * 1024,
            max_inflight: 128,
            max_mqueue_len: 100_000,
            max_session_expiry: Duration::from_secs(2 * 60 * 60),
            message_expiry: Duration::from_secs(24 * 60 * 60),
            shutdown_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The listener could not be bound (address in use, permission denied, ...).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid broker setting `{setting}`: {reason}")]
    InvalidConfig {
        /// The [`BrokerConfig`] field at fault.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The MQTTS certificate, key or client CA could not be loaded.
    #[error("MQTTS: {0}")]
    Tls(#[from] TlsError),
    /// rmqtt failed to set the listener up for another reason.
    #[error("cannot start the MQTT listener on {addr}: {message}")]
    Listener {
        /// The address that was asked for.
        addr: SocketAddr,
        /// rmqtt's description of the failure.
        message: String,
    },
}

/// A running embedded broker. Dropping it without [`shutdown`](Self::shutdown)
/// stops accepting connections but leaves existing ones to run out.
#[derive(Debug)]
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    tls: Option<TlsListener>,
    scx: ServerContext,
    /// The task running rmqtt's accept loop; it owns the listening socket.
    server: JoinHandle<()>,
    shutdown_timeout: Duration,
}

impl EmbeddedBroker {
    /// Binds the listener and starts serving in the current tokio runtime,
    /// open to any client (no authentication, no ACL).
    ///
    /// Returns once the socket is listening: connections made after this
    /// returns are accepted.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        Self::start_inner(config, None).await
    }

    /// Like [`start`](Self::start), with every CONNECT, PUBLISH and
    /// SUBSCRIBE decided by `gatekeeper` (clients without a username are
    /// asked about too: they may carry a client certificate). Refused
    /// CONNECTs get "bad user name or password" or "not authorized";
    /// refused PUBLISHes get PUBACK "not authorized" (MQTT 5) or are
    /// acknowledged and dropped (MQTT 3.1.1, which has no negative PUBACK);
    /// refused SUBSCRIBEs get SUBACK "not authorized" / failure (0x80).
    pub async fn start_with_gatekeeper(
        config: BrokerConfig,
        gatekeeper: Arc<dyn Gatekeeper>,
    ) -> Result<Self, BrokerError> {
        Self::start_inner(config, Some(gatekeeper)).await
    }

    async fn start_inner(config: BrokerConfig, gatekeeper: Option<Arc<dyn Gatekeeper>>) -> Result<Self, BrokerError> {
        let addr = config.listen;
        let max_inflight = NonZeroU16::new(config.max_inflight).ok_or(BrokerError::InvalidConfig {
            setting: "max_inflight",
            reason: "must be at least 1",
        })?;
        if config.max_mqueue_len == 0 {
            return Err(BrokerError::InvalidConfig {
                setting: "max_mqueue_len",
                reason: "must be at least 1",
            });
        }
        if config.max_packet_size == 0 {
            return Err(BrokerError::InvalidConfig {
                setting: "max_packet_size",
                reason: "must be at least 1",
            });
        }
        if config.max_session_expiry.is_zero() {
            // rmqtt reads 0 as "no cap" for MQTT 5 clients but "expire at
            // once" for MQTT 3.1.1 ones: refuse the ambiguity.
            return Err(BrokerError::InvalidConfig {
                setting: "max_session_expiry",
                reason: "must be at least 1 second",
            });
        }
        let max_sessions = isize::try_from(config.max_connections).map_err(|_| BrokerError::InvalidConfig {
            setting: "max_connections",
            reason: "too large",
        })?;

        let scx = ServerContext::new()
            // The busy check refuses CONNECTs while the *machine's* CPU or
            // load is high (shared CI, a busy server): not what an embedded
            // broker should do. It also spawns a never-ending CPU sampler
            // per broker and caches its verdict in a process-global.
            .busy_check_enable(false)
            .mqtt_max_sessions(max_sessions)
            .build()
            .await;
        *scx.extends.shared_subscription_mut().await = Box::new(RoundRobinSharedSubscription::default());
        *scx.extends.retain_mut().await = Box::new(MemoryRetainStorage::default());
        let tls_peers = TlsPeers::default();
        let guarded = gatekeeper.is_some();
        if let Some(gatekeeper) = gatekeeper {
            let register = scx.extends.hook_mgr().register();
            for typ in [
                Type::ClientAuthenticate,
                Type::MessagePublishCheckAcl,
                Type::ClientSubscribeCheckAcl,
            ] {
                let hook = GatekeeperHook {
                    gatekeeper: Arc::clone(&gatekeeper),
                    tls_peers: Arc::clone(&tls_peers),
                };
                register.add(typ, Box::new(hook)).await;
            }
            register.start().await;
        }

        let mut listener = Builder::new()
            .name("vigie/tcp")
            .laddr(addr)
            // Restarting on a port whose old connections sit in TIME_WAIT
            // must work; SO_REUSEADDR does not let two live listeners share it.
            .reuseaddr(Some(true))
            .nodelay(true)
            // With a gatekeeper, CONNECTs without a username are asked about
            // too (they may carry a client certificate); without one,
            // everybody is let in.
            .allow_anonymous(!guarded)
            // rmqtt sizes its handshake queue with this; the session limit
            // proper is `mqtt_max_sessions` above.
            .max_connections(if config.max_connections == 0 {
                1_000_000
            } else {
                config.max_connections
            })
            .max_packet_size(config.max_packet_size)
            .max_inflight(max_inflight)
            .max_mqueue_len(config.max_mqueue_len)
            .session_expiry_interval(config.max_session_expiry)
            .max_session_expiry_interval(config.max_session_expiry)
            .message_expiry_interval(config.message_expiry)
            .bind()
            .map_err(|e| bind_error(addr, e))?;
        let local_addr = listener.local_addr().map_err(|e| BrokerError::Listener {
            addr,
            message: format!("{e:#}"),
        })?;
        // rmqtt keeps the configured address for its logs and client ids;
        // give it the real one when port 0 was asked. The listener config is
        // not shared yet, so this is a plain mutation.
        if let Some(cfg) = Arc::get_mut(&mut listener.cfg) {
            cfg.laddr = local_addr;
        }

        // `listener_by_id` rather than `listener`: rmqtt keys listener
        // configs by port and warns when the configured port is 0.
        let server = MqttServer::new(scx.clone())
            .listener_by_id(listener, local_addr.port())
            .build();
        // `run()` never returns while listening; `start()` would call
        // `process::exit` on error, which a library must never do.
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        });
        tracing::info!(%local_addr, "embedded MQTT broker listening (MQTT 3.1.1 and 5)");

        let tls = match config.tls {
            None => None,
            Some(tls_config) => {
                // The proxy reaches the plain listener on loopback when it
                // listens on every interface.
                let upstream = match local_addr.ip() {
                    std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                        SocketAddr::from((Ipv4Addr::LOCALHOST, local_addr.port()))
                    }
                    std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, local_addr.port()))
                    }
                    _ => local_addr,
                };
                match TlsListener::start(tls_config, upstream, tls_peers).await {
                    Ok(listener) => Some(listener),
                    Err(e) => {
                        server.abort();
                        let _ = server.await;
                        return Err(e);
                    }
                }
            }
        };

        Ok(Self {
            local_addr,
            tls,
            scx,
            server,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The address the listener is bound to, with the real port when port 0
    /// was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MQTTS listener's address, when one was configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|t| t.local_addr)
    }

    /// Stops accepting connections, disconnects every client (MQTT 5 clients
    /// get a DISCONNECT "administrative action"), drops all sessions, and
    /// returns when the connections are closed or after
    /// [`BrokerConfig::shutdown_timeout`]. Never exits the process.
    pub async fn shutdown(self) {
        if let Some(tls) = self.tls {
            tls.shutdown().await;
        }
        // Aborting the accept loop drops rmqtt's listener: the port is
        // released and no new connection is accepted from here on.
        self.server.abort();
        // `Err` is the expected cancellation; nothing else can happen.
        let _ = self.server.await;

        let ids = {
            let shared = self.scx.extends.shared().await;
            shared.iter().map(|entry| entry.id()).collect::<Vec<_>>()
        };
        let kicked = ids.len();
        // Kicks wait for the session's acknowledgement: run them concurrently
        // so a thousand clients do not take a thousand round trips.
        let mut kicks = JoinSet::new();
        for id in ids {
            let scx = self.scx.clone();
            kicks.spawn(async move {
                let mut entry = scx.extends.shared().await.entry(id);
                // clean_start + clear_subscriptions: the broker is going
                // away, nothing should survive; is_admin: MQTT 5 reason code.
                if let Err(e) = entry.kick(true, true, true).await {
                    tracing::debug!(error = %e, "could not kick an MQTT session");
                }
            });
        }
        let deadline = Instant::now() + self.shutdown_timeout;
        while tokio::time::timeout_at(deadline, kicks.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        kicks.abort_all();

        // Connection tasks are spawned by rmqtt, not by us: wait for its
        // counters to drain (kicked sessions close their sockets promptly).
        let drained = loop {
            // Sessions too: a dropped session still tidies up in a task.
            let open = self.scx.connections.count() + self.scx.handshakings.count() + self.scx.sessions.count();
            if open == 0 {
                break true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    connections = open,
                    "embedded MQTT broker: connections still open at shutdown timeout"
                );
                break false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if drained {
            // rmqtt's default session table and router each hold a clone of
            // the ServerContext that owns them: a reference cycle that would
            // keep the context, and its idle task-queue runners, alive
            // forever. With no connection and no session left nothing uses
            // them any more, so swap in context-less ones to break the cycle.
            // (rmqtt's handshake task-queue runner cannot be stopped through
            // its API: one idle task per stopped broker remains.)
            *self.scx.extends.shared_mut().await = Box::new(DefaultShared::new(None));
            *self.scx.extends.router_mut().await = Box::new(DefaultRouter::new(None));
        }
        tracing::info!(local_addr = %self.local_addr, sessions = kicked, "embedded MQTT broker stopped");
    }
}

/// Turns rmqtt's `anyhow` bind error back into the `io::Error` it wraps.
fn bind_error(addr: SocketAddr, e: rmqtt::Error) -> BrokerError {
    match e.downcast::<std::io::Error>() {
        Ok(source) => BrokerError::Bind { addr, source },
        Err(e) => BrokerError::Listener {
            addr,
            message: format!("{e:#}"),
        },
    }
}
