//! The simulator's only I/O: playing its messages onto an MQTT v5 broker.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

use crate::faults::Fault;
use crate::telemetry::{Message, Qos, Simulator};

/// Wall-clock time between two advances of the simulated clock.
const TICK: Duration = Duration::from_millis(100);
/// Requests buffered between the publisher and the MQTT event loop: when the
/// broker is slow or away, publishing waits instead of growing memory.
const REQUEST_CHANNEL: usize = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Where Vigie sends the simulated devices their commands (IoT Agent JSON).
const COMMAND_TOPICS: &str = "/+/+/cmd";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("broker URL '{url}': {reason}")]
    InvalidBrokerUrl { url: String, reason: &'static str },
    #[error("speed must be a positive number, got {0}")]
    InvalidSpeed(f64),
    #[error("MQTT client stopped: {0}")]
    Client(#[from] rumqttc::v5::ClientError),
}

/// Where the broker is: `mqtt://host:port` (port 1883 when omitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
}

impl FromStr for BrokerAddress {
    type Err = SimError;

    fn from_str(url: &str) -> Result<Self, SimError> {
        let invalid = |reason| SimError::InvalidBrokerUrl {
            url: url.chars().take(200).collect(),
            reason,
        };
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| invalid("expected 'mqtt://host:port' (TLS 'mqtts://' is not supported by the simulator)"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?', '#']) {
            return Err(invalid("expected only host and port after 'mqtt://'"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // Bracketed IPv6 literal, with or without a port.
            _ if rest.starts_with('[') => match rest.split_once(']') {
                Some((h, "")) => (&h[1..], 1883),
                Some((h, p)) => (
                    &h[1..],
                    p.strip_prefix(':')
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
                ),
                None => return Err(invalid("unclosed '[' in the host")),
            },
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| invalid("the port must be a number from 1 to 65535"))?,
            ),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if port == 0 {
            return Err(invalid("the port must be a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// e.g. `mqtt://127.0.0.1:1883`.
    pub broker_url: String,
    pub client_id: String,
    /// Simulated seconds per wall-clock second: 1.0 is real time.
    pub speed: f64,
    /// The least QoS for every message; alarm-bearing ones get at least once anyway.
    pub qos: Qos,
    /// MQTT username and password. The simulator speaks for every device of
    /// the city through one connection, so on a broker enforcing per-device
    /// ACLs it logs in as a *gateway* allowed on the device topics (see
    /// docs/mqtt.md); `None`: anonymous.
    pub credentials: Option<(String, vigie_core::credentials::Secret)>,
}

/// What a publishing run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub messages: u64,
    pub bytes: u64,
    pub faults_injected: u64,
    pub faults_refused: u64,
    pub reconnections: u64,
}

/// Plays `sim` onto the broker until `shutdown` resolves: every ~100 ms of
/// wall-clock time, the simulated clock moves `speed ×` as far and the
/// messages due are published, and commands to the devices are obeyed. Faults arriving on `faults` are injected as
/// they come. The broker going away is survived (reconnection with backoff);
/// the messages produced meanwhile wait in the bounded request queue.
pub async fn publish(
    mut sim: Simulator,
    options: PublishOptions,
    mut faults: mpsc::Receiver<Fault>,
    shutdown: impl Future<Output = ()>,
) -> Result<PublishStats, SimError> {
    let address: BrokerAddress = options.broker_url.parse()?;
    if !(options.speed.is_finite() && options.speed > 0.0) {
        return Err(SimError::InvalidSpeed(options.speed));
    }
    let mut mqtt = MqttOptions::new(options.client_id.clone(), address.host.clone(), address.port);
    mqtt.set_keep_alive(Duration::from_secs(30));
    mqtt.set_clean_start(true);
    if let Some((username, password)) = &options.credentials {
        mqtt.set_credentials(username.clone(), password.expose().to_owned());
    }
    let (client, mut event_loop) = AsyncClient::new(mqtt, REQUEST_CHANNEL);

    let (reconnect_tx, mut reconnect_rx) = mpsc::unbounded_channel::<()>();
    // Commands Vigie sends to the simulated devices, to the main loop.
    let (command_tx, mut command_rx) = mpsc::channel::<(String, Vec<u8>)>(1024);
    let subscriber = client.clone();
    let driver = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        let mut connected = false;
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_))) => {
                    if connected {
                        let _ = reconnect_tx.send(());
                    }
                    connected = true;
                    backoff = Duration::from_millis(200);
                    tracing::info!(broker = %address, "simulator connected");
                    // The devices listen for their commands (refused where the
                    // broker's ACL does not allow it: then they get none).
                    if let Err(e) = subscriber.try_subscribe(COMMAND_TOPICS, QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "cannot subscribe to the devices' commands");
                    }
                }
                Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if command_tx.try_send((topic, p.payload.to_vec())).is_err() {
                        tracing::warn!("simulator busy: a command was dropped");
                    }
                }
                Ok(_) => {}
                Err(rumqttc::v5::ConnectionError::RequestsDone) => break,
                Err(e) => {
                    tracing::warn!(broker = %address, error = %e, retry_in = ?backoff, "MQTT connection lost");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });

    let mut stats = PublishStats::default();
    let mut buffer: Vec<Message> = Vec::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut faults_open = true;
    tokio::pin!(shutdown);
    let result = 'run: loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            fault = faults.recv(), if faults_open => match fault {
                Some(fault) => match sim.inject(fault.clone()) {
                    Ok(()) => {
                        stats.faults_injected += 1;
                        tracing::info!(%fault, "fault injected");
                    }
                    Err(e) => {
                        stats.faults_refused += 1;
                        tracing::warn!(error = %e, "fault refused");
                    }
                },
                None => faults_open = false,
            },
            Some(()) = reconnect_rx.recv() => stats.reconnections += 1,
            Some((topic, payload)) = command_rx.recv() => {
                for m in sim.command(&topic, &payload) {
                    if let Err(e) = client.publish(m.topic, QoS::AtLeastOnce, false, m.payload).await {
                        break 'run Err(SimError::Client(e));
                    }
                    stats.messages += 1;
                }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                let elapsed = now.duration_since(last);
                last = now;
                let step_ms = (elapsed.as_secs_f64() * options.speed * 1000.0).round() as i64;
                let to = sim.now().checked_add(jiff::SignedDuration::from_millis(step_ms)).unwrap_or(sim.now());
                sim.advance(to, &mut buffer);
                for m in buffer.drain(..) {
                    let qos = match options.qos.max(m.qos_hint) {
                        Qos::AtMostOnce => QoS::AtMostOnce,
                        Qos::AtLeastOnce => QoS::AtLeastOnce,
                    };
                    stats.bytes += m.payload.len() as u64;
                    if let Err(e) = client.publish(m.topic, qos, false, m.payload).await {
                        break 'run Err(SimError::Client(e));
                    }
                    stats.messages += 1;
                }
            }
        }
    };
    let _ = client.disconnect().await;
    // The event loop ends once the client is gone; do not wait on a dead broker.
    drop(client);
    // rmqtt keeps the socket open after DISCONNECT and rumqttc waits for it to
    // close: give the DISCONNECT a moment to leave, then stop the event loop.
    let mut driver = driver;
    if tokio::time::timeout(Duration::from_millis(300), &mut driver)
        .await
        .is_err()
    {
        driver.abort();
    }
    result.map(|()| stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_clear_errors() {
        let a: BrokerAddress = "mqtt://127.0.0.1:1883".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1883));
        let a: BrokerAddress = "mqtt://broker.local".parse().unwrap();
        assert_eq!(a.port, 1883);
        let a: BrokerAddress = "mqtt://[::1]:8883".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 8883));
        assert_eq!(a.to_string(), "mqtt://[::1]:8883");
        for (bad, needle) in [
            ("http://x:1883", "expected 'mqtt://host:port'"),
            ("mqtt://:1883", "host is empty"),
            ("mqtt://x:port", "port must be"),
            ("mqtt://x:0", "port must be"),
            ("mqtt://x:1883/topic", "only host and port"),
        ] {
            let err = bad.parse::<BrokerAddress>().unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
