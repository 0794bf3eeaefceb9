//! Test helpers: a broker on port 0 and a rumqttc v5 client whose event loop
//! runs in its own task and reports incoming packets on a channel.

#![allow(dead_code)] // each test binary uses a different subset

pub mod scenarios;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vigie_broker::{BrokerConfig, EmbeddedBroker};

/// Generous: the machine running the tests is small and shared.
pub const TIMEOUT: Duration = Duration::from_secs(15);

pub async fn start_broker() -> EmbeddedBroker {
    start_broker_with(BrokerConfig::default()).await
}

pub async fn start_broker_with(config: BrokerConfig) -> EmbeddedBroker {
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        ..config
    };
    EmbeddedBroker::start(config).await.expect("broker starts")
}

/// What the event-loop task reports.
#[derive(Debug)]
pub enum Report {
    Packet(Box<Packet>),
    /// The connection failed or was closed; the task has stopped.
    Closed(String),
}

pub struct TestClient {
    pub client: AsyncClient,
    pub connack: ConnAck,
    reports: mpsc::UnboundedReceiver<Report>,
    event_loop: JoinHandle<()>,
}

pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// Connects and waits for the CONNACK.
pub async fn connect(options: MqttOptions) -> TestClient {
    let (client, mut event_loop) = AsyncClient::new(options, 1_000);
    let (tx, mut reports) = mpsc::unbounded_channel();
    let event_loop = tokio::spawn(async move {
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if tx.send(Report::Packet(Box::new(packet))).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    // rmqtt leaves the socket open after a client's DISCONNECT
                    // and rumqttc waits for the server to close it: the client
                    // must hang up itself, which dropping the event loop does.
                    let _ = tx.send(Report::Closed("client sent DISCONNECT".into()));
                    return;
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    // Stop here: rumqttc would otherwise reconnect on the next poll.
                    let _ = tx.send(Report::Closed(e.to_string()));
                    return;
                }
            }
        }
    });
    let connack = loop {
        match tokio::time::timeout(TIMEOUT, reports.recv()).await {
            Ok(Some(Report::Packet(p))) => {
                if let Packet::ConnAck(ack) = *p {
                    break ack;
                }
            }
            other => panic!("no CONNACK: {other:?}"),
        }
    };
    TestClient {
        client,
        connack,
        reports,
        event_loop,
    }
}

impl TestClient {
    /// Subscribes and waits for a successful SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe request queued");
        loop {
            match self.next_packet().await {
                Some(Packet::SubAck(ack)) => {
                    assert!(
                        ack.return_codes
                            .iter()
                            .all(|c| matches!(c, rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_))),
                        "subscription to {filter} refused: {ack:?}"
                    );
                    return;
                }
                Some(_) => continue,
                None => panic!("no SUBACK for {filter}"),
            }
        }
    }

    /// The next packet, or `None` on timeout or closed connection.
    pub async fn next_packet(&mut self) -> Option<Packet> {
        self.next_packet_within(TIMEOUT).await
    }

    pub async fn next_packet_within(&mut self, timeout: Duration) -> Option<Packet> {
        match tokio::time::timeout(timeout, self.reports.recv()).await {
            Ok(Some(Report::Packet(p))) => Some(*p),
            _ => None,
        }
    }

    /// The next PUBLISH, skipping other packets; `None` after `timeout`.
    pub async fn next_publish_within(&mut self, timeout: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_packet_within(left).await? {
                Packet::Publish(p) => return Some(p),
                _ => continue,
            }
        }
    }

    pub async fn next_publish(&mut self) -> Option<Publish> {
        self.next_publish_within(TIMEOUT).await
    }

    /// Waits until the connection is closed (by the broker), returning why.
    pub async fn closed(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(TIMEOUT, self.reports.recv()).await {
                Ok(Some(Report::Closed(why))) => return Some(why),
                Ok(Some(Report::Packet(p))) if matches!(*p, Packet::Disconnect(_)) => {
                    return Some(format!("{p:?}"));
                }
                Ok(Some(Report::Packet(_))) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Drops the TCP connection without DISCONNECT, like a crashed client.
    pub async fn crash(self) {
        self.event_loop.abort();
        let _ = self.event_loop.await;
    }

    /// Sends DISCONNECT and waits for the event loop to stop.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = self.closed().await;
        self.event_loop.abort();
    }
}

/// The payload as text (tests publish UTF-8).
pub fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}
