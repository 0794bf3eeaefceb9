//! Who may use the embedded broker: the [`vigie_broker::Gatekeeper`] over
//! the device registry, the configured gateways and Vigie's own client.
//!
//! Every check reads the registry as it is now, so a device provisioned a
//! moment ago can connect at once, and a removed one can no longer publish
//! even on its open connection. The rules themselves are the pure ones of
//! [`vigie_core::acl`]; this module resolves an MQTT client to its
//! [`Principal`], checks passwords and counts refusals.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use vigie_broker::{Client, ConnectAttempt, Gatekeeper, Refusal};
use vigie_core::Device;
use vigie_core::acl::{self, GatewayRules, Principal};
use vigie_core::credentials::{GENERATED_SECRET_BYTES, PasswordHash, SALT_BYTES, Secret};

use super::registry::DeviceRegistry;
use crate::config::MqttConfig;
use crate::metrics::{Metrics, Refused};

/// Fills an array from the operating system's random source.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| anyhow::anyhow!("the system random source failed: {e}"))?;
    Ok(out)
}

/// A new random secret (160 bits) and its salted hash.
pub fn new_secret() -> anyhow::Result<(Secret, PasswordHash)> {
    let secret = Secret::from_random(random_bytes::<GENERATED_SECRET_BYTES>()?);
    let hash = PasswordHash::new(&secret, random_bytes::<SALT_BYTES>()?);
    Ok((secret, hash))
}

/// The MQTTS listener of the embedded broker, from `mqtt.embedded_tls_listen` and `[tls]`.
pub fn mqtts_config(config: &crate::Config) -> anyhow::Result<Option<vigie_broker::TlsListenerConfig>> {
    let listen = config.mqtt.embedded_tls_listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let listen = listen
        .parse()
        .with_context(|| format!("mqtt.embedded_tls_listen '{listen}' is not an address:port"))?;
    if !config.tls.enabled() {
        anyhow::bail!("mqtt.embedded_tls_listen is set but tls.cert_file and tls.key_file are not");
    }
    Ok(Some(vigie_broker::TlsListenerConfig {
        listen,
        cert_file: config.tls.cert_file.clone().into(),
        key_file: config.tls.key_file.clone().into(),
        client_ca_file: (!config.tls.client_ca_file.is_empty()).then(|| config.tls.client_ca_file.clone().into()),
        reload_interval: std::time::Duration::from_secs(config.tls.reload_interval_secs),
    }))
}

struct Gateway {
    password: PasswordHash,
    rules: GatewayRules,
}

/// Vigie's rules for the embedded broker.
pub struct DeviceGatekeeper {
    registry: Arc<DeviceRegistry>,
    metrics: Arc<Metrics>,
    /// Vigie's own consumer: its client id (also its username) and password.
    service_client_id: String,
    service_password: PasswordHash,
    gateways: BTreeMap<String, Gateway>,
}

/// Who a connected client is, with the device it speaks for held alive.
enum Resolved<'a> {
    Service,
    Gateway(&'a str, &'a Gateway),
    Device(Arc<Device>),
}

impl DeviceGatekeeper {
    /// `service_password` is the hash of the secret Vigie's consumer logs in
    /// with. Gateway hashes and filters are checked here.
    pub fn new(
        config: &MqttConfig,
        service_password: PasswordHash,
        registry: Arc<DeviceRegistry>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut gateways = BTreeMap::new();
        for (name, g) in &config.gateways {
            let password: PasswordHash = g
                .password_hash
                .parse()
                .with_context(|| format!("mqtt.gateways.{name}.password_hash"))?;
            for filter in g.publish.iter().chain(&g.subscribe) {
                if !acl::valid_filter(filter) {
                    anyhow::bail!("mqtt.gateways.{name}: '{filter}' is not an MQTT topic filter");
                }
            }
            if name == &config.client_id {
                anyhow::bail!("mqtt.gateways.{name}: the name is Vigie's own mqtt.client_id");
            }
            gateways.insert(
                name.clone(),
                Gateway {
                    password,
                    rules: GatewayRules {
                        publish: g.publish.clone(),
                        subscribe: g.subscribe.clone(),
                    },
                },
            );
        }
        Ok(Self {
            registry,
            metrics,
            service_client_id: config.client_id.clone(),
            service_password,
            gateways,
        })
    }

