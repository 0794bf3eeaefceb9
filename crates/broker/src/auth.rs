//! Authentication and ACL through rmqtt's hooks, delegated to a
//! [`Gatekeeper`] the embedding application provides.
//!
//! The broker knows nothing of devices: it asks the gatekeeper at CONNECT
//! (`ClientAuthenticate`), at each PUBLISH (`MessagePublishCheckAcl`) and
//! each SUBSCRIBE (`ClientSubscribeCheckAcl`). ACL questions name the client
//! by the client id and username it connected with, which the gatekeeper
//! accepted at CONNECT: it must therefore bind client ids to identities
//! (otherwise a client could connect as itself and act as another).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::{AuthResult, PublishAclResult, SubscribeAclResult};

/// A CONNECT as the gatekeeper sees it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectAttempt<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    /// The password bytes. Never log them.
    pub password: Option<&'a [u8]>,
    /// The Common Name of the client certificate, when the client came
    /// through the MQTTS listener with a certificate the client CA verified.
    pub cert_cn: Option<&'a str>,
    /// Whether the client came through the MQTTS listener.
    pub tls: bool,
    /// The client's address (for MQTTS clients, the real remote address).
    pub remote_addr: Option<SocketAddr>,
}

/// A connected client, as ACL questions name it.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// Why a CONNECT is refused; becomes the CONNACK reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// "Bad user name or password" (MQTT 5: 0x86; 3.1.1: return code 4).
    BadCredentials,
    /// "Not authorized" (MQTT 5: 0x87; 3.1.1: return code 5).
    NotAuthorized,
}

/// Decides who may connect and what they may do. Called on the broker's
/// connection tasks: it must answer quickly and never block on I/O.
pub trait Gatekeeper: Send + Sync {
    /// Whether this CONNECT may proceed.
    fn authenticate(&self, attempt: &ConnectAttempt<'_>) -> Result<(), Refusal>;
    /// Whether a connected client may publish on `topic`.
    fn may_publish(&self, client: &Client<'_>, topic: &str) -> bool;
    /// Whether a connected client may subscribe to `filter` (as sent, with
    /// any `$share/{group}/` prefix).
    fn may_subscribe(&self, client: &Client<'_>, filter: &str) -> bool;
}

/// What the MQTTS listener knows of a proxied connection, keyed by the
/// address its loopback connection to the plain listener comes from.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsPeer {
    pub remote_addr: Option<SocketAddr>,
    pub cert_cn: Option<String>,
}

/// Shared between the MQTTS proxy (which fills it) and the authenticate hook.
pub(crate) type TlsPeers = Arc<Mutex<HashMap<SocketAddr, TlsPeer>>>;

pub(crate) struct GatekeeperHook {
    pub gatekeeper: Arc<dyn Gatekeeper>,
    pub tls_peers: TlsPeers,
}

#[async_trait]
impl Handler for GatekeeperHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                let id = info.id();
                let tls_peer = id.remote_addr.and_then(|addr| {
                    self.tls_peers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&addr)
                        .cloned()
                });
                let attempt = ConnectAttempt {
                    client_id: &id.client_id,
                    username: info.username().map(|u| &**u),
                    password: info.password().map(|p| &p[..]),
                    cert_cn: tls_peer.as_ref().and_then(|p| p.cert_cn.as_deref()),
                    tls: tls_peer.is_some(),
                    remote_addr: tls_peer.as_ref().and_then(|p| p.remote_addr).or(id.remote_addr),
                };
                let result = match self.gatekeeper.authenticate(&attempt) {
                    Ok(()) => AuthResult::Allow(false, None),
                    Err(Refusal::BadCredentials) => AuthResult::BadUsernameOrPassword,
                    Err(Refusal::NotAuthorized) => AuthResult::NotAuthorized,
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let client = Client {
                    client_id: &session.id.client_id,
                    username: session.id.username.as_deref(),
                };
                let result = if self.gatekeeper.may_publish(&client, &publish.topic) {
                    PublishAclResult::allow()
                } else {
                    // Not disconnecting: MQTT 5 clients get PUBACK "not
                    // authorized" (QoS 1) and keep their connection;
                    // MQTT 3.1.1 has no negative PUBACK, so the message is
                    // acknowledged and dropped (as mosquitto does).
                    PublishAclResult::rejected(false, Some("not authorized".into()))
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let client = Client {
                    client_id: &session.id.client_id,
                    username: session.id.username.as_deref(),
                };
                let filter = match subscribe.opts.shared_group() {
                    Some(group) => format!("$share/{group}/{}", subscribe.topic_filter),
                    None => subscribe.topic_filter.to_string(),
                };
                let result = if self.gatekeeper.may_subscribe(&client, &filter) {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}
