//! Ingestion through real MQTT brokers (the embedded one and Debian's
//! mosquitto): IoT Agent JSON, ChirpStack events, provisioning, dead letters
//! and refusal of unknown devices.

mod common;

use common::{Mosquitto, TestServer, add_gateway, publish, publisher, publisher_as};
use rumqttc::v5::AsyncClient;
use serde_json::{Value, json};

fn provisioning() -> Value {
    json!({"devices": [
        {"device_id": "SL-000001", "transport": "mqtt", "apikey": "lighting",
         "entity_name": "urn:ngsi-ld:Streetlight:dijon:000001", "entity_type": "Streetlight",
         "scope": {"commune": "dijon", "business_line": "lighting"},
         "attributes": [{"object_id": "p", "name": "powerConsumption", "type": "Number", "unitCode": "WTT"},
                        {"object_id": "st", "name": "powerState", "type": "Text"}]},
        {"device_id": "PK-0001", "transport": "lorawan", "dev_eui": "A81758FFFE030001",
         "entity_name": "urn:ngsi-ld:ParkingSpot:chenove:0001", "entity_type": "ParkingSpot",
         "scope": {"commune": "chenove", "business_line": "parking"}}
    ]})
}

#[tokio::test]
async fn through_mosquitto() {
    let broker = Mosquitto::start();
    let s = TestServer::with_broker(broker.url()).await;
    let client = publisher(broker.port, "device-sim").await;
    devices_feed_the_twin_and_bad_messages_become_dead_letters(&s, client).await;
    s.running.shutdown().await;
}

#[tokio::test]
async fn through_the_embedded_broker() {
    // One client publishes for every device here (and for an unknown one):
    // on the embedded broker, which checks credentials, it is a gateway.
    let mut password = String::new();
    let s = TestServer::with_embedded_broker_and(|config| {
        password = add_gateway(config, "device-sim", &["/+/+/attrs", "application/+/device/+/event/+"]);
    })
    .await;
    let port = s.running.mqtt_addr.expect("embedded broker address").port();
    let client = publisher_as(port, "device-sim", "device-sim", &password).await;
    devices_feed_the_twin_and_bad_messages_become_dead_letters(&s, client).await;
    s.running.shutdown().await;
}

async fn devices_feed_the_twin_and_bad_messages_become_dead_letters(s: &TestServer, client: AsyncClient) {
    let (status, _) = s.post_json("/iot/devices", &provisioning()).await;
    assert_eq!(status, 201);
    let (status, device) = s.get_json("/iot/devices/PK-0001").await;
    assert_eq!(status, 200);
    assert_eq!(device["dev_eui"], "a81758fffe030001");

    // Wait until Vigie's subscription is active: retry the first message.
    let light = "urn:ngsi-ld:Streetlight:dijon:000001";
    let mut ok = false;
    for _ in 0..100 {
        publish(&client, "/lighting/SL-000001/attrs", &json!({"p": 41.5, "st": "on"})).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if s.get_json(&format!("/ngsi-ld/v1/entities/{light}")).await.0 == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the first message never reached the twin");
    let e = s
        .wait_for_entity(light, |e| e["powerConsumption"]["value"] == 41.5)
        .await;
    assert_eq!(e["powerConsumption"]["unitCode"], "WTT");
    assert_eq!(e["powerState"]["value"], "on");
    assert_eq!(e["scope"], "/dijon/lighting");

    // Bad messages: unknown device, malformed JSON, wrong shape. None stops ingestion.
    publish(&client, "/lighting/SL-999999/attrs", &json!({"p": 1})).await;
    client
        .publish(
            "/lighting/SL-000001/attrs",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            b"{oops".to_vec(),
        )
        .await
        .unwrap();
    publish(&client, "/lighting/SL-000001/attrs", &json!(42)).await;

    // LoRaWAN through ChirpStack's integration.
    let up = json!({
        "deduplicationId": "c9dbe358", "time": "2026-11-22T17:00:00Z",
        "deviceInfo": {"devEui": "a81758fffe030001", "deviceName": "PK-0001", "applicationId": "7"},
        "fCnt": 12, "fPort": 2, "data": "AQ==", "object": {"status": "occupied"},
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -104, "snr": 3.25}]
    });
    publish(&client, "application/7/device/a81758fffe030001/event/up", &up).await;
    let spot = s
        .wait_for_entity("urn:ngsi-ld:ParkingSpot:chenove:0001", |e| {
            e["status"]["value"] == "occupied"
        })
        .await;
    assert_eq!(spot["rssi"]["value"], -104.0);
    assert_eq!(spot["status"]["observedAt"], "2026-11-22T17:00:00.000Z");

    // After the bad ones, a good message still gets through.
    publish(&client, "/lighting/SL-000001/attrs", &json!({"p": 12.0, "st": "low"})).await;
    s.wait_for_entity(light, |e| e["powerState"]["value"] == "low").await;

    let (_, letters) = s.get_json("/api/v1/dead-letters").await;
    let reasons: Vec<&str> = letters["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(letters["total"], 3, "{letters}");
    assert!(reasons.contains(&"unknown-device"));
    assert_eq!(reasons.iter().filter(|r| **r == "invalid-payload").count(), 2);
    let unknown = letters["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["reason"] == "unknown-device")
        .unwrap();
    assert!(unknown["detail"].as_str().unwrap().contains("SL-999999"));

    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("vigie_unknown_device_messages_total 1"), "{metrics}");
    assert!(metrics.contains("vigie_malformed_messages_total 2"), "{metrics}");

    // History keeps every value.
    let history = s
        .running
        .store
        .history(&vigie_store::HistoryQuery {
            entity_id: Some(vigie_core::EntityId::new(light).unwrap()),
            attribute: Some("powerConsumption".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let values: Vec<f64> = history.iter().map(|p| p.value.as_f64().unwrap()).collect();
    assert!(values.contains(&41.5) && values.contains(&12.0), "{values:?}");
}
