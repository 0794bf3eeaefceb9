//! MQTTS and the gatekeeper on the embedded broker: TLS with a generated CA,
//! passwords checked through TLS, client certificates' CN reaching the
//! gatekeeper through the proxy, refused publishes and subscribes, and the
//! certificate reloaded without restart.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vigie_broker::{BrokerConfig, Client, ConnectAttempt, EmbeddedBroker, Gatekeeper, Refusal, TlsListenerConfig};

const PASSWORD: &str = "a-device-password-0123";

/// Lets in `dev` with [`PASSWORD`], or any client whose certificate CN is its
/// client id; each may publish only on `own/{client id}`.
#[derive(Default)]
struct TestGatekeeper {
    seen: Mutex<Vec<(String, Option<String>, bool)>>,
}

impl Gatekeeper for TestGatekeeper {
    fn authenticate(&self, a: &ConnectAttempt<'_>) -> Result<(), Refusal> {
        self.seen
            .lock()
            .unwrap()
            .push((a.client_id.to_owned(), a.cert_cn.map(str::to_owned), a.tls));
        match (a.username, a.cert_cn) {
            (Some("dev"), _) if a.password == Some(PASSWORD.as_bytes()) => Ok(()),
            (Some(_), _) => Err(Refusal::BadCredentials),
            (None, Some(cn)) if cn == a.client_id => Ok(()),
            (None, _) => Err(Refusal::NotAuthorized),
        }
    }

    fn may_publish(&self, c: &Client<'_>, topic: &str) -> bool {
        topic == format!("own/{}", c.client_id)
    }

    fn may_subscribe(&self, c: &Client<'_>, filter: &str) -> bool {
        filter == format!("own/{}", c.client_id)
    }
}

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate (PEM) and its key (PEM) for `cn`, valid for localhost.
    fn issue(&self, cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::OrganizationName, "Vigie tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

fn write_server_files(dir: &Path, ca: &Ca) {
    let (cert, key) = ca.issue("localhost");
    // Write then rename, as a certificate manager would: never half a file.
    for (name, text) in [("server.pem", cert), ("server.key", key)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

async fn start(dir: &Path, client_ca: Option<&Ca>, reload: Duration) -> (EmbeddedBroker, Arc<TestGatekeeper>) {
    let client_ca_file = client_ca.map(|ca| {
        let path = dir.join("clients-ca.pem");
        std::fs::write(&path, ca.issuer.pem()).unwrap();
        path
    });
    let gatekeeper = Arc::new(TestGatekeeper::default());
    let broker = EmbeddedBroker::start_with_gatekeeper(
        BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(TlsListenerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert_file: dir.join("server.pem"),
                key_file: dir.join("server.key"),
                client_ca_file,
                reload_interval: reload,
            }),
            ..BrokerConfig::default()
        },
        Arc::clone(&gatekeeper) as Arc<dyn Gatekeeper>,
    )
    .await
    .expect("broker starts");
    (broker, gatekeeper)
}

fn tls_options(port: u16, id: &str, trust: &Ca, identity: Option<(String, String)>) -> MqttOptions {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            use rustls::pki_types::pem::PemObject;
            let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
            let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
            builder
                .with_client_auth_cert(vec![cert], PrivateKeyDer::Pkcs8(key))
                .unwrap()
        }
    };
    let mut o = MqttOptions::new(id, "localhost", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
    o
}

/// Connects; `Ok` with the running client, or the error (refusal or TLS failure).
async fn connect(o: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no CONNACK");
        match tokio::time::timeout(Duration::from_secs(15), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, eventloop)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => panic!("connection attempt hung"),
        }
    }
}

async fn next<T>(eventloop: &mut EventLoop, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(p))) => {
                if let Some(t) = pick(p) {
                    return t;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection failed: {e}"),
            Err(_) => panic!("the expected packet never came"),
        }
    }
}

