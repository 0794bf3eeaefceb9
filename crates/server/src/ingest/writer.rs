//! The single writer: drains the ingest queue in batches, computes each item's
//! effect on the twin, commits the batch to the store, then publishes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigie_core::{Attribute, Device, Entity, EntityId, Observation, Timestamp};
use vigie_store::{DeadLetter, HistoryPoint, Store, WriteBatch};

use crate::metrics::{Metrics, inc};
use crate::twin::Twin;

/// Acknowledges a message to its sender once it is durable (an MQTT PUBACK).
pub trait Acknowledge: Send {
    fn acknowledge(self: Box<Self>);
}

/// One item of work for the writer.
pub enum Work {
    /// Measures from a provisioned device.
    Telemetry {
        device: Arc<Device>,
        observations: Vec<Observation>,
        ack: Option<Box<dyn Acknowledge>>,
    },
    /// A message refused at the door, kept as a dead letter.
    Refused {
        letter: DeadLetter,
        ack: Option<Box<dyn Acknowledge>>,
    },
    /// An NGSI-LD write, answered once durable.
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<WriteOutcome, WriteError>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Fails for entities that exist.
    Create,
    /// Creates or replaces whole entities.
    UpsertReplace,
    /// Creates entities, or merges attributes into existing ones.
    UpsertUpdate,
}

#[derive(Debug, Clone)]
pub enum WriteOp {
    Create(Entity),
    Batch {
        kind: BatchKind,
        entities: Vec<Entity>,
    },
    /// Adds attributes (replacing existing ones unless `overwrite` is false).
    Append {
        id: EntityId,
        attributes: BTreeMap<String, Attribute>,
        overwrite: bool,
    },
    /// Replaces existing attributes only.
    Update {
        id: EntityId,
        attributes: BTreeMap<String, Attribute>,
    },
    Delete(EntityId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Created,
    Done,
    /// Some attributes were not written, with the reason for each.
    Partial {
        updated: Vec<String>,
        not_updated: Vec<(String, String)>,
    },
    /// Per entity of a batch: `Ok(true)` created, `Ok(false)` updated.
    Batch(Vec<(EntityId, Result<bool, WriteError>)>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("entity {0} does not exist")]
    NotFound(EntityId),
    #[error("entity {0} already exists")]
    AlreadyExists(EntityId),
    #[error("the store cannot write now: {0}")]
    Unavailable(String),
}

/// The API's side of the queue.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Work>,
}

impl IngestHandle {
    pub fn new(tx: mpsc::Sender<Work>) -> Self {
        Self { tx }
    }

    /// Queues a write and waits until it is durable (or refused).
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Work::Write { op, reply })
            .await
            .map_err(|_| WriteError::Unavailable("Vigie is shutting down".into()))?;
        answer
            .await
            .map_err(|_| WriteError::Unavailable("the writer stopped before answering".into()))?
    }

    pub fn sender(&self) -> mpsc::Sender<Work> {
        self.tx.clone()
    }
}

pub struct Writer {
    pub store: Arc<dyn Store>,
    pub twin: Arc<Twin>,
    pub metrics: Arc<Metrics>,
    pub batch_max: usize,
}

/// Entities touched by a batch: `None` once deleted. Reads fall through to the twin.
struct WorkingSet<'a> {
    twin: &'a Twin,
    touched: HashMap<EntityId, Option<Arc<Entity>>>,
}

impl WorkingSet<'_> {
    fn get(&self, id: &EntityId) -> Option<Arc<Entity>> {
        match self.touched.get(id) {
            Some(state) => state.clone(),
            None => self.twin.get(id.as_str()),
        }
    }

    fn put(&mut self, entity: Entity) {
        self.touched.insert(entity.id.clone(), Some(Arc::new(entity)));
    }
}

fn history_of(entity: &Entity, names: impl Iterator<Item = String>, now: Timestamp, out: &mut Vec<HistoryPoint>) {
    for name in names {
        if let Some(a) = entity.attributes.get(&name) {
            out.push(HistoryPoint {
                entity_id: entity.id.clone(),
                attribute: name,
                observed_at: a.observed_at.unwrap_or(now),
                value: a.value.clone(),
                unit_code: a.unit_code.clone(),
            });
        }
    }
}

/// Where an HTTP write's outcome goes.
type Reply = oneshot::Sender<Result<WriteOutcome, WriteError>>;

