//! Device security on the embedded broker: credentials, the per-device ACL,
//! refusals counted. Devices cannot impersonate each other.

mod common;

use common::{Mosquitto, Probe, TestServer, metric};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use serde_json::{Value, json};

const A_PASSWORD: &str = "device-a-secret-0123456789";

fn light(n: u32, password: Option<&str>) -> Value {
    let mut d = json!({"device_id": format!("SL-{n:06}"), "transport": "mqtt", "apikey": "lighting",
        "entity_name": format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"), "entity_type": "Streetlight",
        "attributes": [{"object_id": "p", "name": "powerConsumption", "type": "Number"}]});
    if let Some(p) = password {
        d["mqtt_password"] = json!(p);
    }
    d
}

async fn publish(probe: &mut Probe, topic: &str, payload: Value) -> PubAckReason {
    probe
        .client
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&payload).expect("json"),
        )
        .await
        .expect("publish");
    probe
        .next(|p| match p {
            Packet::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await
}

#[tokio::test]
async fn devices_cannot_impersonate_each_other() {
    let s = TestServer::with_embedded_broker().await;
    let port = s.running.mqtt_addr.expect("embedded broker").port();

    // A brings its password; B gets one generated, returned once.
    let (status, body) = s
        .post_json(
            "/iot/devices",
            &json!({"devices": [light(1, Some(A_PASSWORD)), light(2, None)]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let creds = body["credentials"].as_array().expect("credentials");
    assert_eq!(creds.len(), 1, "only B's password is generated: {body}");
    assert_eq!(creds[0]["device_id"], "SL-000002");
    let b_password = creds[0]["mqtt_password"].as_str().expect("password").to_owned();
    assert!(!body.to_string().contains(A_PASSWORD));
    // Neither the password nor its hash is shown afterwards.
    let (_, shown) = s.get_json("/iot/devices/SL-000001").await;
    assert_eq!(shown["has_mqtt_password"], true, "{shown}");
    assert!(shown.get("mqtt_password_hash").is_none() && shown.get("mqtt_password").is_none());

    // No credentials, a wrong password, another device's client id: refused.
    assert_eq!(
        Probe::connect(port, "SL-000001", None).await.err(),
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        Probe::connect(port, "SL-000001", Some(("SL-000001", "not-the-password-at-all")))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        Probe::connect(port, "SL-000001", Some(("SL-000001", b_password.as_str())))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        Probe::connect(port, "SL-000002", Some(("SL-000001", A_PASSWORD)))
            .await
            .err(),
        Some(ConnectReturnCode::NotAuthorized)
    );

    let mut a = Probe::connect(port, "SL-000001", Some(("SL-000001", A_PASSWORD)))
        .await
        .expect("A connects");
    let mut b = Probe::connect(port, "SL-000002", Some(("SL-000002", b_password.as_str())))
        .await
        .expect("B connects with its generated password");

    // B reports; Vigie ingests it (retry until Vigie's subscription is up).
    let b_light = "urn:ngsi-ld:Streetlight:dijon:000002";
    for _ in 0..100 {
        assert_eq!(
            publish(&mut b, "/lighting/SL-000002/attrs", json!({"p": 10.0})).await,
            PubAckReason::Success
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if s.get_json(&format!("/ngsi-ld/v1/entities/{b_light}")).await.0 == 200 {
            break;
        }
    }
    s.wait_for_entity(b_light, |e| e["powerConsumption"]["value"] == 10.0)
        .await;

    // A impersonates B: refused with PUBACK "not authorized", connection kept.
    assert_eq!(
        publish(&mut a, "/lighting/SL-000002/attrs", json!({"p": 99.0})).await,
        PubAckReason::NotAuthorized
    );
    assert_eq!(
        publish(&mut a, "/parking/SL-000001/attrs", json!({"p": 99.0})).await,
        PubAckReason::NotAuthorized
    );
    // A's own topic works on the same connection.
    assert_eq!(
        publish(&mut a, "/lighting/SL-000001/attrs", json!({"p": 41.5})).await,
        PubAckReason::Success
    );
    s.wait_for_entity("urn:ngsi-ld:Streetlight:dijon:000001", |e| {
        e["powerConsumption"]["value"] == 41.5
    })
    .await;
    // A's message is in, so the forged one would be too: B is unchanged.
    let (_, b_entity) = s.get_json(&format!("/ngsi-ld/v1/entities/{b_light}")).await;
    assert_eq!(b_entity["powerConsumption"]["value"], 10.0, "{b_entity}");

    // Commands: A may read its own, not B's.
    a.client
        .subscribe("/lighting/SL-000002/cmd", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let codes = a
        .next(|p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes),
            _ => None,
        })
        .await;
    assert_eq!(codes, vec![SubscribeReasonCode::NotAuthorized]);
    a.client
        .subscribe("/lighting/SL-000001/cmd", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let codes = a
        .next(|p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes),
            _ => None,
        })
        .await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);

    let refused = |reason: &str| format!("vigie_mqtt_refused_total{{reason=\"{reason}\"}}");
    assert_eq!(metric(&s, &refused("unauthenticated")).await, Some(1.0));
    assert_eq!(metric(&s, &refused("bad_credentials")).await, Some(2.0));
    assert_eq!(metric(&s, &refused("client_id")).await, Some(1.0));
    assert_eq!(metric(&s, &refused("foreign_topic")).await, Some(2.0));
    assert_eq!(metric(&s, &refused("foreign_subscription")).await, Some(1.0));
    // Nothing forged reached the dead letters either: it never got to Vigie.
    let (_, letters) = s.get_json("/api/v1/dead-letters").await;
    assert_eq!(letters["total"], 0, "{letters}");

    // A device provisioned now can connect at once.
    let (status, _) = s
        .post_json(
            "/iot/devices",
            &json!({"devices": [light(3, Some("device-c-secret-0123456789"))]}),
        )
        .await;
    assert_eq!(status, 201);
    Probe::connect(port, "SL-000003", Some(("SL-000003", "device-c-secret-0123456789")))
        .await
        .expect("a new device connects without a restart");
    s.running.shutdown().await;
}

#[tokio::test]
async fn open_broker_when_device_auth_is_off() {
    let s = TestServer::with_embedded_broker_and(|c| c.mqtt.require_device_auth = false).await;
    let port = s.running.mqtt_addr.expect("embedded broker").port();
    let mut anyone = Probe::connect(port, "anyone", None).await.expect("anonymous connect");
    assert_eq!(
        publish(&mut anyone, "/lighting/SL-000002/attrs", json!({"p": 1})).await,
        PubAckReason::Success
    );
    s.running.shutdown().await;
}

/// The same rules on mosquitto, from `vigie_core::acl::mosquitto_acl` (what
/// `vigie devices mosquitto-acl` prints) and mosquitto's own password file.
#[tokio::test]
async fn mosquitto_applies_the_same_rules() {
    let (a, b) = (light(1, Some(A_PASSWORD)), light(2, Some("device-b-secret-0123456789")));
    let devices: Vec<vigie_core::Device> = [&a, &b]
        .iter()
        .map(|d| {
            let spec: vigie_core::DeviceSpec = serde_json::from_value((*d).clone()).expect("device");
            spec.into_device([0; 16]).expect("valid device")
        })
        .collect();
    let acl = vigie_core::acl::mosquitto_acl("vigie-svc", [], devices.iter());
    let broker = Mosquitto::start_secured(
        &[
            ("vigie-svc", "service-secret-0123456789"),
            ("SL-000001", A_PASSWORD),
            ("SL-000002", "device-b-secret-0123456789"),
        ],
        &acl,
    );
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config_for(data.path(), Some(broker.url()));
    config.mqtt.username = "vigie-svc".into();
    config.mqtt.password = "service-secret-0123456789".into();
    let s = TestServer::start_with(config, data).await;
    let (status, body) = s.post_json("/iot/devices", &json!({"devices": [a, b]})).await;
    assert_eq!(status, 201, "{body}");

    assert!(
        Probe::connect(broker.port, "SL-000001", Some(("SL-000001", "wrong-password-0000000")))
            .await
            .is_err()
    );
    let mut a = Probe::connect(broker.port, "SL-000001", Some(("SL-000001", A_PASSWORD)))
        .await
        .expect("A connects");
    let mut b = Probe::connect(
        broker.port,
        "SL-000002",
        Some(("SL-000002", "device-b-secret-0123456789")),
    )
    .await
    .expect("B connects");
    let b_light = "urn:ngsi-ld:Streetlight:dijon:000002";
    for _ in 0..100 {
        publish(&mut b, "/lighting/SL-000002/attrs", json!({"p": 10.0})).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if s.get_json(&format!("/ngsi-ld/v1/entities/{b_light}")).await.0 == 200 {
            break;
        }
    }
    s.wait_for_entity(b_light, |e| e["powerConsumption"]["value"] == 10.0)
        .await;
    // Mosquitto answers the forged publish as it likes; it must not arrive.
    publish(&mut a, "/lighting/SL-000002/attrs", json!({"p": 99.0})).await;
    publish(&mut a, "/lighting/SL-000001/attrs", json!({"p": 41.5})).await;
    s.wait_for_entity("urn:ngsi-ld:Streetlight:dijon:000001", |e| {
        e["powerConsumption"]["value"] == 41.5
    })
    .await;
    let (_, b_entity) = s.get_json(&format!("/ngsi-ld/v1/entities/{b_light}")).await;
    assert_eq!(b_entity["powerConsumption"]["value"], 10.0, "{b_entity}");
    s.running.shutdown().await;
}
