//! Automation rules through the real server: written, switched, versioned
//! and retired through `/api/v1/rules`, in force at once (no restart) and
//! after a restart; their actions carried out (alarm, webhook, attribute,
//! public information, work order); invalid rules refused with each
//! problem where it is; and a dry run over recorded history.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};
use vigie_core::Role;

const STATION: &str = "urn:ngsi-ld:WeatherObserved:dijon:darcy";

fn station(temperature: f64) -> Value {
    json!({"id": STATION, "type": "WeatherObserved", "scope": "/dijon/roads",
           "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.0337, 47.3229]}},
           "name": {"type": "Property", "value": "Place Darcy"},
           "temperature": {"type": "Property", "value": temperature, "unitCode": "CEL"}})
}

fn frost_rule(webhook: &str) -> Value {
    json!({
        "id": "frost-darcy",
        "name": "Gel place Darcy",
        "communes": ["dijon"],
        "applies_to": {"types": ["WeatherObserved"]},
        "trigger": {"type": "on-change"},
        "condition": "temperature < 0.0",
        "actions": [
            {"action": "raise-alarm", "alarm_type": "frost", "severity": "major", "detail": "{temperature} °C"},
            {"action": "notify", "channel": "webhook", "to": webhook, "template": "Gel à {name} : {temperature} °C"},
            {"action": "set-attribute", "name": "roadCondition", "value": "icy"},
            {"action": "publish-information", "template": "Risque de verglas près de {name}."},
            {"action": "open-work-order", "kind": "gritting", "priority": "urgent"},
        ],
    })
}

async fn upsert(s: &TestServer, entities: Value) {
    let (status, body) = s.post_json("/ngsi-ld/v1/entityOperations/upsert", &entities).await;
    assert!(status == 201 || status == 204, "{status} {body}");
}

