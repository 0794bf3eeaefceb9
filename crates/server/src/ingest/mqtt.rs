//! Vigie's MQTT consumer: one MQTT v5 client, the same for the embedded broker
//! and an external one. It subscribes to the device topics (through a shared
//! subscription when the broker offers them, so several Vigie nodes split the
//! traffic), decodes each message into work for the writer and acknowledges it
//! only once the writer has made it durable (manual acks).
//!
//! Backpressure: the broker may have at most `receive_maximum` unacknowledged
//! messages in flight to Vigie, and the consumer waits when the ingest queue is
//! full, so memory stays bounded whatever the devices send.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigie_core::Timestamp;
use vigie_core::decode::{self, Topic};
use vigie_store::DeadLetter;

use super::registry::DeviceRegistry;
use super::writer::{Acknowledge, Work};
use crate::metrics::{Metrics, inc};

/// Device topics Vigie consumes (without the shared-subscription prefix).
/// What Vigie's consumer subscribes to: exactly what its ACL lets it read
/// (telemetry, and the devices' answers to commands).
pub const DEVICE_TOPICS: &[&str] = vigie_core::acl::SERVICE_SUBSCRIBE;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MQTT broker URL '{url}': {reason}")]
pub struct BrokerUrlError {
    url: String,
    reason: &'static str,
}

