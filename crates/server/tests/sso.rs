//! Single sign-on against a real OpenID provider: npm's `oidc-provider`
//! (OpenID Certified), started by each test on a free port with its own
//! signing keys (`tests/oidc/provider.mjs`). The test plays the browser,
//! following redirects by hand and carrying cookies.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{TestServer, client_with_token, config_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigie_core::{Role, ScopeGrant};

const SECRET: &str = "client-secret-for-tests-only";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Installs the provider's npm packages (pinned by package-lock.json) once.
fn install_provider() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    let dir = provider_dir();
    if *done || dir.join("node_modules/oidc-provider/package.json").exists() {
        *done = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .expect("npm must be installed (Node.js 20 or later): it installs the test OpenID provider");
    assert!(status.success(), "npm ci failed in {}", dir.display());
    *done = true;
}

/// The OpenID provider, killed on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(redirect_uri: &str) -> Self {
        install_provider();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(provider_dir())
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_SECRET", SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed (Node.js 20 or later)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
            // Keep reading: a closed pipe would fail the provider's next write.
            lines.for_each(drop);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OpenID provider did not start within 30 s");
        let issuer = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("the OpenID provider did not announce its issuer: {line:?}"));
        Self { child, issuer }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn entity(kind: &str, commune: &str, line: &str, n: u32) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:{kind}:{commune}:{n:06}"),
        "type": kind,
        "scope": format!("/{commune}/{line}"),
        "status": {"type": "Property", "value": "ok"}
    })
}

/// Vigie with single sign-on through `client_id`, its provider, and a small
/// city: lights in Dijon and Chenôve, a traffic light in Dijon.
async fn setup(client_id: &str) -> (TestServer, Provider) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let redirect = format!("{base}/auth/sso/callback");
    let provider = {
        let redirect = redirect.clone();
        tokio::task::spawn_blocking(move || Provider::start(&redirect))
            .await
            .expect("provider")
    };
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = config_for(data.path(), None);
    config.security.argon2_memory_kib = 1024;
    config.security.argon2_iterations = 1;
    config.sso.enabled = true;
    config.sso.issuer = provider.issuer.clone();
    config.sso.client_id = client_id.into();
    config.sso.client_secret = SECRET.into();
    if client_id == "vigie-es256" {
        config.sso.token_endpoint_auth = "client_secret_post".into();
    }
    config.sso.redirect_url = redirect;
    config.sso.scopes = "openid profile vigie".into();
    config.sso.role_map = [("police-municipale".to_owned(), "supervisor".to_owned())].into();
    let running = vigie_server::start(config, listener, axum::Router::new())
        .await
        .expect("start");
    let token = running
        .issue_service_token("test harness", Role::Administrator, ScopeGrant::everywhere())
        .await
        .expect("token");
    let s = TestServer {
        running,
        base,
        http: client_with_token(&token),
        data,
    };
    let city = json!([
        entity("Streetlight", "dijon", "lighting", 0),
        entity("Streetlight", "dijon", "lighting", 1),
        entity("Streetlight", "chenove", "lighting", 0),
        entity("TrafficLight", "dijon", "traffic", 0),
    ]);
    let (status, body) = s.post_json("/ngsi-ld/v1/entityOperations/create", &city).await;
    assert_eq!(status, 201, "{body}");
    (s, provider)
}

