//! No alarm and no pending command is lost to a `kill -9` of the real
//! binary: a power cut written just before the kill is an alarm after the
//! restart (stored, or raised again from the state the twin reloads), and a
//! command left unanswered is still followed and expires on time.
//!
//! Run: `cargo test -p vigie --test alarms_crash`.

mod common;

use std::time::{Duration, Instant};

use common::{Vigie, write_config};
use serde_json::{Value, json};

const CABINET: &str = "urn:ngsi-ld:StreetlightControlCabinet:dijon:001";
const LIGHT: &str = "urn:ngsi-ld:Streetlight:dijon:000001";

async fn until(v: &Vigie, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = v.get_json(path).await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {body} after 15 s\n{}",
            v.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn alarms_and_pending_commands_survive_a_kill_9() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = write_config(data.path(), "embedded = true\nembedded_listen = \"127.0.0.1:0\"");
    // Answers are not coming (no device connects): a short timeout.
    let mut text = std::fs::read_to_string(&config).expect("read config");
    text.push_str("\n[commands]\ntimeout_secs = 3\n");
    std::fs::write(&config, text).expect("write config");

    let v = Vigie::start(&config).await;
    let (status, body) = v
        .post_json(
            "/iot/devices",
            &json!({"devices": [{"device_id": "SL-000001", "transport": "mqtt", "apikey": "lighting",
                "entity_name": LIGHT, "entity_type": "Streetlight",
                "scope": {"commune": "dijon", "business_line": "lighting"}}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = v
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert",
            &json!([
                {"id": CABINET, "type": "StreetlightControlCabinet", "scope": "/dijon/lighting",
                 "voltageR": {"type": "Property", "value": 231.0}},
                {"id": LIGHT, "type": "Streetlight", "scope": "/dijon/lighting",
                 "refStreetlightControlCabinet": {"type": "Relationship", "object": CABINET}},
            ]),
        )
        .await;
    assert!(status == 201 || status == 204, "{status} {body}");
    let (status, command) = v
        .post_json(
            "/api/v1/commands",
            &json!({"entity": LIGHT, "command": "dim", "value": 30}),
        )
        .await;
    assert_eq!(status, 202, "{command}");
    assert_eq!(command["state"], "sent", "no device answers: it stays sent");

    // The cut, and the kill right after its write is acknowledged.
    let (status, body) = v
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert",
            &json!([{"id": CABINET, "type": "StreetlightControlCabinet", "scope": "/dijon/lighting",
                     "voltageR": {"type": "Property", "value": 0.0}}]),
        )
        .await;
    assert!(status == 201 || status == 204, "{status} {body}");
    v.kill9();

    let v = Vigie::start(&config).await;
    let alarms = until(&v, "/api/v1/alarms", "the power cut's alarm", |b| {
        b.as_array().is_some_and(|a| a.iter().any(|a| a["type"] == "power-cut"))
    })
    .await;
    let cut: Vec<&Value> = alarms
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "power-cut")
        .collect();
    assert_eq!(cut.len(), 1, "one alarm for the cut, not two: {alarms}");
    assert_eq!(cut[0]["children"], json!([LIGHT]));

    let id = command["id"].as_str().expect("id");
    let expired = until(&v, &format!("/api/v1/commands/{id}"), "the pending command", |c| {
        c["state"] == "expired"
    })
    .await;
    assert!(
        expired["detail"].as_str().is_some_and(|d| d.contains("no answer")),
        "{expired}"
    );
    v.kill9();
}
