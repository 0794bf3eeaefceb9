//! Commands to equipment through the real server and the embedded broker: a
//! device logged in with its own credentials receives its command on
//! `/{apikey}/{device_id}/cmd` and answers on `/cmdexe`; a silent device's
//! command expires, also across a restart; bad commands and roles that may
//! not command are refused with their reason.

mod common;

use std::time::Duration;

use common::{Probe, TestServer};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use serde_json::{Value, json};
use vigie_core::Role;

const LIGHT: &str = "urn:ngsi-ld:Streetlight:dijon:000001";
const PASSWORD: &str = "a-device-password-0123456789";

async fn provision(s: &TestServer) {
    let (status, body) = s
        .post_json(
            "/iot/devices",
            &json!({"devices": [
                {"device_id": "SL-000001", "transport": "mqtt", "apikey": "lighting",
                 "entity_name": LIGHT, "entity_type": "Streetlight",
                 "scope": {"commune": "dijon", "business_line": "lighting"},
                 "mqtt_password": PASSWORD}
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s
        .post_json(
            "/ngsi-ld/v1/entities",
            &json!({"id": LIGHT, "type": "Streetlight", "scope": "/dijon/lighting",
                    "powerState": {"type": "Property", "value": "on"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn send(s: &TestServer, command: &str, value: Value) -> (u16, Value) {
    s.post_json(
        "/api/v1/commands",
        &json!({"entity": LIGHT, "command": command, "value": value}),
    )
    .await
}

/// Polls the command until `state`; panics after 10 s.
async fn wait_state(s: &TestServer, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, command) = s.get_json(&format!("/api/v1/commands/{id}")).await;
        assert_eq!(status, 200, "{command}");
        if command["state"] == state {
            return command;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {command} after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_device_receives_its_command_and_its_answer_closes_it() {
    let s = TestServer::with_embedded_broker().await;
    provision(&s).await;
    let port = s.running.mqtt_addr.expect("broker").port();
    let mut device = Probe::connect(port, "SL-000001", Some(("SL-000001", PASSWORD)))
        .await
        .expect("the device logs in");
    device
        .client
        .subscribe("/lighting/SL-000001/cmd", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    device.next(|p| matches!(p, Packet::SubAck(_)).then_some(())).await;

    let (status, sent) = send(&s, "dim", json!("40")).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["state"], "sent");
    assert_eq!(sent["value"], 40, "the value is normalised to a whole number");
    let payload = device
        .next(|p| match p {
            Packet::Publish(p) if p.topic.as_ref() == b"/lighting/SL-000001/cmd" => Some(p.payload.to_vec()),
            _ => None,
        })
        .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).expect("json"),
        json!({"dim": 40})
    );

    device
        .client
        .publish(
            "/lighting/SL-000001/cmdexe",
            QoS::AtLeastOnce,
            false,
            br#"{"dim":"OK"}"#.to_vec(),
        )
        .await
        .expect("answer");
    let id = sent["id"].as_str().expect("id");
    let done = wait_state(&s, id, "acknowledged").await;
    assert_eq!(done["detail"], "OK");

    // A refusal by the device fails the command, with the device's words.
    let (_, sent) = send(&s, "switch", json!("off")).await;
    device
        .client
        .publish(
            "/lighting/SL-000001/cmdexe",
            QoS::AtLeastOnce,
            false,
            br#"{"switch":"ERROR: driver fault"}"#.to_vec(),
        )
        .await
        .expect("answer");
    let failed = wait_state(&s, sent["id"].as_str().expect("id"), "failed").await;
    assert_eq!(failed["detail"], "ERROR: driver fault");

    let (status, list) = s.get_json(&format!("/api/v1/commands?entity={LIGHT}")).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list[0]["name"], "switch", "newest first");

    // Sending is audited.
    let (_, audit) = s.get_json("/api/v1/audit?action=command.send").await;
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit}");
    assert_eq!(audit[0]["target"], LIGHT);
    s.running.shutdown().await;
}

#[tokio::test]
async fn bad_commands_and_roles_that_may_not_command_are_refused() {
    let s = TestServer::with_embedded_broker().await;
    provision(&s).await;
    let (status, body) = send(&s, "dim", json!(140)).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("0 to 100")),
        "{body}"
    );
    let (status, body) = send(&s, "explode", json!(1)).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("switch, dim")),
        "{body}"
    );
    let (status, _) = s
        .post_json(
            "/api/v1/commands",
            &json!({"entity": "urn:ngsi-ld:Streetlight:dijon:999999", "command": "dim", "value": 1}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s.post_json("/api/v1/commands", &json!({"entity": LIGHT})).await;
    assert_eq!(status, 400);

    let auditor = s.client_as(Role::Auditor, "*", "*").await;
    let res = auditor
        .post(s.url("/api/v1/commands"))
        .json(&json!({"entity": LIGHT, "command": "dim", "value": 10}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403);
    let elsewhere = s.client_as(Role::Operator, "chenove", "*").await;
    let res = elsewhere
        .post(s.url("/api/v1/commands"))
        .json(&json!({"entity": LIGHT, "command": "dim", "value": 10}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 404, "a light out of sight reads as missing");
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_command_expires_even_across_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = |data: &std::path::Path| {
        let mut c = common::config_for(data, None);
        c.mqtt.embedded = true;
        c.commands.timeout_secs = 1;
        c
    };
    let s = TestServer::start_with(config(data.path()), tempfile::tempdir().expect("tempdir")).await;
    provision(&s).await;
    let (status, sent) = send(&s, "dim", json!(10)).await;
    assert_eq!(status, 202);
    let id = sent["id"].as_str().expect("id").to_owned();
    let expired = wait_state(&s, &id, "expired").await;
    assert!(
        expired["detail"].as_str().is_some_and(|d| d.contains("no answer")),
        "{expired}"
    );

    // Sent just before a shutdown: the next run expires it.
    let (_, sent) = send(&s, "dim", json!(20)).await;
    let id = sent["id"].as_str().expect("id").to_owned();
    s.running.shutdown().await;
    let s = TestServer::start_with(config(data.path()), tempfile::tempdir().expect("tempdir")).await;
    wait_state(&s, &id, "expired").await;
    s.running.shutdown().await;
}