    fn refuse(&self, reason: Refused, attempt: &ConnectAttempt<'_>, refusal: Refusal) -> Result<(), Refusal> {
        self.metrics.refused(reason);
        tracing::info!(
            client_id = attempt.client_id,
            username = attempt.username.unwrap_or(""),
            remote = ?attempt.remote_addr,
            tls = attempt.tls,
            reason = reason.label(),
            "MQTT connection refused"
        );
        Err(refusal)
    }

    fn authenticate_inner(&self, a: &ConnectAttempt<'_>) -> Result<(), Refusal> {
        let password_ok = |hash: &PasswordHash| a.password.is_some_and(|p| hash.verify(p));
        let bad = |reason| self.refuse(reason, a, Refusal::BadCredentials);
        let client_id = |reason| self.refuse(reason, a, Refusal::NotAuthorized);

        if a.username == Some(self.service_client_id.as_str()) {
            if !password_ok(&self.service_password) {
                return bad(Refused::BadCredentials);
            }
            if a.client_id != self.service_client_id {
                return client_id(Refused::ClientId);
            }
            return Ok(());
        }
        // Nobody else may take Vigie's session over.
        if a.client_id == self.service_client_id {
            return client_id(Refused::ClientId);
        }
        if let Some((name, gateway)) = a.username.and_then(|u| self.gateways.get_key_value(u)) {
            if !password_ok(&gateway.password) {
                return bad(Refused::BadCredentials);
            }
            let who = Principal::Gateway {
                name,
                rules: &gateway.rules,
            };
            if !acl::client_id_allowed(who, a.client_id) {
                return client_id(Refused::ClientId);
            }
            return Ok(());
        }
        let device = match (a.cert_cn, a.username) {
            // A client certificate the client CA verified names the device.
            (Some(cn), None) => self.registry.get(cn),
            (Some(cn), Some(username)) if cn == username => self.registry.get(cn),
            (Some(_), Some(username)) => {
                // Certificate for one device, username of another: only the
                // password may vouch for the username.
                let device = self.registry.get(username);
                match device {
                    Some(d) if d.mqtt_password_hash.as_ref().is_some_and(password_ok) => Some(d),
                    _ => return bad(Refused::BadCredentials),
                }
            }
            (None, Some(username)) => match self.registry.get(username) {
                Some(d) if d.mqtt_password_hash.as_ref().is_some_and(password_ok) => Some(d),
                _ => return bad(Refused::BadCredentials),
            },
            (None, None) => return self.refuse(Refused::Unauthenticated, a, Refusal::NotAuthorized),
        };
        let Some(device) = device else {
            // A certificate for a device that is not provisioned.
            return self.refuse(Refused::BadCredentials, a, Refusal::NotAuthorized);
        };
        if !acl::client_id_allowed(Principal::Device(&device), a.client_id) {
            return client_id(Refused::ClientId);
        }
        Ok(())
    }

    /// The identity behind a connected client, resolved as
    /// [`authenticate`](Gatekeeper::authenticate) did.
    fn resolve(&self, c: &Client<'_>) -> Option<Resolved<'_>> {
        if c.username == Some(self.service_client_id.as_str()) {
            return (c.client_id == self.service_client_id).then_some(Resolved::Service);
        }
        if let Some((name, gateway)) = c.username.and_then(|u| self.gateways.get_key_value(u)) {
            return Some(Resolved::Gateway(name, gateway));
        }
        // Password clients by their username; certificate clients without a
        // username by their client id, which authenticate bound to the CN.
        let device = self.registry.get(c.username.unwrap_or(c.client_id))?;
        (device.device_id == c.client_id).then_some(Resolved::Device(device))
    }

    fn decide(&self, c: &Client<'_>, check: impl Fn(Principal<'_>) -> bool) -> bool {
        match self.resolve(c) {
            None => false,
            Some(Resolved::Service) => check(Principal::Service),
            Some(Resolved::Gateway(name, g)) => check(Principal::Gateway { name, rules: &g.rules }),
            Some(Resolved::Device(d)) => check(Principal::Device(&d)),
        }
    }
}