#[tokio::test]
async fn mqtts_checks_passwords_and_topics() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Vigie test CA");
    write_server_files(dir.path(), &ca);
    let (broker, gatekeeper) = start(dir.path(), None, Duration::ZERO).await;
    let tls_port = broker.tls_addr().expect("MQTTS listener").port();
    let plain_port = broker.local_addr().port();

    // Through TLS, a good password works and a bad one is refused.
    let mut o = tls_options(tls_port, "dev", &ca, None);
    o.set_credentials("dev", PASSWORD);
    let (client, mut eventloop) = connect(o).await.expect("MQTTS connect with a password");
    let mut o = tls_options(tls_port, "dev2", &ca, None);
    o.set_credentials("dev", "wrong-password-000000");
    assert!(matches!(
        connect(o).await.err(),
        Some(ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
        ))
    ));
    // Plain MQTT on the other listener: the same rules.
    let o = MqttOptions::new("anon", "127.0.0.1", plain_port);
    assert!(matches!(
        connect(o).await.err(),
        Some(ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized))
    ));
    {
        let seen = gatekeeper.seen.lock().unwrap();
        assert_eq!(seen[0], ("dev".to_owned(), None, true), "{seen:?}");
        assert_eq!(seen[2], ("anon".to_owned(), None, false), "{seen:?}");
    }

    // Publish ACL: PUBACK "not authorized" on a foreign topic, success on its own.
    client.publish("own/other", QoS::AtLeastOnce, false, "x").await.unwrap();
    let reason = next(&mut eventloop, |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);
    client.publish("own/dev", QoS::AtLeastOnce, false, "x").await.unwrap();
    let reason = next(&mut eventloop, |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert!(
        matches!(reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers),
        "{reason:?}"
    );
    // Subscribe ACL.
    client.subscribe("own/#", QoS::AtLeastOnce).await.unwrap();
    let codes = next(&mut eventloop, |p| match p {
        Packet::SubAck(a) => Some(a.return_codes),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![SubscribeReasonCode::NotAuthorized]);

    broker.shutdown().await;
}

#[tokio::test]
async fn a_client_certificate_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("Vigie test server CA");
    write_server_files(dir.path(), &server_ca);
    let device_ca = Ca::new("Vigie test device CA");
    let (broker, gatekeeper) = start(dir.path(), Some(&device_ca), Duration::ZERO).await;
    let tls_port = broker.tls_addr().expect("MQTTS listener").port();

    let o = tls_options(tls_port, "SL-000042", &server_ca, Some(device_ca.issue("SL-000042")));
    let (client, mut eventloop) = connect(o).await.expect("certificate login");
    assert_eq!(
        gatekeeper.seen.lock().unwrap().last().cloned(),
        Some(("SL-000042".to_owned(), Some("SL-000042".to_owned()), true))
    );
    client
        .publish("own/SL-000042", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let reason = next(&mut eventloop, |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert!(
        matches!(reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers),
        "{reason:?}"
    );

    // A certificate for another name does not open this client id.
    let o = tls_options(tls_port, "SL-000043", &server_ca, Some(device_ca.issue("SL-000042")));
    assert!(matches!(
        connect(o).await.err(),
        Some(ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized))
    ));
    // A certificate from another CA fails the TLS handshake.
    let rogue = Ca::new("Rogue CA");
    let o = tls_options(tls_port, "SL-000044", &server_ca, Some(rogue.issue("SL-000044")));
    assert!(connect(o).await.is_err());
    assert!(
        !gatekeeper
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _, _)| id == "SL-000044"),
        "an unverified certificate never reaches the gatekeeper"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn the_certificate_is_reloaded_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("Old CA");
    write_server_files(dir.path(), &old_ca);
    let (broker, _) = start(dir.path(), None, Duration::from_millis(100)).await;
    let tls_port = broker.tls_addr().expect("MQTTS listener").port();
    let login = |ca: &Ca, id: &str| {
        let mut o = tls_options(tls_port, id, ca, None);
        o.set_credentials("dev", PASSWORD);
        o
    };
    let (_old_client, _old_loop) = connect(login(&old_ca, "dev")).await.expect("old certificate");

    // A broken file is not taken: the old certificate stays.
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    connect(login(&old_ca, "dev-1"))
        .await
        .expect("still the old certificate");

    let new_ca = Ca::new("New CA");
    write_server_files(dir.path(), &new_ca);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if connect(login(&new_ca, "dev-2")).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        connect(login(&old_ca, "dev-3")).await.is_err(),
        "new connections get the new certificate"
    );
    broker.shutdown().await;
}