/// A browser: no automatic redirects, a cookie jar by name (cookies do not
/// depend on the port, so Vigie's and the provider's share it, as in a browser).
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` received, raw, for attribute checks.
    set_cookies: Vec<String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
            set_cookies: vec![],
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, res: &reqwest::Response) {
        for raw in res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            self.set_cookies.push(raw.to_owned());
            let pair = raw.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = value.is_empty() || raw.to_ascii_lowercase().contains("max-age=0");
            if expired {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let res = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&res);
        res
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let res = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"))
            .send()
            .await
            .expect("POST");
        self.keep(&res);
        res
    }

    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .rev()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }
}

/// The absolute URL a redirect points to.
fn location(res: &reqwest::Response) -> String {
    let loc = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} without a Location", res.status()));
    res.url().join(loc).expect("location").to_string()
}

/// Starts a login at Vigie and goes through the provider's interaction with
/// `action` ("login" as `user`, or "abort"); returns the callback URL the
/// provider sends the browser back to, not yet followed.
async fn authorize(b: &mut Browser, s: &TestServer, provider: &Provider, user: &str, action: &str) -> String {
    let res = b.get(&s.url("/auth/sso/login")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let authorization = location(&res);
    assert!(authorization.starts_with(&provider.issuer), "{authorization}");
    let res = b.get(&authorization).await;
    let status = res.status();
    assert!(
        status.is_redirection(),
        "{status} {}",
        res.text().await.unwrap_or_default()
    );
    let interaction = location(&res);
    let res = b
        .post_form(&format!("{interaction}/{action}"), &[("login", user)])
        .await;
    let status = res.status();
    assert!(
        status.is_redirection(),
        "{status} {}",
        res.text().await.unwrap_or_default()
    );
    let mut url = location(&res);
    while !url.starts_with(&s.base) {
        let res = b.get(&url).await;
        let status = res.status();
        assert!(
            status.is_redirection(),
            "{url}: {status} {}",
            res.text().await.unwrap_or_default()
        );
        url = location(&res);
    }
    assert!(url.starts_with(&s.url("/auth/sso/callback")), "{url}");
    url
}

/// `GET /auth/session` with the browser's cookies.
async fn session(b: &mut Browser, s: &TestServer) -> (StatusCode, Value) {
    let res = b.get(&s.url("/auth/session")).await;
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn an_operator_logs_in_with_the_role_and_scope_of_the_claims() {
    let (s, provider) = setup("vigie").await;
    let mut b = Browser::new();

    let html = b.get(&s.url("/auth/login")).await.text().await.unwrap();
    assert!(
        html.contains("href=\"/auth/sso/login\"") && html.contains("authentification unique (SSO)"),
        "{html}"
    );
    let res = b.get(&s.url("/auth/sso/login")).await;
    let authorization = url::Url::parse(&location(&res)).unwrap();
    let query: BTreeMap<String, String> = authorization.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query.contains_key("nonce") && query.contains_key("code_challenge"));
    assert_eq!(b.cookies.get("vigie_sso"), Some(&query["state"]));
    let pre = b.set_cookie("vigie_sso").unwrap();
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Lax") && pre.contains("Path=/auth/sso"),
        "the pre-login cookie must come back on the provider's cross-site redirect: {pre}"
    );

    let callback = authorize(&mut b, &s, &provider, "operateur.dijon", "login").await;
    let res = b.get(&callback).await;
    assert_eq!(res.status(), StatusCode::OK);
    let raw = b.set_cookie("vigie_session").expect("a session cookie").to_owned();
    assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Strict"), "{raw}");
    assert!(!b.cookies.contains_key("vigie_sso"), "the pre-login cookie is cleared");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("http-equiv=\"refresh\"") && html.contains("url=/auth/login") && !html.contains("<script"),
        "{html}"
    );
    let html = b.get(&s.url("/auth/login")).await.text().await.unwrap();
    assert!(
        html.contains("Connecté en tant que <strong>operateur.dijon</strong>"),
        "the login page shows who is connected: {html}"
    );

    let (status, me) = session(&mut b, &s).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["subject"], "operateur.dijon");
    assert_eq!(me["credential"], "single-sign-on");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["scope"], json!({"communes": "dijon", "business_lines": "lighting"}));

    let res = b
        .get(&s.url("/ngsi-ld/v1/entities?type=Streetlight,TrafficLight"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        ids(&res.json().await.unwrap()),
        [
            "urn:ngsi-ld:Streetlight:dijon:000000",
            "urn:ngsi-ld:Streetlight:dijon:000001"
        ],
        "only Dijon's lighting is in the operator's scope"
    );

    let (status, account) = s.get_json("/api/v1/users/operateur.dijon").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["origin"], "single-sign-on");
    assert_eq!(account["displayName"], "Opératrice de Dijon");
    assert!(account.get("password_hash").is_none());

    // The callback cannot be replayed: its state was used.
    let mut replay = Browser::new();
    replay.cookies.insert("vigie_sso".into(), query["state"].clone());
    let res = replay.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(replay.set_cookie("vigie_session").is_none());
    drop(provider);
    s.running.shutdown().await;
}

#[tokio::test]
async fn roles_are_mapped_and_es256_tokens_verified_with_client_secret_post() {
    let (s, provider) = setup("vigie-es256").await;
    let mut b = Browser::new();
    let callback = authorize(&mut b, &s, &provider, "agent.pm", "login").await;
    assert_eq!(b.get(&callback).await.status(), StatusCode::OK);
    let (status, me) = session(&mut b, &s).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        me["role"], "supervisor",
        "police-municipale maps to supervisor through sso.role_map"
    );
    assert_eq!(me["scope"], json!({"communes": "chenove,dijon", "business_lines": "*"}));
    let res = b
        .get(&s.url("/ngsi-ld/v1/entities?type=Streetlight,TrafficLight"))
        .await;
    assert_eq!(ids(&res.json().await.unwrap()).len(), 4);
    drop(provider);
    s.running.shutdown().await;
}

#[tokio::test]
async fn users_whose_claims_give_no_role_or_scope_are_refused() {
    let (s, provider) = setup("vigie").await;
    for (user, claim) in [("sans.role", "vigie_role"), ("sans.perimetre", "vigie_communes")] {
        let mut b = Browser::new();
        let callback = authorize(&mut b, &s, &provider, user, "login").await;
        let res = b.get(&callback).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{user}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("pas accès à Vigie") && html.contains(claim),
            "{user}: the page names the missing claim: {html}"
        );
        assert!(b.set_cookie("vigie_session").is_none(), "{user} got no session");
        assert_eq!(session(&mut b, &s).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            s.get_json(&format!("/api/v1/users/{user}")).await.0,
            404,
            "no account for {user}"
        );
    }
    drop(provider);
    s.running.shutdown().await;
}

#[tokio::test]
async fn tampered_or_foreign_callbacks_are_refused() {
    let (s, provider) = setup("vigie").await;
    let mut b = Browser::new();
    let callback = authorize(&mut b, &s, &provider, "operateur.dijon", "login").await;

    let mut tampered = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = tampered.query_pairs().into_owned().collect();
    tampered.query_pairs_mut().clear().extend_pairs(
        pairs
            .iter()
            .map(|(k, v)| (k.as_str(), if k == "state" { "forged-state" } else { v.as_str() })),
    );
    let res = b.get(tampered.as_str()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "a tampered state is refused");
    assert!(b.set_cookie("vigie_session").is_none());

    // Another browser cannot finish this login (a login CSRF: the attacker's
    // callback sent to a victim).
    let mut victim = Browser::new();
    let res = victim.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(victim.set_cookie("vigie_session").is_none());

    // The tampered attempts did not consume the real login (the browser
    // lost its pre-login cookie with the refusal page: it comes back with it).
    let state = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    b.cookies.insert("vigie_sso".into(), state);
    assert_eq!(b.get(&callback).await.status(), StatusCode::OK);
    assert_eq!(session(&mut b, &s).await.1["role"], "operator");
    drop(provider);
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_local_account_is_not_taken_over() {
    let (s, provider) = setup("vigie").await;
    let (status, body) = s
        .post_json(
            "/api/v1/users",
            &json!({"name": "chantal", "role": "operator", "password": "lanterne-magique-2026",
                "scope": {"communes": "dijon", "business_lines": "lighting"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut b = Browser::new();
    // The provider says chantal is an administrator everywhere.
    let callback = authorize(&mut b, &s, &provider, "chantal", "login").await;
    let res = b.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("local account"));
    assert!(b.set_cookie("vigie_session").is_none());
    let (_, account) = s.get_json("/api/v1/users/chantal").await;
    assert_eq!(account["origin"], "local");
    assert_eq!(account["role"], "operator");
    drop(provider);
    s.running.shutdown().await;
}

#[tokio::test]
async fn the_provider_s_refusal_is_shown() {
    let (s, provider) = setup("vigie").await;
    let mut b = Browser::new();
    let callback = authorize(&mut b, &s, &provider, "", "abort").await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let res = b.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("a refusé la connexion (access_denied)") && html.contains("End-User aborted interaction"),
        "{html}"
    );
    assert!(b.set_cookie("vigie_session").is_none());
    drop(provider);
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_provider_is_a_clear_page_and_sso_off_is_404() {
    // A provider that stopped: Vigie starts, the login says so.
    let (s, provider) = setup("vigie").await;
    drop(provider);
    let mut b = Browser::new();
    let res = b.get(&s.url("/auth/sso/login")).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(res.text().await.unwrap().contains("injoignable"));
    s.running.shutdown().await;

    let s = TestServer::http_only().await;
    let res = reqwest::get(s.url("/auth/sso/login")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let html = reqwest::get(s.url("/auth/login")).await.unwrap().text().await.unwrap();
    assert!(!html.contains("/auth/sso/login"), "no SSO link when it is off");
    s.running.shutdown().await;
}
