//! Test harness: real servers on port 0, a real SQLite file, real brokers.
#![allow(dead_code)]

pub mod tls;

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::Value;
use tempfile::TempDir;
use vigie_core::{Role, ScopeGrant};
use vigie_server::{Config, Running};

/// Debian's mosquitto on a free loopback port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = StdListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 200000\nmax_inflight_messages 0\nlog_type error\n"
            ),
        )
        .expect("write conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto); the test script does it");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TestServer {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
    pub data: TempDir,
}

pub fn config_for(data: &Path, broker_url: Option<String>) -> Config {
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", data.join("vigie.db").display());
    config.store.durability = "normal".into();
    config.mqtt.embedded_listen = "127.0.0.1:0".parse().expect("addr");
    config.mqtt.client_id = format!(
        "vigie-test-{}",
        std::process::id() as u64 * 1000 + data.as_os_str().len() as u64
    );
    match broker_url {
        Some(url) => config.mqtt.url = url,
        None => config.mqtt.embedded = false,
    }
    config.http.max_body_bytes = 200 * 1024;
    config
}

impl TestServer {
    /// A server with no broker at all (HTTP only).
    pub async fn http_only() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let config = config_for(data.path(), None);
        Self::start_with(config, data).await
    }

    pub async fn with_broker(url: String) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let config = config_for(data.path(), Some(url));
        Self::start_with(config, data).await
    }

    pub async fn with_embedded_broker() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = config_for(data.path(), None);
        config.mqtt.embedded = true;
        Self::start_with(config, data).await
    }

    pub async fn start_with(config: Config, data: TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let running = vigie_server::start(config, listener, axum::Router::new())
            .await
            .expect("start");
        let base = format!("http://{}", running.http_addr);
        let token = running
            .issue_service_token("test harness", Role::Administrator, ScopeGrant::everywhere())
            .await
            .expect("token");
        Self {
            running,
            base,
            http: client_with_token(&token),
            data,
        }
    }

    /// A client acting with a new service token of this role and grant.
    pub async fn client_as(&self, role: Role, communes: &str, business_lines: &str) -> reqwest::Client {
        let grant = ScopeGrant::parse(communes, business_lines).expect("grant");
        let token = self
            .running
            .issue_service_token(&format!("{role} {communes} {business_lines}"), role, grant)
            .await
            .expect("token");
        client_with_token(&token)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.http.get(self.url(path)).send().await.expect("request");
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self.http.post(self.url(path)).json(body).send().await.expect("request");
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Polls until `check` holds on the entity (or panics after 10 s).
    pub async fn wait_for_entity(&self, id: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.get_json(&format!("/ngsi-ld/v1/entities/{id}")).await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "entity {id} never reached the expected state: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A reqwest client sending `Authorization: Bearer <token>` on every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// An MQTT v5 publisher whose event loop runs in the background.
pub async fn publisher(port: u16, id: &str) -> AsyncClient {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, eventloop) = AsyncClient::new(o, 1000);
    tokio::spawn(drive(eventloop));
    client
}

async fn drive(mut eventloop: EventLoop) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(_)) | Ok(Event::Outgoing(_)) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn publish(client: &AsyncClient, topic: &str, payload: &Value) {
    client
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(payload).expect("json"),
        )
        .await
        .expect("publish");
}