/// Host and port from `mqtt://host:port` (`tcp://` is accepted too; port 1883 by default).
pub fn parse_broker_url(url: &str) -> Result<(String, u16), BrokerUrlError> {
    let err = |reason| BrokerUrlError {
        url: url.to_owned(),
        reason,
    };
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| err("expected mqtt://host:port"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse().map_err(|_| err("the port is not a number from 1 to 65535"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() || port == 0 {
        return Err(err("no host or port"));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

pub struct ConsumerOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub share_group: String,
    pub receive_maximum: u16,
    pub dead_letter_payload_bytes: usize,
    /// Username and password Vigie logs in with (the embedded broker: its
    /// client id and the per-process secret; an external one: configured).
    pub credentials: Option<(String, vigie_core::credentials::Secret)>,
}

struct MqttAck {
    client: AsyncClient,
    publish: Publish,
}

impl Acknowledge for MqttAck {
    fn acknowledge(self: Box<Self>) {
        // The request channel is sized above receive_maximum, so this only
        // fails when the connection is gone, and the broker then redelivers.
        if let Err(e) = self.client.try_ack(&self.publish) {
            tracing::warn!(error = %e, "could not acknowledge an MQTT message; the broker will redeliver it");
        }
    }
}

pub struct Consumer {
    options: ConsumerOptions,
    registry: Arc<DeviceRegistry>,
    /// Taken when stopping, so the writer sees the queue close once drained.
    queue: Option<mpsc::Sender<Work>>,
    metrics: Arc<Metrics>,
    /// Where devices' answers to commands go, and whom Vigie's connection
    /// publishes commands for.
    commands: Option<Arc<crate::commands::Commands>>,
}

impl Consumer {
    pub fn new(
        options: ConsumerOptions,
        registry: Arc<DeviceRegistry>,
        queue: mpsc::Sender<Work>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            options,
            registry,
            queue: Some(queue),
            metrics,
            commands: None,
        }
    }

    /// Commands are published over this consumer's connection and devices'
    /// answers (`/cmdexe`) go to `commands`.
    pub fn with_commands(mut self, commands: Arc<crate::commands::Commands>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Consumes until `stop` fires, then keeps the connection until
    /// `writer_done` so the last acknowledgements reach the broker, and
    /// disconnects. Messages received after `stop` are left unacknowledged:
    /// the broker keeps them in Vigie's persistent session.
    pub async fn run(mut self, stop: CancellationToken, writer_done: CancellationToken) {
        let mut queue = self.queue.take();
        let o = &self.options;
        let mut mqtt = MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
        let mut props = ConnectProperties::new();
        // A persistent session: what the broker holds for Vigie survives a restart.
        props.session_expiry_interval = Some(7 * 24 * 3600);
        props.receive_maximum = Some(o.receive_maximum);
        props.max_packet_size = Some(1024 * 1024);
        if let Some((username, password)) = &o.credentials {
            mqtt.set_credentials(username.clone(), password.expose().to_owned());
        }
        mqtt.set_connect_properties(props)
            .set_clean_start(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(Some(1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(mqtt, usize::from(o.receive_maximum) * 2 + 64);
        if let Some(commands) = &self.commands {
            commands.attach(client.clone());
        }
        let mut backoff = Duration::from_millis(100);
        let mut stopping = false;
        loop {
            let event = tokio::select! {
                ev = eventloop.poll() => ev,
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    queue = None;
                    continue;
                }
                () = writer_done.cancelled(), if stopping => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    self.metrics.mqtt_connected.store(1, Ordering::Relaxed);
                    let shared = ack.properties.as_ref().and_then(|p| p.shared_subscription_available) != Some(0);
                    tracing::info!(
                        host = %o.host, port = o.port, session_present = ack.session_present, shared,
                        "connected to the MQTT broker"
                    );
                    for &topic in DEVICE_TOPICS {
                        let filter = if shared {
                            format!("$share/{}/{topic}", o.share_group)
                        } else {
                            topic.to_owned()
                        };
                        if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                            tracing::error!(error = %e, topic, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let Some(queue) = &queue else {
                        continue;
                    };
                    let ack = (publish.qos != QoS::AtMostOnce).then(|| {
                        Box::new(MqttAck {
                            client: client.clone(),
                            publish: publish.clone(),
                        }) as Box<dyn Acknowledge>
                    });
                    let Some(work) = self.route(&publish, ack) else {
                        continue;
                    };
                    // Waiting here is the backpressure: the socket is not read meanwhile.
                    if queue.send(work).await.is_err() {
                        tracing::warn!("ingest queue closed; stopping the MQTT consumer");
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    self.metrics.mqtt_connected.store(0, Ordering::Relaxed);
                    tracing::warn!(reason = ?d.reason_code, "the broker disconnected Vigie");
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics.mqtt_connected.store(0, Ordering::Relaxed);
                    if stopping {
                        break;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        let _ = client.try_disconnect();
        // Let the event loop send the DISCONNECT (bounded, never hangs shutdown).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(ev) = eventloop.poll().await {
                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        self.metrics.mqtt_connected.store(0, Ordering::Relaxed);
        tracing::info!("MQTT consumer stopped");
    }

    /// Turns one message into work: telemetry for a known device, or a dead
    /// letter naming the problem; a device's answer to a command goes to the
    /// command service instead (acknowledged once recorded).
    fn route(&self, publish: &Publish, ack: Option<Box<dyn Acknowledge>>) -> Option<Work> {
        let received_at = Timestamp::now();
        let topic = String::from_utf8_lossy(&publish.topic);
        let outcome = match decode::parse_topic(&topic) {
            Err(e) => Err(("malformed-topic", e.to_string())),
            Ok(Topic::IotAgentAttrs { apikey, device_id }) => match self.registry.iot_agent(apikey, device_id) {
                None => Err((
                    "unknown-device",
                    format!("no device '{device_id}' is provisioned under apikey '{apikey}'"),
                )),
                Some(device) => decode::decode_iot_agent(&device, &publish.payload, received_at)
                    .map(|obs| (device, obs))
                    .map_err(|e| ("invalid-payload", e.to_string())),
            },
            Ok(Topic::ChirpStackEvent { dev_eui, event, .. }) => match self.registry.lorawan(dev_eui) {
                None => Err((
                    "unknown-device",
                    format!("no LoRaWAN device with DevEUI '{dev_eui}' is provisioned"),
                )),
                Some(device) => decode::decode_chirpstack(&device, dev_eui, event, &publish.payload, received_at)
                    .map(|obs| (device, obs))
                    .map_err(|e| ("invalid-payload", e.to_string())),
            },
            Ok(Topic::IotAgentCommandResult { apikey, device_id }) => {
                match (&self.commands, self.registry.iot_agent(apikey, device_id)) {
                    (_, None) => Err((
                        "unknown-device",
                        format!("no device '{device_id}' is provisioned under apikey '{apikey}'"),
                    )),
                    (None, Some(_)) => Err((
                        "unsupported-topic",
                        format!("command results from '{device_id}' are not consumed here"),
                    )),
                    (Some(commands), Some(_)) => {
                        let (commands, device_id) = (Arc::clone(commands), device_id.to_owned());
                        let payload = publish.payload.clone();
                        tokio::spawn(async move {
                            if let Err(e) = commands.answer(&device_id, &payload).await {
                                tracing::warn!(device = device_id, error = %e, "a command answer was refused");
                            }
                            if let Some(ack) = ack {
                                ack.acknowledge();
                            }
                        });
                        return None;
                    }
                }
            }
        };
        Some(match outcome {
            Ok((device, observations)) => Work::Telemetry {
                device,
                observations,
                ack,
            },
            Err((reason, detail)) => {
                if reason == "unknown-device" {
                    inc(&self.metrics.unknown_devices, 1);
                } else {
                    inc(&self.metrics.malformed_messages, 1);
                }
                tracing::debug!(%topic, reason, %detail, "message refused");
                let kept = publish.payload.len().min(self.options.dead_letter_payload_bytes);
                Work::Refused {
                    letter: DeadLetter {
                        received_at,
                        source: "mqtt".into(),
                        topic: topic.chars().take(512).collect(),
                        reason: reason.into(),
                        detail,
                        payload: publish.payload[..kept].to_vec(),
                    },
                    ack,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(parse_broker_url("tcp://broker").unwrap(), ("broker".into(), 1883));
        assert_eq!(parse_broker_url("mqtt://[::1]:1883/").unwrap(), ("::1".into(), 1883));
        for bad in ["http://x", "mqtt://", "mqtt://x:port", "mqtt://x:0", "x:1883"] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }
}