impl Gatekeeper for DeviceGatekeeper {
    fn authenticate(&self, attempt: &ConnectAttempt<'_>) -> Result<(), Refusal> {
        self.authenticate_inner(attempt)
    }

    fn may_publish(&self, client: &Client<'_>, topic: &str) -> bool {
        let ok = self.decide(client, |who| acl::may_publish(who, topic));
        if !ok {
            self.metrics.refused(Refused::ForeignTopic);
            tracing::debug!(client_id = client.client_id, topic, "MQTT publish refused");
        }
        ok
    }

    fn may_subscribe(&self, client: &Client<'_>, filter: &str) -> bool {
        let ok = self.decide(client, |who| acl::may_subscribe(who, filter));
        if !ok {
            self.metrics.refused(Refused::ForeignSubscription);
            tracing::info!(client_id = client.client_id, filter, "MQTT subscription refused");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use vigie_core::{EntityId, Transport};

    fn light(id: &str, password: Option<&Secret>) -> Device {
        Device {
            device_id: id.into(),
            transport: Transport::IotAgentJson {
                apikey: "lighting".into(),
            },
            entity_name: EntityId::new(format!("urn:ngsi-ld:Streetlight:{id}")).unwrap(),
            entity_type: "Streetlight".into(),
            scope: None,
            attributes: vec![],
            mqtt_password_hash: password.map(|s| PasswordHash::new(s, [9; 16])),
        }
    }

    fn attempt<'a>(client_id: &'a str, username: Option<&'a str>, password: Option<&'a str>) -> ConnectAttempt<'a> {
        ConnectAttempt {
            client_id,
            username,
            password: password.map(str::as_bytes),
            cert_cn: None,
            tls: false,
            remote_addr: None,
        }
    }

    struct Fixture {
        gk: DeviceGatekeeper,
        metrics: Arc<Metrics>,
        registry: Arc<DeviceRegistry>,
        service: Secret,
        a: Secret,
        gw: Secret,
    }

    fn fixture() -> Fixture {
        let registry = Arc::new(DeviceRegistry::default());
        let metrics = Arc::new(Metrics::default());
        let a = Secret::from_random([1; 20]);
        let service = Secret::from_random([2; 20]);
        let gw = Secret::from_random([3; 20]);
        registry.insert(light("SL-A", Some(&a)));
        registry.insert(light("SL-B", Some(&Secret::from_random([4; 20]))));
        registry.insert(light("SL-C", None));
        let mut config = MqttConfig::default();
        config.gateways.insert(
            "chirpstack".into(),
            GatewayConfig {
                password_hash: PasswordHash::new(&gw, [5; 16]).to_string(),
                publish: vec!["application/+/device/+/event/+".into()],
                subscribe: vec![],
            },
        );
        let gk = DeviceGatekeeper::new(
            &config,
            PasswordHash::new(&service, [6; 16]),
            Arc::clone(&registry),
            Arc::clone(&metrics),
        )
        .unwrap();
        Fixture {
            gk,
            metrics,
            registry,
            service,
            a,
            gw,
        }
    }

