//! The alarm desk through the real server: a cabinet's power cut is one
//! alarm with its lights as children, a lamp failure elsewhere is its own
//! alarm, a condition reported again is the same occurrence and one that
//! comes back is counted, operators' actions follow the state machine, and
//! open alarms survive a restart.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};

const CABINET: &str = "urn:ngsi-ld:StreetlightControlCabinet:dijon:001";

fn light(n: u32, cabinet: &str, status: &str) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"), "type": "Streetlight", "scope": "/dijon/lighting",
        "status": {"type": "Property", "value": status},
        "refStreetlightControlCabinet": {"type": "Relationship", "object": cabinet},
    })
}

fn cabinet(volts: f64) -> Value {
    json!({"id": CABINET, "type": "StreetlightControlCabinet", "scope": "/dijon/lighting",
           "voltageR": {"type": "Property", "value": volts, "unitCode": "VLT"}})
}

async fn upsert(s: &TestServer, entities: Value) {
    let (status, body) = s.post_json("/ngsi-ld/v1/entityOperations/upsert", &entities).await;
    assert!(status == 201 || status == 204, "{status} {body}");
}

/// Polls the open alarms until `done` holds; panics after 10 s.
async fn alarms_until(s: &TestServer, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = s.get_json("/api/v1/alarms").await;
        assert_eq!(status, 200, "{body}");
        let alarms = body.as_array().cloned().unwrap_or_default();
        if done(&alarms) {
            return alarms;
        }
        assert!(tokio::time::Instant::now() < deadline, "alarms still {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn act(s: &TestServer, id: &str, body: Value) -> (u16, Value) {
    s.post_json(&format!("/api/v1/alarms/{id}/actions"), &body).await
}

#[tokio::test]
async fn a_power_cut_is_one_alarm_with_its_lights_as_children() {
    let data = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start_with(common::config_for(data.path(), None), tempfile::tempdir().expect("tmp")).await;
    let mut city = vec![cabinet(231.0)];
    city.extend((1..=40).map(|n| light(n, CABINET, "ok")));
    city.push(light(99, "urn:ngsi-ld:StreetlightControlCabinet:dijon:002", "ok"));
    upsert(&s, Value::Array(city)).await;

    // The cut: the cabinet reports 0 V, and its lights report faults too.
    upsert(&s, json!([cabinet(0.0)])).await;
    alarms_until(&s, |a| !a.is_empty()).await;
    upsert(
        &s,
        Value::Array((1..=40).map(|n| light(n, CABINET, "defectiveLamp")).collect()),
    )
    .await;
    // A lamp failure on another cabinet is an alarm of its own.
    upsert(
        &s,
        json!([light(
            99,
            "urn:ngsi-ld:StreetlightControlCabinet:dijon:002",
            "defectiveLamp"
        )]),
    )
    .await;
    let alarms = alarms_until(&s, |a| a.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = s.get_json("/api/v1/alarms").await;
    let all = body.as_array().cloned().unwrap_or_default();
    assert_eq!(
        all.len(),
        2,
        "one alarm for the cut, one for the other lamp, not 42: {body}"
    );
    let cut = &alarms[0];
    assert_eq!(
        (cut["type"].as_str(), cut["severity"].as_str()),
        (Some("power-cut"), Some("critical")),
        "{cut}"
    );
    assert_eq!(cut["source"], CABINET);
    assert_eq!(cut["children"].as_array().map(Vec::len), Some(40), "{cut}");
    assert_eq!(alarms[1]["type"], "fault:defectiveLamp");
    let id = cut["id"].as_str().expect("id").to_owned();

    // Reported again: the same occurrence. Restored: cleared; cut again: counted.
    upsert(&s, json!([cabinet(0.0)])).await;
    upsert(&s, json!([cabinet(229.0)])).await;
    alarms_until(&s, |a| {
        a.iter().any(|a| a["id"] == id.as_str() && a["state"] == "cleared")
    })
    .await;
    upsert(&s, json!([cabinet(0.0)])).await;
    let again = alarms_until(&s, |a| {
        a.iter().any(|a| a["id"] == id.as_str() && a["state"] == "active")
    })
    .await;
    let cut = again.iter().find(|a| a["id"] == id.as_str()).expect("the cut");
    assert_eq!(cut["occurrences"], 2, "{cut}");

    // The operator's side: acknowledge, comment, no close while it holds.
    let (status, body) = act(&s, &id, json!({"action": "acknowledge"})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("acknowledged")), "{body}");
    let (status, body) = act(&s, &id, json!({"action": "comment", "text": "ERDF prévenu"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = act(&s, &id, json!({"action": "close"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = act(&s, &id, json!({"action": "explode"})).await;
    assert_eq!(status, 400, "{body}");
    // The procedure for a power cut comes with the alarm; its steps are recorded once.
    let (_, with_procedure) = s.get_json(&format!("/api/v1/alarms/{id}")).await;
    let steps = with_procedure["procedure"]["steps"].as_array().map_or(0, Vec::len);
    assert!(steps >= 3, "{with_procedure}");
    let (status, body) = act(&s, &id, json!({"action": "step", "step": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stepsDone"][0]["step"], 0);
    let (status, _) = act(&s, &id, json!({"action": "step", "step": 1})).await;
    assert_eq!(status, 400, "a step is done once");
    let (status, body) = act(&s, &id, json!({"action": "step", "step": steps + 1})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = act(&s, "alarm-nope", json!({"action": "acknowledge"})).await;
    assert_eq!(status, 404);
    let (_, audit) = s.get_json("/api/v1/audit?action=alarm.*&limit=100").await;
    let verbs: Vec<&str> = audit
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for verb in [
        "alarm.raise",
        "alarm.clear",
        "alarm.recur",
        "alarm.acknowledge",
        "alarm.comment",
    ] {
        assert!(verbs.contains(&verb), "{verb} not audited: {verbs:?}");
    }

    // Open alarms survive a restart, with their comments.
    s.running.shutdown().await;
    let s = TestServer::start_with(common::config_for(data.path(), None), tempfile::tempdir().expect("tmp")).await;
    let (status, cut) = s.get_json(&format!("/api/v1/alarms/{id}")).await;
    assert_eq!(status, 200, "{cut}");
    assert_eq!(cut["comments"][0]["text"], "ERDF prévenu");
    // Power back, then closed: off the board.
    upsert(&s, json!([cabinet(230.0)])).await;
    alarms_until(&s, |a| {
        a.iter().any(|a| a["id"] == id.as_str() && a["state"] == "cleared")
    })
    .await;
    let (status, body) = act(&s, &id, json!({"action": "close"})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("closed")), "{body}");
    alarms_until(&s, |a| a.iter().all(|a| a["id"] != id.as_str())).await;
    s.running.shutdown().await;
}

#[tokio::test]
async fn the_board_follows_the_callers_sight_and_role() {
    let s = TestServer::http_only().await;
    upsert(&s, json!([light(7, CABINET, "defectiveLamp")])).await;
    let alarms = alarms_until(&s, |a| !a.is_empty()).await;
    let id = alarms[0]["id"].as_str().expect("id");
    let elsewhere = s.client_as(vigie_core::Role::Operator, "chenove", "*").await;
    let seen: Value = elsewhere
        .get(s.url("/api/v1/alarms"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(seen, json!([]), "an operator of Chenôve sees no alarm of Dijon");
    let auditor = s.client_as(vigie_core::Role::Auditor, "*", "*").await;
    let res = auditor
        .post(s.url(&format!("/api/v1/alarms/{id}/actions")))
        .json(&json!({"action": "acknowledge"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403, "an auditor changes nothing");
    let (status, _) = s.get_json("/api/v1/alarms?severity=apocalyptic").await;
    assert_eq!(status, 400);
    s.running.shutdown().await;
}

#[tokio::test]
async fn silent_equipment_raises_an_alarm_unless_its_parent_has_one() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config_for(data.path(), None);
    // Any observation is old at once: silence is judged on the first tick.
    config.console.stale_after_by_type.insert("WeatherObserved".into(), 0);
    config.console.stale_after_by_type.insert("Streetlight".into(), 0);
    let s = TestServer::start_with(config, tempfile::tempdir().expect("tmp")).await;
    let observed = json!({"type": "Property", "value": 3.5, "observedAt": "2026-11-30T06:00:00Z"});
    upsert(
        &s,
        json!([
            {"id": "urn:ngsi-ld:WeatherObserved:dijon:001", "type": "WeatherObserved", "scope": "/dijon/environment",
             "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04, 47.32]}},
             "temperature": observed},
            cabinet(0.0),
        ]),
    )
    .await;
    let mut lamp = light(1, CABINET, "ok");
    lamp["location"] = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.05, 47.32]}});
    lamp["illuminanceLevel"] = observed.clone();
    upsert(&s, json!([lamp])).await;
    let alarms = alarms_until(&s, |a| a.iter().any(|a| a["type"] == "silent")).await;
    tokio::time::sleep(Duration::from_secs(6)).await; // one more tick
    let (_, body) = s.get_json("/api/v1/alarms").await;
    let silent: Vec<&Value> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "silent")
        .collect();
    assert_eq!(
        silent.len(),
        1,
        "the station only, the light is part of the cut: {alarms:?}"
    );
    assert_eq!(silent[0]["source"], "urn:ngsi-ld:WeatherObserved:dijon:001");
    assert_eq!(silent[0]["severity"], "minor");
    // The light, which appeared after the cut, joined the cabinet's alarm.
    let cut: Vec<&Value> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "power-cut")
        .collect();
    assert_eq!(cut[0]["children"], json!(["urn:ngsi-ld:Streetlight:dijon:000001"]));
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_alarm_nobody_takes_is_escalated_to_the_webhook_until_acknowledged() {
    let (url, received) = common::webhook_sink().await;

    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config_for(data.path(), None);
    config.alarms.escalate_after_secs = 1;
    config.alarms.escalation_webhooks = vec![url];
    let s = TestServer::start_with(config, tempfile::tempdir().expect("tmp")).await;
    upsert(&s, json!([cabinet(0.0)])).await;
    let alarms = alarms_until(&s, |a| !a.is_empty()).await;
    let id = alarms[0]["id"].as_str().expect("id").to_owned();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while received.lock().expect("lock").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no escalation after 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = received.lock().expect("lock")[0].clone();
    assert_eq!(first["level"], 1, "{first}");
    assert_eq!(first["alarm"]["id"], id.as_str());
    assert_eq!(first["alarm"]["type"], "power-cut");

    let (status, _) = s
        .post_json(
            &format!("/api/v1/alarms/{id}/actions"),
            &json!({"action": "acknowledge"}),
        )
        .await;
    assert_eq!(status, 200);
    let count = received.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        received.lock().expect("lock").len(),
        count,
        "acknowledged: no more escalation"
    );
    let (_, audit) = s.get_json("/api/v1/audit?action=alarm.escalate").await;
    assert!(audit.as_array().is_some_and(|a| !a.is_empty()), "{audit}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_escalation_is_mailed_through_a_real_smtp_server() {
    use std::io::BufRead;
    let inbox = tempfile::tempdir().expect("inbox");
    /// The SMTP sink, stopped however the test ends.
    struct Sink(std::process::Child);
    impl Drop for Sink {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut sink = Sink(
        std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py"))
            .arg(inbox.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the SMTP sink (Debian's python3)"),
    );
    let mut port = String::new();
    std::io::BufReader::new(sink.0.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("the sink's port");
    let port: u16 = port.trim().parse().expect("a port number");

    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config_for(data.path(), None);
    config.alarms.escalate_after_secs = 1;
    config.alarms.escalation_emails = vec!["astreinte@dijon.example".into()];
    config.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
    config.mail.from = "vigie@dijon.example".into();
    let s = TestServer::start_with(config, tempfile::tempdir().expect("tmp")).await;
    upsert(&s, json!([cabinet(0.0)])).await;
    let alarms = alarms_until(&s, |a| !a.is_empty()).await;
    let id = alarms[0]["id"].as_str().expect("id").to_owned();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mail = loop {
        let first = std::fs::read_dir(inbox.path())
            .expect("inbox")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"));
        if let Some(path) = first {
            break std::fs::read_to_string(path).expect("the message");
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail after 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(sink);
    assert!(mail.starts_with("X-Rcpt: astreinte@dijon.example"), "{mail}");
    assert!(mail.contains("From: Vigie <vigie@dijon.example>"), "{mail}");
    let body64: String = mail
        .split("\r\n\r\n")
        .nth(1)
        .or_else(|| mail.split("\n\n").nth(1))
        .expect("a body")
        .lines()
        .map(str::trim)
        .collect();
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(body64.trim_end_matches('.'))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(body.contains(&id) && body.contains("n'a pas été acquittée"), "{body}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_citys_rule_raises_and_clears_its_alarm() {
    let data = tempfile::tempdir().expect("tempdir");
    let rules = data.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
id = "dim-light-too-bright"
version = 3
name = "A light asked to dim still shines too much"
applies_to = { types = ["Streetlight"] }
trigger = { type = "on-change" }
condition = "illuminanceLevel > 0.8 && powerState == 'low'"

[[rule.actions]]
action = "raise-alarm"
alarm_type = "dimming-ignored"
severity = "minor"
detail = "Level {illuminanceLevel} at {id}"
"#,
    )
    .expect("write rules");
    let mut config = common::config_for(data.path(), None);
    config.alarms.rules_file = rules.display().to_string();
    let s = TestServer::start_with(config, tempfile::tempdir().expect("tmp")).await;
    let lamp = |level: f64| {
        json!([{"id": "urn:ngsi-ld:Streetlight:dijon:000005", "type": "Streetlight", "scope": "/dijon/lighting",
                "powerState": {"type": "Property", "value": "low"},
                "illuminanceLevel": {"type": "Property", "value": level}}])
    };
    upsert(&s, lamp(0.5)).await;
    upsert(&s, lamp(0.95)).await;
    let alarms = alarms_until(&s, |a| a.iter().any(|a| a["type"] == "dimming-ignored")).await;
    let raised = alarms
        .iter()
        .find(|a| a["type"] == "dimming-ignored")
        .expect("the rule's alarm");
    assert_eq!(raised["severity"], "minor");
    assert!(
        raised["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Level 0.95") && d.contains("rule dim-light-too-bright v3")),
        "{raised}"
    );
    // Another change that still matches is the same occurrence; back to normal clears it.
    upsert(&s, lamp(0.9)).await;
    upsert(&s, lamp(0.5)).await;
    let alarms = alarms_until(&s, |a| {
        a.iter()
            .any(|a| a["type"] == "dimming-ignored" && a["state"] == "cleared")
    })
    .await;
    let cleared = alarms
        .iter()
        .find(|a| a["type"] == "dimming-ignored")
        .expect("still on the board");
    assert_eq!(cleared["occurrences"], 1);
    s.running.shutdown().await;

    // A rule file with errors stops the start with every error named.
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"broken\"\ntrigger = { type = \"on-change\" }\ncondition = \"status ==\"\n",
    )
    .expect("write");
    let mut config = common::config_for(data.path(), None);
    config.alarms.rules_file = rules.display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused = vigie_server::start(config, listener, axum::Router::new()).await;
    let error = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("broken") && error.contains("rules_file"), "{error}");
}