/// Polls `path` until `done` holds on its JSON; panics after 10 s.
async fn until(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = s.get_json(path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} still {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn frost_alarm(alarms: &Value) -> Option<&Value> {
    alarms.as_array()?.iter().find(|a| a["type"] == "frost")
}

async fn send(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut req = s.http.request(method, s.url(path));
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(version) = if_match {
        req = req.header("If-Match", version);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_rule_written_through_the_api_acts_at_once_and_is_versioned() {
    let (hook, received) = common::webhook_sink().await;
    let data = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start_with(common::config_for(data.path(), None), tempfile::tempdir().expect("tmp")).await;
    upsert(&s, json!([station(3.0)])).await;

    // Written: version 1, in force without a restart.
    let res = s
        .http
        .post(s.url("/api/v1/rules"))
        .json(&frost_rule(&hook))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/api/v1/rules/frost-darcy");
    assert_eq!(res.headers()["etag"], "\"1\"");
    let created: Value = res.json().await.expect("json");
    assert_eq!(
        (created["version"].as_u64(), created["origin"].as_str()),
        (Some(1), Some("api")),
        "{created}"
    );
    let (status, _) = s.post_json("/api/v1/rules", &frost_rule(&hook)).await;
    assert_eq!(status, 409, "the id is taken");

    // Frost: every action.
    upsert(&s, json!([station(-2.5)])).await;
    let alarms = until(&s, "/api/v1/alarms", |a| frost_alarm(a).is_some()).await;
    let alarm = frost_alarm(&alarms).expect("frost");
    assert_eq!(alarm["severity"], "major");
    assert!(
        alarm["detail"]
            .as_str()
            .is_some_and(|d| d.contains("-2.5 °C") && d.contains("rule frost-darcy v1")),
        "{alarm}"
    );
    s.wait_for_entity(STATION, |e| e["roadCondition"]["value"] == "icy")
        .await;
    let information = format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Alert:rule:frost-darcy:{STATION}");
    let alert = until(&s, &information, |_| true).await;
    assert_eq!(alert["type"], "Alert");
    assert_eq!(alert["description"]["value"], "Risque de verglas près de Place Darcy.");
    assert_eq!(alert["category"]["value"], "weather", "a weather station's information");
    assert!(alert.get("validTo").is_none(), "{alert}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.lock().expect("lock").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no webhook");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notified = received.lock().expect("lock")[0].clone();
    assert_eq!(notified["text"], "Gel à Place Darcy : -2.5 °C", "{notified}");
    assert_eq!(notified["rule"], json!({"id": "frost-darcy", "version": 1}));
    let orders = until(&s, "/api/v1/audit?action=work-order.request", |a| {
        a.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(
        orders[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("gritting") && d.contains("urgent")),
        "{orders}"
    );

    // Thaw: the alarm clears, the information ends.
    upsert(&s, json!([station(2.0)])).await;
    until(&s, "/api/v1/alarms", |a| {
        frost_alarm(a).is_some_and(|f| f["state"] == "cleared")
    })
    .await;
    until(&s, &information, |a| a.get("validTo").is_some()).await;

    // Switched off in Dijon: version 2, and frost no longer raises.
    let (status, body) = send(
        &s,
        reqwest::Method::PATCH,
        "/api/v1/rules/frost-darcy",
        Some(&json!({"enabled": false})),
        Some("\"1\""),
    )
    .await;
    assert_eq!(
        (status, body["version"].as_u64(), body["enabled"].as_bool()),
        (200, Some(2), Some(false)),
        "{body}"
    );
    let (status, body) = send(
        &s,
        reqwest::Method::PUT,
        "/api/v1/rules/frost-darcy",
        Some(&frost_rule(&hook)),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412, "edited from version 1, now at 2: {body}");
    let (status, body) = send(
        &s,
        reqwest::Method::PATCH,
        "/api/v1/rules/frost-darcy",
        Some(&json!({"condition": "true"})),
        None,
    )
    .await;
    assert_eq!(status, 400, "only switches: {body}");
    let alarm_id = frost_alarm(&s.get_json("/api/v1/alarms").await.1).map(|a| a["id"].clone());
    upsert(&s, json!([station(-4.0)])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, alarms) = s.get_json("/api/v1/alarms").await;
    let frost = frost_alarm(&alarms).expect("still on the board");
    assert_eq!(
        (frost["state"].as_str(), frost["id"].clone()),
        (Some("cleared"), alarm_id.expect("id")),
        "disabled: {frost}"
    );

    // The record: every version, who saved it.
    let (status, versions) = s.get_json("/api/v1/rules/frost-darcy/versions").await;
    assert_eq!(status, 200);
    let seen: Vec<(u64, bool)> = versions
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["rule"]["version"].as_u64().unwrap_or(0),
                v["rule"]["enabled"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(seen, [(1, true), (2, false)]);
    assert_eq!(versions[1]["savedBy"], "test harness");

    // Kept across a restart, then retired (its versions stay).
    let TestServer { running, data: tmp, .. } = s;
    running.shutdown().await;
    let s = TestServer::start_with(common::config_for(data.path(), None), tmp).await;
    let (status, rule) = s.get_json("/api/v1/rules/frost-darcy").await;
    assert_eq!((status, rule["version"].as_u64()), (200, Some(2)), "{rule}");
    let (status, _) = send(&s, reqwest::Method::DELETE, "/api/v1/rules/frost-darcy", None, None).await;
    assert_eq!(status, 204);
    assert_eq!(s.get_json("/api/v1/rules/frost-darcy").await.0, 404);
    let (_, versions) = s.get_json("/api/v1/rules/frost-darcy/versions").await;
    assert_eq!(versions.as_array().map(Vec::len), Some(3));
    assert_eq!(versions[2]["retired"], true);
    let (_, audit) = s.get_json("/api/v1/audit?action=rule.*").await;
    let verbs: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for verb in ["rule.create", "rule.switch", "rule.retire"] {
        assert!(verbs.contains(&verb), "{verb} audited: {verbs:?}");
    }
    s.running.shutdown().await;
}

#[tokio::test]
async fn invalid_rules_are_refused_with_each_problem_where_it_is() {
    let s = TestServer::http_only().await;
    let mut rule = frost_rule("http://127.0.0.1:9/hook");
    rule["condition"] = json!("temperature <\n  && true");
    rule["trigger"] = json!({"type": "schedule", "cron": "61 * * * *"});
    rule["actions"][1]["to"] = json!("not a url");
    let (status, problem) = s.post_json("/api/v1/rules", &rule).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
    let errors = problem["errors"].as_array().expect("errors");
    let field = |name: &str| {
        errors
            .iter()
            .find(|e| e["field"] == name)
            .unwrap_or_else(|| panic!("{name} in {problem}"))
    };
    assert_eq!(field("condition")["line"], 2, "{problem}");
    assert!(field("condition")["column"].as_u64().is_some());
    assert!(field("trigger.cron")["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        field("actions[1]")["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a url"))
    );
    // Nothing saved.
    assert_eq!(s.get_json("/api/v1/rules/frost-darcy").await.0, 404);

    // A field of the wrong shape is named too; validate checks without saving.
    let (status, problem) = s
        .post_json(
            "/api/v1/rules/validate",
            &json!({"id": "x", "name": "X", "applies_to": {}, "trigger": {"type": "sometimes"}, "actions": []}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["errors"][0]["field"].as_str().is_some(), "{problem}");
    let (status, body) = s
        .post_json("/api/v1/rules/validate", &frost_rule("http://127.0.0.1:9/hook"))
        .await;
    assert_eq!((status, body), (200, json!({"valid": true})));
    // E-mail needs a mail server.
    let mut mailing = frost_rule("http://127.0.0.1:9/hook");
    mailing["actions"][1] =
        json!({"action": "notify", "channel": "email", "to": "astreinte@dijon.example", "template": "Gel"});
    let (status, problem) = s.post_json("/api/v1/rules/validate", &mailing).await;
    assert!(
        status == 400
            && problem["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("mail.smtp_url")),
        "{problem}"
    );

    // Operators read rules; changing them is for managers.
    let operator = s.client_as(Role::Operator, "*", "*").await;
    let res = operator.get(s.url("/api/v1/rules")).send().await.expect("get");
    assert_eq!(res.status(), 200);
    let res = operator
        .post(s.url("/api/v1/rules"))
        .json(&frost_rule("http://127.0.0.1:9/h"))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_shows_what_a_rule_would_have_raised_over_recorded_history() {
    let s = TestServer::http_only().await;
    // A night at the station: cooling to -1 °C, then warming (every 10 minutes).
    let temperatures = [3.0, 1.0, 0.4, 0.2, -0.5, -1.0, -0.5, 0.8, 1.2, 1.6, 2.0];
    let instances: Vec<Value> = temperatures
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"type": "Property", "value": t, "observedAt": format!("2026-11-30T02:{:02}:00Z", i * 5)}))
        .collect();
    let mut night = station(2.0);
    night["temperature"] = Value::Array(instances);
    let (status, body) = s.post_json("/ngsi-ld/v1/temporal/entities", &night).await;
    assert!(status == 201 || status == 204, "{status} {body}");
    let rule = json!({
        "id": "frost-on-roads", "name": "Verglas", "applies_to": {"types": ["WeatherObserved"]},
        "trigger": {"type": "threshold", "value": "temperature", "below": 0.5, "hysteresis": 1.0, "min_duration": "10m"},
        "actions": [{"action": "raise-alarm", "alarm_type": "frost", "severity": "major"}],
    });
    let (status, run) = s
        .post_json(
            "/api/v1/rules/dry-run",
            &json!({"rule": rule, "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T06:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["equipment"].as_u64(), run["states"].as_u64()),
        (Some(1), Some(11)),
        "{run}"
    );
    let firings: Vec<(&str, bool)> = run["firings"]
        .as_array()
        .expect("firings")
        .iter()
        .map(|f| (f["at"].as_str().unwrap_or(""), f["cleared"].as_bool().unwrap_or(false)))
        .collect();
    // Below 0.5 from 02:10, held 10 minutes: 02:20. Past 1.5 at 02:45.
    assert_eq!(
        firings,
        [("2026-11-30T02:20:00Z", false), ("2026-11-30T02:45:00Z", true)],
        "{run}"
    );
    assert_eq!(
        (run["fired"].as_u64(), run["truncated"].as_bool()),
        (Some(1), Some(false))
    );
    // Nothing was raised for real.
    let (_, alarms) = s.get_json("/api/v1/alarms").await;
    assert!(frost_alarm(&alarms).is_none(), "{alarms}");

    // Bounds and mistakes.
    let (status, _) = s
        .post_json(
            "/api/v1/rules/dry-run",
            &json!({"rule": rule, "from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400, "a year is more than a dry run replays");
    let (status, _) = s
        .post_json(
            "/api/v1/rules/dry-run",
            &json!({"ruleId": "nope", "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T06:00:00Z"}),
        )
        .await;
    assert_eq!(status, 404);
    s.running.shutdown().await;
}