    #[test]
    fn connects_are_checked() {
        let f = fixture();
        let a = f.a.expose();
        assert_eq!(f.gk.authenticate(&attempt("SL-A", Some("SL-A"), Some(a))), Ok(()));
        assert_eq!(
            f.gk.authenticate(&attempt("SL-A", Some("SL-A"), Some("wrong-password-x"))),
            Err(Refusal::BadCredentials)
        );
        // B's password is not A's.
        assert_eq!(
            f.gk.authenticate(&attempt("SL-B", Some("SL-B"), Some(a))),
            Err(Refusal::BadCredentials)
        );
        // A device without a password cannot log in with one.
        assert_eq!(
            f.gk.authenticate(&attempt("SL-C", Some("SL-C"), Some(a))),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            f.gk.authenticate(&attempt("SL-X", Some("SL-X"), Some(a))),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            f.gk.authenticate(&attempt("SL-A", None, None)),
            Err(Refusal::NotAuthorized)
        );
        // A's credentials, B's client id (session takeover): refused.
        assert_eq!(
            f.gk.authenticate(&attempt("SL-B", Some("SL-A"), Some(a))),
            Err(Refusal::NotAuthorized)
        );
        assert_eq!(
            f.gk.authenticate(&attempt("vigie", Some("SL-A"), Some(a))),
            Err(Refusal::NotAuthorized)
        );
        assert_eq!(
            f.gk.authenticate(&attempt("vigie", Some("vigie"), Some(f.service.expose()))),
            Ok(())
        );
        assert_eq!(
            f.gk.authenticate(&attempt("chirpstack", Some("chirpstack"), Some(f.gw.expose()))),
            Ok(())
        );
        assert_eq!(
            f.gk.authenticate(&attempt("chirpstack", Some("chirpstack"), Some(a))),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(f.metrics.refused_count(Refused::BadCredentials), 5);
        assert_eq!(f.metrics.refused_count(Refused::Unauthenticated), 1);
        assert_eq!(f.metrics.refused_count(Refused::ClientId), 2);
    }

    #[test]
    fn a_client_certificate_vouches_for_its_device() {
        let f = fixture();
        let mut with_cert = attempt("SL-C", None, None);
        with_cert.cert_cn = Some("SL-C");
        with_cert.tls = true;
        assert_eq!(f.gk.authenticate(&with_cert), Ok(()));
        // The certificate of C does not open B.
        let mut other = attempt("SL-B", Some("SL-B"), None);
        other.cert_cn = Some("SL-C");
        assert_eq!(f.gk.authenticate(&other), Err(Refusal::BadCredentials));
        let mut wrong_id = attempt("SL-B", None, None);
        wrong_id.cert_cn = Some("SL-C");
        assert_eq!(f.gk.authenticate(&wrong_id), Err(Refusal::NotAuthorized));
        let mut unknown = attempt("SL-Z", None, None);
        unknown.cert_cn = Some("SL-Z");
        assert_eq!(f.gk.authenticate(&unknown), Err(Refusal::NotAuthorized));
    }

    #[test]
    fn topics_follow_the_identity_and_the_live_registry() {
        let f = fixture();
        let a = Client {
            client_id: "SL-A",
            username: Some("SL-A"),
        };
        assert!(f.gk.may_publish(&a, "/lighting/SL-A/attrs"));
        assert!(!f.gk.may_publish(&a, "/lighting/SL-B/attrs"));
        assert!(f.gk.may_subscribe(&a, "/lighting/SL-A/cmd"));
        assert!(!f.gk.may_subscribe(&a, "/lighting/SL-B/cmd"));
        let vigie = Client {
            client_id: "vigie",
            username: Some("vigie"),
        };
        assert!(f.gk.may_subscribe(&vigie, "$share/vigie//+/+/attrs"));
        let gw = Client {
            client_id: "chirpstack",
            username: Some("chirpstack"),
        };
        assert!(f.gk.may_publish(&gw, "application/1/device/0004a30b001c0530/event/up"));
        assert!(!f.gk.may_publish(&gw, "/lighting/SL-A/attrs"));
        // A removed device loses its topics at once.
        f.registry.remove("SL-A");
        assert!(!f.gk.may_publish(&a, "/lighting/SL-A/attrs"));
        assert_eq!(f.metrics.refused_count(Refused::ForeignTopic), 3);
        assert_eq!(f.metrics.refused_count(Refused::ForeignSubscription), 1);
    }

    #[test]
    fn bad_gateway_settings_are_named() {
        let mut config = MqttConfig::default();
        config.gateways.insert(
            "gw".into(),
            GatewayConfig {
                password_hash: "nope".into(),
                ..GatewayConfig::default()
            },
        );
        let new = |c: &MqttConfig| {
            DeviceGatekeeper::new(
                c,
                PasswordHash::new(&Secret::from_random([0; 20]), [0; 16]),
                Arc::default(),
                Arc::default(),
            )
            .map(|_| ())
        };
        let err = format!("{:#}", new(&config).unwrap_err());
        assert!(err.contains("mqtt.gateways.gw.password_hash"), "{err}");
        let hash = PasswordHash::new(&Secret::from_random([0; 20]), [0; 16]).to_string();
        config.gateways.insert(
            "gw".into(),
            GatewayConfig {
                password_hash: hash,
                publish: vec!["a/#/b".into()],
                subscribe: vec![],
            },
        );
        let err = format!("{:#}", new(&config).unwrap_err());
        assert!(err.contains("a/#/b"), "{err}");
    }
}
