//! Access control through the real server: every role against every class
//! of endpoint, nothing leaking across scopes, sessions with anti-CSRF
//! tokens, lockout, and API keys (rate limits, revocation).

mod common;

use common::{TestServer, client_with_token, config_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigie_core::{Action, Role};

fn entity(kind: &str, commune: &str, line: &str, n: u32) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:{kind}:{commune}:{n:06}"),
        "type": kind,
        "scope": format!("/{commune}/{line}"),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04 + f64::from(n) * 1e-4, 47.32]}},
        "status": {"type": "Property", "value": "ok"}
    })
}

fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or("")
        .rsplit([':', '/'])
        .next()
        .unwrap_or("")
}

/// A server with cheap password hashing (the benchmark measures the real cost)
/// and a small city: lights in Dijon and Chenôve, a traffic light and a camera in Dijon.
async fn server() -> TestServer {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = config_for(data.path(), None);
    config.security.argon2_memory_kib = 1024;
    config.security.argon2_iterations = 1;
    config.security.login_max_failures = 4;
    let s = TestServer::start_with(config, data).await;
    let mut city = vec![];
    for n in 0..5 {
        city.push(entity("Streetlight", "dijon", "lighting", n));
        city.push(entity("Streetlight", "chenove", "lighting", n));
    }
    city.push(entity("TrafficLight", "dijon", "traffic", 0));
    // Cameras are personal data: the administrator provisions them but cannot read them.
    city.push(entity("Camera", "dijon", "cctv", 0));
    let (status, body) = s.post_json("/ngsi-ld/v1/entityOperations/create", &json!(city)).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = s.get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:dijon:000000").await;
    assert_eq!(status, 404);
    let (status, body) = s
        .post_json(
            "/iot/devices",
            &json!({"devices": [
                {"device_id": "lamp-dijon-0", "transport": "mqtt", "apikey": "k", "entity_name": "urn:ngsi-ld:Streetlight:dijon:000000", "entity_type": "Streetlight", "scope": {"commune": "dijon", "business_line": "lighting"}},
                {"device_id": "lamp-chenove-0", "transport": "mqtt", "apikey": "k", "entity_name": "urn:ngsi-ld:Streetlight:chenove:000000", "entity_type": "Streetlight", "scope": {"commune": "chenove", "business_line": "lighting"}}
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    s
}

/// One request per endpoint class: (action, method, path, body).
fn endpoint_classes() -> Vec<(Action, &'static str, &'static str, Value)> {
    let light = "urn:ngsi-ld:Streetlight:dijon:000001";
    vec![
        (
            Action::ReadEntities,
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001",
            Value::Null,
        ),
        (
            Action::ReadEntities,
            "GET",
            "/ngsi-ld/v1/entities?type=Streetlight&count=true",
            Value::Null,
        ),
        (
            Action::WriteEntities,
            "PATCH",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs",
            json!({"status": {"type": "Property", "value": "checked"}}),
        ),
        (
            Action::WriteEntities,
            "POST",
            "/ngsi-ld/v1/entityOperations/upsert?options=update",
            json!([{"id": light, "type": "Streetlight", "scope": "/dijon/lighting", "status": {"type": "Property", "value": "ok"}}]),
        ),
        (
            Action::ReadPersonalData,
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:dijon:000000",
            Value::Null,
        ),
        (Action::ReadDevices, "GET", "/iot/devices", Value::Null),
        (
            Action::ManageDevices,
            "POST",
            "/iot/devices",
            json!({"devices": [{"device_id": "lamp-dijon-1", "transport": "mqtt", "apikey": "k", "entity_name": light, "entity_type": "Streetlight", "scope": {"commune": "dijon", "business_line": "lighting"}}]}),
        ),
        (Action::ReadOperations, "GET", "/api/v1/dead-letters", Value::Null),
        (Action::ReadOperations, "GET", "/metrics", Value::Null),
        (Action::ReadAudit, "GET", "/api/v1/audit?limit=5", Value::Null),
        (Action::ReadAccounts, "GET", "/api/v1/users", Value::Null),
        (Action::ReadAccounts, "GET", "/api/v1/api-keys", Value::Null),
        (
            Action::ManageAccounts,
            "POST",
            "/api/v1/api-keys",
            json!({"name": "matrix", "role": "auditor", "scope": {"communes": "*", "business_lines": "*"}}),
        ),
    ]
}

async fn send(client: &reqwest::Client, s: &TestServer, method: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let url = s.url(path);
    let req = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PATCH" => client.patch(url),
        "DELETE" => client.delete(url),
        other => panic!("method {other}"),
    };
    let req = if body.is_null() { req } else { req.json(body) };
    let res = req.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn every_role_against_every_endpoint_class() {
    let s = server().await;
    let anonymous = reqwest::Client::new();
    for (action, method, path, body) in endpoint_classes() {
        let (status, problem) = send(&anonymous, &s, method, path, &body).await;
        assert_eq!(status, 401, "anonymous {method} {path}: {problem}");
        assert_eq!(problem_type(&problem), "Unauthorized", "{action}");
    }
    for role in Role::ALL {
        let client = s.client_as(role, "*", "*").await;
        for (action, method, path, body) in endpoint_classes() {
            let (status, problem) = send(&client, &s, method, path, &body).await;
            let allowed = role.allows(action);
            if action == Action::ReadPersonalData {
                // Personal data out of a role's reach does not exist for it.
                let expected = if allowed { 200 } else { 404 };
                assert_eq!(status, expected, "{role} {method} {path}: {problem}");
            } else if allowed {
                assert!(
                    status.is_success(),
                    "{role} may {action}: {method} {path} -> {status} {problem}"
                );
            } else {
                assert_eq!(status, 403, "{role} may not {action}: {method} {path} -> {problem}");
                assert_eq!(problem_type(&problem), "Forbidden");
                assert!(
                    problem["detail"].as_str().unwrap_or("").contains(role.as_str()),
                    "{problem}"
                );
            }
        }
    }
    s.running.shutdown().await;
}

#[tokio::test]
async fn global_actions_need_a_grant_covering_everything() {
    let s = server().await;
    let local_admin = s.client_as(Role::Administrator, "dijon", "*").await;
    for path in ["/api/v1/users", "/api/v1/dead-letters", "/metrics"] {
        let (status, problem) = send(&local_admin, &s, "GET", path, &Value::Null).await;
        assert_eq!(status, 403, "{path}: {problem}");
    }
    s.running.shutdown().await;
}

#[tokio::test]
async fn nothing_leaks_across_scopes() {
    let s = server().await;
    let op = s.client_as(Role::Operator, "dijon", "lighting").await;
    let get = |path: &'static str| send(&op, &s, "GET", path, &Value::Null);

    // Queries and counts see Dijon's lights only, whatever the filter.
    let res = op
        .get(s.url("/ngsi-ld/v1/entities?type=Streetlight,TrafficLight,Camera&count=true&limit=100"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["NGSILD-Results-Count"], "5");
    let ids: Vec<String> = res
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.iter()
            .all(|id| id.contains(":dijon:") && id.contains("Streetlight")),
        "{ids:?}"
    );
    for query in [
        "idPattern=.*chenove.*&count=true",
        "q=status==%22ok%22&count=true&limit=100",
        "attrs=status&count=true&limit=100",
        "type=Streetlight&scopeQ=/chenove/%23&count=true",
        "georel=near;maxDistance==100000&geometry=Point&coordinates=[5.04,47.32]&count=true&limit=100",
    ] {
        let res = op
            .get(s.url(&format!("/ngsi-ld/v1/entities?{query}")))
            .send()
            .await
            .unwrap();
        let count: usize = res.headers()["NGSILD-Results-Count"].to_str().unwrap().parse().unwrap();
        let body: Vec<Value> = res.json().await.unwrap();
        assert!(
            body.iter().all(|e| e["scope"] == "/dijon/lighting"),
            "{query}: {body:?}"
        );
        assert!(count <= 5, "{query}: count {count} leaks");
    }
    let (_, page) = get("/ngsi-ld/v1/entities?type=Streetlight&offset=5&limit=10").await;
    assert_eq!(page, json!([]), "paging past the visible entities finds nothing");

    // An out-of-scope entity reads exactly like a missing one.
    let (status, hidden) = get("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:chenove:000001").await;
    let (_, missing) = get("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:chenove:999999").await;
    assert_eq!(status, 404);
    assert_eq!(
        hidden["detail"].as_str().unwrap().replace("000001", "X"),
        missing["detail"].as_str().unwrap().replace("999999", "X")
    );

    // Devices: only those in scope are listed, counted or shown.
    let (_, devices) = get("/iot/devices").await;
    assert_eq!(devices["count"], 1, "{devices}");
    assert_eq!(get("/iot/devices/lamp-chenove-0").await.0, 404);

    // Writes out of scope: 403, and nothing changes.
    let patch = json!({"status": {"type": "Property", "value": "tampered"}});
    let (status, problem) = send(
        &op,
        &s,
        "PATCH",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:chenove:000001/attrs",
        &patch,
    )
    .await;
    assert_eq!(
        (status.as_u16(), problem_type(&problem)),
        (403, "Forbidden"),
        "{problem}"
    );
    let (status, _) = send(
        &op,
        &s,
        "DELETE",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:chenove:000002",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(
        &op,
        &s,
        "POST",
        "/ngsi-ld/v1/entities",
        &entity("Streetlight", "talant", "lighting", 9),
    )
    .await;
    assert_eq!(status, 403);
    // A batch: the in-scope entity is written, the others are reported.
    let batch = json!([
        {"id": "urn:ngsi-ld:Streetlight:dijon:000001", "type": "Streetlight", "scope": "/dijon/lighting", "status": {"type": "Property", "value": "batch"}},
        {"id": "urn:ngsi-ld:Streetlight:chenove:000001", "type": "Streetlight", "scope": "/dijon/lighting", "status": {"type": "Property", "value": "moved"}},
        {"id": "urn:ngsi-ld:Streetlight:dijon:000002", "type": "Streetlight", "scope": "/chenove/lighting", "status": {"type": "Property", "value": "moved"}}
    ]);
    let (status, result) = send(
        &op,
        &s,
        "POST",
        "/ngsi-ld/v1/entityOperations/upsert?options=update",
        &batch,
    )
    .await;
    assert_eq!(status, 207, "{result}");
    assert_eq!(result["success"], json!(["urn:ngsi-ld:Streetlight:dijon:000001"]));
    assert_eq!(result["errors"].as_array().unwrap().len(), 2);
    let (_, chenove) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:chenove:000001")
        .await;
    assert_eq!(chenove["status"]["value"], "ok");
    assert_eq!(chenove["scope"], "/chenove/lighting");
    let (_, dijon2) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000002")
        .await;
    assert_eq!(
        dijon2["scope"], "/dijon/lighting",
        "an entity cannot be moved out of scope"
    );
    let (status, _) = send(
        &op,
        &s,
        "DELETE",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:chenove:000002",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 403);

    // Personal data: a camera is invisible to an all-scope operator, visible to the police.
    let everywhere = s.client_as(Role::Operator, "*", "*").await;
    let (_, cams) = send(
        &everywhere,
        &s,
        "GET",
        "/ngsi-ld/v1/entities?type=Camera&count=true",
        &Value::Null,
    )
    .await;
    assert_eq!(cams, json!([]));
    let police = s.client_as(Role::Supervisor, "*", "*").await;
    let (_, cams) = send(&police, &s, "GET", "/ngsi-ld/v1/entities?type=Camera", &Value::Null).await;
    assert_eq!(cams.as_array().map(Vec::len), Some(1));
    // Each read of personal data is in the audit trail, with who read what.
    let (_, reads) = s.get_json("/api/v1/audit?action=personal-data.read").await;
    let reads = reads.as_array().cloned().unwrap_or_default();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["role"], "supervisor");
    assert_eq!(
        reads[0]["after"]["entities"],
        json!(["urn:ngsi-ld:Camera:dijon:000000"])
    );
    s.running.shutdown().await;
}

/// Reads the `name=value` of a `Set-Cookie` for `name`.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

async fn create_account(s: &TestServer, name: &str, role: &str, password: &str) {
    let (status, body) = s
        .post_json(
            "/api/v1/users",
            &json!({"name": name, "role": role, "scope": {"communes": "dijon", "business_lines": "lighting"}, "password": password}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("password").is_none() && body.get("password_hash").is_none(),
        "{body}"
    );
}

#[tokio::test]
async fn sessions_need_their_csrf_token_and_end_at_logout() {
    let s = server().await;
    let password = "lanterne-magique-2026";
    create_account(&s, "camille", "field-technician", password).await;
    let plain = reqwest::Client::new();

    let res = plain
        .post(s.url("/auth/login"))
        .json(&json!({"username": "camille", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let raw = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Strict"), "{raw}");
    assert!(!raw.contains("Secure"), "no Secure flag on plain HTTP");
    let cookie = set_cookie(&res, "vigie_session").expect("session cookie");
    let session: Value = res.json().await.unwrap();
    let csrf = session["csrfToken"].as_str().unwrap().to_owned();
    assert_eq!(session["account"]["role"], "field-technician");

    let light = s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000003");
    let res = plain.get(&light).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let patch = json!({"status": {"type": "Property", "value": "repaired"}});
    let attrs = format!("{light}/attrs");
    let res = plain
        .patch(&attrs)
        .header("cookie", &cookie)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a change without the anti-CSRF token is refused");
    let res = plain
        .patch(&attrs)
        .header("cookie", &cookie)
        .header("x-csrf-token", "forged")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = plain
        .patch(&attrs)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    let res = plain
        .post(s.url("/auth/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = plain.get(&light).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), 401, "the session ended");
    s.running.shutdown().await;
}

#[tokio::test]
async fn the_login_form_is_protected_against_csrf_and_has_no_inline_script() {
    let s = server().await;
    let password = "lanterne-magique-2026";
    create_account(&s, "dominique", "operator", password).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = plain.get(s.url("/auth/login")).send().await.unwrap();
    let csrf_cookie = set_cookie(&res, "vigie_login_csrf").expect("form cookie");
    let html = res.text().await.unwrap();
    assert!(html.contains("Mot de passe") && html.contains("password"));
    assert!(
        !html.contains("<script") && !html.contains("style="),
        "CSP forbids inline code"
    );
    let token = csrf_cookie.split_once('=').unwrap().1.to_owned();
    assert!(html.contains(&token));

    let form = serde_urlencoded::to_string([
        ("username", "dominique"),
        ("password", password),
        ("csrf_token", token.as_str()),
    ])
    .unwrap();
    let post_form = || {
        plain
            .post(s.url("/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
    };
    // Without the cookie (a cross-site form), the login is refused.
    let res = post_form().send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = post_form().header("cookie", &csrf_cookie).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(set_cookie(&res, "vigie_session").is_some());
    s.running.shutdown().await;
}

#[tokio::test]
async fn failed_logins_slow_down_then_lock_whatever_the_password() {
    let s = server().await;
    let password = "lanterne-magique-2026";
    create_account(&s, "eve", "operator", password).await;
    let plain = reqwest::Client::new();
    let login = |p: &'static str| {
        plain
            .post(s.url("/auth/login"))
            .json(&json!({"username": "eve", "password": p}))
            .send()
    };
    let mut statuses = vec![];
    let started = std::time::Instant::now();
    for _ in 0..5 {
        statuses.push(login("wrong-password-guess").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429], "locked after 4 failures");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(700),
        "failures 3 and 4 were delayed"
    );
    assert_eq!(
        login(password).await.unwrap().status(),
        429,
        "the right password does not unlock"
    );
    // An unknown name answers the same way as a known one.
    let res = plain
        .post(s.url("/auth/login"))
        .json(&json!({"username": "nobody", "password": "wrong-password-guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // An administrator unlocks.
    let res = s
        .http
        .patch(s.url("/api/v1/users/eve"))
        .json(&json!({"unlock": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(login(password).await.unwrap().status(), 200);
    // Every attempt is in the audit trail, the lock and the unlock too.
    let (_, failed) = s.get_json("/api/v1/audit?action=login.failed&target=eve").await;
    assert_eq!(failed.as_array().map(Vec::len), Some(6), "{failed}");
    let (_, ok) = s.get_json("/api/v1/audit?action=login.succeeded").await;
    assert_eq!(ok.as_array().map(Vec::len), Some(1), "{ok}");
    let (_, unlock) = s.get_json("/api/v1/audit?action=user.update&target=eve").await;
    assert_eq!(unlock[0]["before"]["failedLogins"], 4, "{unlock}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn weak_passwords_are_refused_and_generated_ones_shown_once() {
    let s = server().await;
    for (password, reason) in [
        ("short", "at least"),
        ("password1234", "common"),
        ("frank-is-my-name", "user name"),
    ] {
        let (status, problem) = s
            .post_json(
                "/api/v1/users",
                &json!({"name": "frank", "role": "operator", "scope": {"communes": "*", "business_lines": "*"}, "password": password}),
            )
            .await;
        assert_eq!(status, 400, "{password}");
        assert!(problem["detail"].as_str().unwrap().contains(reason), "{problem}");
    }
    let (status, created) = s
        .post_json(
            "/api/v1/users",
            &json!({"name": "frank", "role": "operator", "scope": {"communes": "*", "business_lines": "*"}}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(created["password"].as_str().unwrap().len() >= 32);
    let (_, listed) = s.get_json("/api/v1/users").await;
    assert!(!listed.to_string().contains("argon2"), "hashes never leave the server");
    s.running.shutdown().await;
}

#[tokio::test]
async fn api_keys_are_scoped_rate_limited_revocable_and_show_their_last_use() {
    let s = server().await;
    let (status, key) = s
        .post_json(
            "/api/v1/api-keys",
            &json!({"name": "startup mobility app", "role": "auditor", "scope": {"communes": "chenove", "business_lines": "*"}, "requestsPerMinute": 3}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let token = key["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("vgk_"));
    let client = client_with_token(&token);
    let url = s.url("/ngsi-ld/v1/entities?type=Streetlight&count=true");
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.headers()["NGSILD-Results-Count"], "5", "chenove's lights only");
    // X-API-Key works too.
    let res = reqwest::Client::new()
        .get(&url)
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 429, "the fourth request in a minute is refused");

    let (_, keys) = s.get_json("/api/v1/api-keys").await;
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key["id"])
        .unwrap()
        .clone();
    assert!(listed["lastUsedAt"].is_string(), "{listed}");
    assert!(listed.get("token").is_none() && !keys.to_string().contains(&token[20..]));

    let res = s
        .http
        .delete(s.url(&format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = reqwest::Client::new()
        .get(&url)
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "revoked at once");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let res = client_with_token(&forged).get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    s.running.shutdown().await;
}
