//! Harness for tests of the real `vigie` binary: Debian's mosquitto on a free
//! port, `vigie serve` as a child process, and an MQTT publisher that records
//! which messages the broker acknowledged (PUBACK).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A free loopback port (bound then released: a tiny race, fine for tests).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Debian's mosquitto on a free loopback port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 200000\nmax_inflight_messages 0\nlog_type error\n"
            ),
        )
        .expect("write conf");
        let binary = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|b| !b.starts_with('/') || Path::new(b).exists())
            .expect("a mosquitto binary");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto); ./scripts/test does it");
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

/// Writes a `vigie serve` configuration file (HTTP on port 0, the store in `data`).
pub fn write_config(data: &Path, mqtt: &str) -> PathBuf {
    let path = data.join("vigie.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n\
         [store]\nurl = \"sqlite://{}\"\ndurability = \"full\"\n\n\
         [mqtt]\n{mqtt}\n",
        db_path(data).display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

pub fn db_path(data: &Path) -> PathBuf {
    data.join("vigie.db")
}

/// A service token for the store of `config`, issued by `vigie admin issue-token`.
pub fn admin_token(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args([
            "admin",
            "issue-token",
            "test harness",
            "--role",
            "administrator",
            "--config",
        ])
        .arg(config)
        .env("VIGIE_LOG", "warn")
        .output()
        .expect("run vigie admin");
    assert!(
        out.status.success(),
        "vigie admin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("vgs_"), "not a token: {token}");
    token
}

/// `vigie serve --config FILE` as a child process; its standard error (the
/// log) is collected, its HTTP address read from standard output.
pub struct Vigie {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

impl Vigie {
    /// Starts the binary and waits until `/health` answers 200 (at most 20 s).
    pub async fn start(config: &Path) -> Self {
        let token = admin_token(config);
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigie"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env("VIGIE_LOG", "info,rmqtt=warn,sqlx=warn,tower_http=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vigie");
        let log = Arc::new(Mutex::new(String::new()));
        {
            let log = Arc::clone(&log);
            let stderr = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let stdout = child.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("Vigie is serving on ") {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            });
        }
        let base = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
            .await
            .expect("join");
        let base = match base {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("vigie did not print its address: {}", log.lock().unwrap());
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token header"),
        );
        let v = Self {
            child,
            base,
            log,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = v.http.get(v.url("/health")).send().await
                && r.status().as_u16() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "/health never answered 200: {}", v.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        v
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.http.get(self.url(path)).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self.http.post(self.url(path)).json(body).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// One counter or gauge from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no metric {name} in {text}")) as u64
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then waits for the exit (at most `limit`; SIGKILL and panic after).
    /// Returns the exit status, the time it took and the whole log.
    pub async fn terminate(mut self, limit: Duration) -> (ExitStatus, Duration, String) {
        let started = Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status, started.elapsed(), self.log());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("vigie did not exit within {limit:?} of SIGTERM: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Vigie {
    fn drop(&mut self) {
        // A failed test must not leave a server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` street lights under apikey `crash`: device `SL-{i}` measures `p`
/// (powerConsumption) into `urn:ngsi-ld:Streetlight:crash:{i}`.
pub fn provisioning(n: usize) -> Value {
    let devices: Vec<Value> = (0..n)
        .map(|i| {
            json!({"device_id": format!("SL-{i:04}"), "transport": "mqtt", "apikey": "crash",
                   "entity_name": entity_of(i), "entity_type": "Streetlight",
                   "scope": {"commune": "dijon", "business_line": "lighting"},
                   "attributes": [{"object_id": "p", "name": "powerConsumption", "type": "Number"}]})
        })
        .collect();
    json!({ "devices": devices })
}

pub fn entity_of(device: usize) -> String {
    format!("urn:ngsi-ld:Streetlight:crash:{device:04}")
}

/// Message `i` of a run over `devices` devices: its device, observation time
/// (milliseconds since the epoch, distinct for every message) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Message {
    pub device: usize,
    pub observed_ms: i64,
    pub value: f64,
}

/// 2026-01-01T00:00:00Z.
const BASE_MS: i64 = 1_767_225_600_000;

pub fn message(i: usize, devices: usize) -> Message {
    Message {
        device: i % devices,
        observed_ms: BASE_MS + i as i64,
        value: i as f64 + 0.25,
    }
}

impl Message {
    pub fn topic(&self) -> String {
        format!("/crash/SL-{:04}/attrs", self.device)
    }

    pub fn payload(&self) -> Vec<u8> {
        let t = jiff::Timestamp::from_millisecond(self.observed_ms).expect("timestamp");
        serde_json::to_vec(&json!({"p": self.value, "TimeInstant": format!("{t:.3}")})).expect("json")
    }
}

/// What the broker answered for each message, by index in publishing order.
#[derive(Default)]
pub struct Acks {
    /// Index → PUBACK reason, for every message the broker answered.
    pub outcome: HashMap<usize, PubAckReason>,
    /// Messages handed to the socket (Outgoing::Publish events seen).
    pub sent: usize,
    /// Why the publisher's connection ended, if it did.
    pub error: Option<String>,
}

impl Acks {
    pub fn acknowledged(&self) -> impl Iterator<Item = usize> + '_ {
        self.outcome
            .iter()
            .filter(|(_, r)| **r == PubAckReason::Success)
            .map(|(i, _)| *i)
    }
}

/// An MQTT v5 publisher whose event loop records PUBACKs: the n-th
/// `Outgoing::Publish(pkid)` is the n-th message published (requests are sent
/// in order), and its PUBACK carries the same packet id.
pub struct Publisher {
    pub client: AsyncClient,
    pub acks: Arc<Mutex<Acks>>,
    published: usize,
}

impl Publisher {
    pub async fn connect(port: u16, id: &str) -> Self {
        Self::connect_as(port, id, None).await
    }

    /// Like [`connect`](Self::connect), logging in with (username, password).
    pub async fn connect_as(port: u16, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = credentials {
            o.set_credentials(user, password);
        }
        let (client, eventloop) = AsyncClient::new(o, 1000);
        let acks = Arc::new(Mutex::new(Acks::default()));
        tokio::spawn(track(eventloop, Arc::clone(&acks)));
        Self {
            client,
            acks,
            published: 0,
        }
    }

    /// Publishes message `i` at QoS 1. Messages must be published in index
    /// order, starting at 0, with no gap. False once the connection is gone.
    pub async fn publish(&mut self, i: usize, m: &Message) -> bool {
        assert_eq!(i, self.published, "messages are published in index order");
        let queued = self
            .client
            .publish(m.topic(), QoS::AtLeastOnce, false, m.payload())
            .await
            .is_ok();
        if queued {
            self.published += 1;
        }
        queued
    }

    pub fn published(&self) -> usize {
        self.published
    }

    /// Waits until message `i` has its PUBACK (at most `limit`).
    pub async fn outcome(&self, i: usize, limit: Duration) -> Option<PubAckReason> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.acks.lock().unwrap().outcome.get(&i) {
                return Some(*r);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every published message has its PUBACK (at most `limit`).
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            {
                let a = self.acks.lock().unwrap();
                if a.outcome.len() == self.published || a.error.is_some() {
                    return a.outcome.len() == self.published;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Publishes until the broker routes message to a subscriber (PUBACK
    /// Success rather than NoMatchingSubscribers), i.e. until Vigie has
    /// subscribed. Returns the next free index.
    pub async fn until_routed(&mut self, devices: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let i = self.published;
            assert!(
                self.publish(i, &message(i, devices)).await,
                "the publisher lost its broker"
            );
            if self.outcome(i, Duration::from_secs(5)).await == Some(PubAckReason::Success) {
                return i + 1;
            }
            assert!(Instant::now() < deadline, "the broker never routed a message to Vigie");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn track(mut eventloop: EventLoop, acks: Arc<Mutex<Acks>>) {
    let mut in_flight: HashMap<u16, usize> = HashMap::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut a = acks.lock().unwrap();
                let i = a.sent;
                a.sent += 1;
                // A packet id is reused only once acknowledged; a second send
                // of an unacknowledged one would be a retransmission after a
                // reconnect, which would break the index mapping.
                if let Some(old) = in_flight.insert(pkid, i) {
                    a.error = Some(format!(
                        "packet id {pkid} sent again for {i} while {old} awaited its PUBACK"
                    ));
                    return;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(i) = in_flight.remove(&ack.pkid) {
                    acks.lock().unwrap().outcome.insert(i, ack.reason);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                acks.lock().unwrap().error = Some(format!("the broker disconnected the publisher: {d:?}"));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                // No reconnection: the mapping from packet ids to messages would not survive it.
                acks.lock().unwrap().error = Some(e.to_string());
                return;
            }
        }
    }
}
