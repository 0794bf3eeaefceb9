//! Commands to equipment, end to end: checked against the type's commands
//! (`vigie_core::command`), recorded durably *before* they leave, published
//! to the device's IoT Agent JSON topic `/{apikey}/{device_id}/cmd` through
//! Vigie's own MQTT connection, acknowledged or refused by the device's
//! answer on `/cmdexe`, and expired when no answer comes in time. A restart
//! finds the commands still awaiting an answer in the store and keeps timing
//! them out; none is lost.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use vigie_core::command::{self, Command, CommandState};
use vigie_core::{Entity, Timestamp, Transport};
use vigie_store::Store;

use crate::api::ApiError;
use crate::ingest::DeviceRegistry;

/// How many command changes a slow reader of [`Commands::subscribe`] may lag.
const FEED_CAPACITY: usize = 256;

pub struct Commands {
    store: Arc<dyn Store>,
    registry: Arc<DeviceRegistry>,
    /// Vigie's MQTT connection, once the consumer has made it.
    mqtt: Mutex<Option<AsyncClient>>,
    timeout: Duration,
    feed: broadcast::Sender<Command>,
}

impl Commands {
    pub fn new(store: Arc<dyn Store>, registry: Arc<DeviceRegistry>, timeout: Duration) -> Self {
        Self {
            store,
            registry,
            mqtt: Mutex::new(None),
            timeout,
            feed: broadcast::channel(FEED_CAPACITY).0,
        }
    }

    /// The MQTT client commands are published with (the consumer's).
    pub fn attach(&self, client: AsyncClient) {
        *self.mqtt.lock().unwrap_or_else(PoisonError::into_inner) = Some(client);
    }

    /// Every change of a command's state, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Command> {
        self.feed.subscribe()
    }

    /// Sends `name` = `value` to the device of `entity`, on behalf of
    /// `issued_by`. The command is on disk before it leaves; if it cannot
    /// leave (no connection), it is recorded as failed and returned so.
    pub async fn send(&self, entity: &Entity, name: &str, value: &Value, issued_by: &str) -> Result<Command, ApiError> {
        let value =
            command::validate(&entity.entity_type, name, value).map_err(|e| ApiError::BadRequestData(e.to_string()))?;
        let device = self.registry.commandable(entity.id.as_str()).ok_or_else(|| {
            ApiError::OperationNotSupported(format!(
                "{} has no IoT Agent JSON device provisioned to take commands",
                entity.id
            ))
        })?;
        let Transport::IotAgentJson { apikey } = &device.transport else {
            return Err(ApiError::OperationNotSupported(format!(
                "the device of {} does not take IoT Agent JSON commands",
                entity.id
            )));
        };
        let now = Timestamp::now();
        let id = crate::security::secrets::random_hex(8)
            .map_err(|e| ApiError::Internal(format!("random generator: {e}")))?;
        let mut command = Command {
            id: format!("cmd-{id}"),
            entity_id: entity.id.clone(),
            device_id: device.device_id.clone(),
            name: name.to_owned(),
            value,
            state: CommandState::Sent,
            issued_by: issued_by.to_owned(),
            issued_at: now,
            updated_at: now,
            detail: None,
        };
        self.store.put_command(&command).await?;
        let topic = format!("/{apikey}/{}/cmd", device.device_id);
        let payload = command::payload(&command.name, &command.value);
        let client = self.mqtt.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // try_publish: a full queue (broker away) answers at once rather than
        // holding the operator's request.
        let published = match client {
            Some(client) => client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .map_err(|e| format!("cannot publish to the MQTT broker: {e}")),
            None => Err("Vigie is not connected to its MQTT broker".to_owned()),
        };
        match published {
            Ok(()) => {
                tracing::info!(command = %command.id, entity = %command.entity_id, name, "command sent");
                let _ = self.feed.send(command.clone());
            }
            Err(detail) => {
                tracing::warn!(command = %command.id, entity = %command.entity_id, %detail, "command not sent");
                command = self.close(command, CommandState::Failed, Some(detail)).await?;
            }
        }
        Ok(command)
    }

    async fn close(
        &self,
        mut command: Command,
        state: CommandState,
        detail: Option<String>,
    ) -> Result<Command, ApiError> {
        command.state = state;
        command.detail = detail;
        command.updated_at = Timestamp::now();
        self.store.put_command(&command).await?;
        let _ = self.feed.send(command.clone());
        Ok(command)
    }

    /// A device's answer on `/{apikey}/{device_id}/cmdexe`: each command
    /// named answers the oldest open command of that name to that device.
    pub async fn answer(&self, device_id: &str, payload: &[u8]) -> Result<(), String> {
        let results = command::parse_results(payload)?;
        let open = self.store.open_commands().await.map_err(|e| e.to_string())?;
        for answer in results {
            let Some(command) = open
                .iter()
                .find(|c| c.device_id == device_id && c.name == answer.name)
                .cloned()
            else {
                tracing::info!(
                    device = device_id,
                    name = answer.name,
                    "an answer to no open command (late or repeated)"
                );
                continue;
            };
            let state = if answer.acknowledged {
                CommandState::Acknowledged
            } else {
                CommandState::Failed
            };
            let detail = answer.text;
            tracing::info!(command = %command.id, state = state.as_str(), "command answered");
            self.close(command, state, Some(detail))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// An entity's latest commands, newest first.
    pub async fn of_entity(&self, entity_id: &str, limit: usize) -> Result<Vec<Command>, ApiError> {
        Ok(self.store.commands_of(entity_id, limit).await?)
    }

    /// Expires the commands left unanswered past the timeout, every second,
    /// including those a previous run left open.
    pub async fn run_timeouts(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = self.expire(Timestamp::now()).await {
                tracing::warn!(error = %e, "cannot expire unanswered commands");
            }
        }
    }

    async fn expire(&self, now: Timestamp) -> Result<(), ApiError> {
        let timeout = jiff::SignedDuration::try_from(self.timeout).unwrap_or(jiff::SignedDuration::MAX);
        for command in self.store.open_commands().await? {
            if now.duration_since(command.issued_at) > timeout {
                let detail = format!("no answer from the device within {} s", self.timeout.as_secs());
                tracing::warn!(command = %command.id, entity = %command.entity_id, "command expired");
                self.close(command, CommandState::Expired, Some(detail)).await?;
            }
        }
        Ok(())
    }
}