/// What one batch produced, ready to commit.
struct Prepared {
    batch: WriteBatch,
    changes: Vec<(EntityId, Option<Arc<Entity>>)>,
    replies: Vec<(Reply, Result<WriteOutcome, WriteError>)>,
    acks: Vec<Box<dyn Acknowledge>>,
    mqtt_messages: u64,
    refused: u64,
}

impl Writer {
    /// Runs until the queue is closed and drained. When `stop` fires while the
    /// store is failing, gives up on the pending batch (unacknowledged MQTT
    /// messages are redelivered by the broker later).
    pub async fn run(self, mut rx: mpsc::Receiver<Work>, stop: CancellationToken) {
        let mut items = Vec::with_capacity(self.batch_max);
        loop {
            items.clear();
            if rx.recv_many(&mut items, self.batch_max).await == 0 {
                break;
            }
            self.metrics
                .queue_depth
                .store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.process(std::mem::take(&mut items), &stop).await;
        }
        tracing::info!("ingest writer drained and stopped");
    }

    async fn process(&self, items: Vec<Work>, stop: &CancellationToken) {
        let now = Timestamp::now();
        let mut prepared = self.prepare(items, now);
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.store.write(&prepared.batch).await {
                Ok(()) => {
                    self.metrics.observe_commit(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e) => {
                    inc(&self.metrics.store_errors, 1);
                    tracing::error!(error = %e, points = prepared.batch.history.len(), "store commit failed; retrying");
                    // HTTP writers are told now rather than kept waiting.
                    for (reply, _) in prepared.replies.drain(..) {
                        // The store's own words (SQL, paths) stay in the log above.
                        let _ = reply.send(Err(WriteError::Unavailable(
                            "the store cannot commit writes at the moment; the cause is in the server log".into(),
                        )));
                    }
                    if stop.is_cancelled() {
                        tracing::warn!(
                            messages = prepared.acks.len(),
                            "giving up on a batch at shutdown: its messages stay unacknowledged for redelivery"
                        );
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let points = prepared.batch.history.len() as u64;
        self.twin.commit(prepared.changes);
        for ack in prepared.acks {
            ack.acknowledge();
        }
        for (reply, outcome) in prepared.replies {
            let _ = reply.send(outcome);
        }
        let m = &self.metrics;
        inc(&m.points_written, points);
        inc(&m.mqtt_messages, prepared.mqtt_messages);
        inc(&m.dead_letters, prepared.refused);
        inc(&m.batches, 1);
    }

    fn prepare(&self, items: Vec<Work>, now: Timestamp) -> Prepared {
        let mut ws = WorkingSet {
            twin: &self.twin,
            touched: HashMap::new(),
        };
        let mut p = Prepared {
            batch: WriteBatch::default(),
            changes: Vec::new(),
            replies: Vec::new(),
            acks: Vec::new(),
            mqtt_messages: 0,
            refused: 0,
        };
        for item in items {
            match item {
                Work::Telemetry {
                    device,
                    observations,
                    ack,
                } => {
                    p.mqtt_messages += 1;
                    self.apply_telemetry(&mut ws, &device, observations, now, &mut p.batch.history);
                    p.acks.extend(ack);
                }
                Work::Refused { letter, ack } => {
                    p.mqtt_messages += 1;
                    p.refused += 1;
                    p.batch.dead_letters.push(letter);
                    p.acks.extend(ack);
                }
                Work::Write { op, reply } => {
                    inc(&self.metrics.http_writes, 1);
                    let outcome = apply_write(&mut ws, op, now, &mut p.batch.history);
                    p.replies.push((reply, outcome));
                }
            }
        }
        for (id, state) in ws.touched {
            match &state {
                Some(e) => p.batch.upserts.push(Arc::clone(e)),
                None => p.batch.deletes.push(id.clone()),
            }
            p.changes.push((id, state));
        }
        p
    }

    fn apply_telemetry(
        &self,
        ws: &mut WorkingSet<'_>,
        device: &Device,
        observations: Vec<Observation>,
        now: Timestamp,
        history: &mut Vec<HistoryPoint>,
    ) {
        let id = &device.entity_name;
        let mut entity = match ws.get(id) {
            Some(e) => Entity::clone(&e),
            None => {
                // First message of a provisioned device: its entity appears, as with the IoT Agent.
                let mut e = Entity::new(id.clone(), device.entity_type.clone(), device.scope.clone());
                e.created_at = Some(now);
                e
            }
        };
        for obs in observations {
            entity.apply(&obs);
            history.push(HistoryPoint {
                entity_id: obs.entity_id,
                attribute: obs.attribute,
                observed_at: obs.observed_at,
                value: obs.value,
                unit_code: obs.unit_code,
            });
        }
        ws.put(entity);
    }
}

fn apply_write(
    ws: &mut WorkingSet<'_>,
    op: WriteOp,
    now: Timestamp,
    history: &mut Vec<HistoryPoint>,
) -> Result<WriteOutcome, WriteError> {
    match op {
        WriteOp::Create(entity) => create(ws, entity, now, history).map(|()| WriteOutcome::Created),
        WriteOp::Batch { kind, entities } => {
            let results = entities
                .into_iter()
                .map(|e| {
                    let id = e.id.clone();
                    let result = match (kind, ws.get(&id)) {
                        (_, None) => create(ws, e, now, history).map(|()| true),
                        (BatchKind::Create, Some(_)) => Err(WriteError::AlreadyExists(id.clone())),
                        (BatchKind::UpsertReplace, Some(old)) => {
                            let mut e = e;
                            e.created_at = old.created_at;
                            e.modified_at = Some(now);
                            history_of(&e, e.attributes.keys().cloned(), now, history);
                            ws.put(e);
                            Ok(false)
                        }
                        (BatchKind::UpsertUpdate, Some(old)) => {
                            let mut merged = Entity::clone(&old);
                            let names: Vec<String> = e.attributes.keys().cloned().collect();
                            merged.attributes.extend(e.attributes);
                            if e.scope.is_some() {
                                merged.scope = e.scope;
                            }
                            merged.modified_at = Some(now);
                            history_of(&merged, names.into_iter(), now, history);
                            ws.put(merged);
                            Ok(false)
                        }
                    };
                    (id, result)
                })
                .collect();
            Ok(WriteOutcome::Batch(results))
        }
        WriteOp::Append {
            id,
            attributes,
            overwrite,
        } => {
            let old = ws.get(&id).ok_or(WriteError::NotFound(id))?;
            let mut e = Entity::clone(&old);
            let mut updated = Vec::new();
            let mut not_updated = Vec::new();
            for (name, attr) in attributes {
                if !overwrite && e.attributes.contains_key(&name) {
                    not_updated.push((name, "the attribute exists and noOverwrite was asked".to_owned()));
                } else {
                    e.attributes.insert(name.clone(), attr);
                    updated.push(name);
                }
            }
            finish_attribute_write(ws, e, updated, not_updated, now, history)
        }
        WriteOp::Update { id, attributes } => {
            let old = ws.get(&id).ok_or(WriteError::NotFound(id))?;
            let mut e = Entity::clone(&old);
            let mut updated = Vec::new();
            let mut not_updated = Vec::new();
            for (name, attr) in attributes {
                match e.attributes.get_mut(&name) {
                    Some(slot) => {
                        *slot = attr;
                        updated.push(name);
                    }
                    None => not_updated.push((name, "the entity has no such attribute".to_owned())),
                }
            }
            finish_attribute_write(ws, e, updated, not_updated, now, history)
        }
        WriteOp::Delete(id) => {
            ws.get(&id).ok_or_else(|| WriteError::NotFound(id.clone()))?;
            ws.touched.insert(id, None);
            Ok(WriteOutcome::Done)
        }
    }
}

fn create(
    ws: &mut WorkingSet<'_>,
    mut e: Entity,
    now: Timestamp,
    history: &mut Vec<HistoryPoint>,
) -> Result<(), WriteError> {
    if ws.get(&e.id).is_some() {
        return Err(WriteError::AlreadyExists(e.id));
    }
    e.created_at = Some(now);
    e.modified_at = Some(now);
    history_of(&e, e.attributes.keys().cloned(), now, history);
    ws.put(e);
    Ok(())
}

fn finish_attribute_write(
    ws: &mut WorkingSet<'_>,
    mut e: Entity,
    updated: Vec<String>,
    not_updated: Vec<(String, String)>,
    now: Timestamp,
    history: &mut Vec<HistoryPoint>,
) -> Result<WriteOutcome, WriteError> {
    if !updated.is_empty() {
        e.modified_at = Some(now);
        history_of(&e, updated.iter().cloned(), now, history);
        ws.put(e);
    }
    if not_updated.is_empty() {
        Ok(WriteOutcome::Done)
    } else {
        Ok(WriteOutcome::Partial { updated, not_updated })
    }
}
