//! The single writer: drains the ingest queue in batches, computes each item's
//! effect on the twin, commits the batch to the store, then publishes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigie_core::audit::{AuditEvent, AuditRecord};
use vigie_core::{Device, Entity, EntityId, Observation, Timestamp};
use vigie_store::{DeadLetter, HistoryPoint, Store, StoreError, WriteBatch};

use crate::audit::Audit;
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
    /// An NGSI-LD write, answered once durable (and recorded in the audit
    /// trail when it comes with a note).
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<WriteOutcome, WriteError>>,
        audit: Option<AuditNote>,
    },
}

/// Makes the audit record of a write once the writer knows what it did.
pub type AuditNote = Box<dyn FnOnce(Audited<'_>) -> AuditEvent + Send>;

/// What a write did, for its audit record.
pub struct Audited<'a> {
    pub result: &'a Result<WriteOutcome, WriteError>,
    /// The entity a single-entity write addressed, just before it and just
    /// after it (`None`: absent, deleted, or a write of several entities).
    pub before: Option<&'a Entity>,
    pub after: Option<&'a Entity>,
}

/// Where a writer's audit records go.
#[derive(Clone)]
pub enum AuditTrail {
    /// The trail is in the writer's own store: each batch's records commit
    /// in the batch's transaction, so a write and its record are one.
    InBatch(Arc<Audit>),
    /// The trail is in another store (a tenant's writer): records are
    /// appended once the batch is durable, before the writers are answered.
    Apart(Arc<Audit>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Fails for entities that exist.
    Create,
    /// Creates or replaces whole entities.
    UpsertReplace,
    /// Creates entities, or merges attributes into existing ones.
    UpsertUpdate,
    /// Adds or replaces attributes of existing entities (`noOverwrite`: adds only).
    Update { overwrite: bool },
    /// Merges fragments into existing entities (NGSI-LD merge semantics).
    Merge,
}

impl BatchKind {
    /// The audit trail's action and mode for a batch of this kind.
    pub fn audit_labels(self) -> (&'static str, &'static str) {
        match self {
            Self::Create => ("entity.batch-create", "create"),
            Self::UpsertReplace => ("entity.batch-upsert", "replace"),
            Self::UpsertUpdate => ("entity.batch-upsert", "update"),
            Self::Update { overwrite: true } => ("entity.batch-update", "overwrite"),
            Self::Update { overwrite: false } => ("entity.batch-update", "noOverwrite"),
            Self::Merge => ("entity.batch-merge", "merge"),
        }
    }
}

/// A change to one existing entity, applied by the writer to its latest state
/// (so concurrent writers never lose each other's changes). It returns the
/// attributes it touched, for history, or why it cannot apply.
pub type Edit = Box<dyn FnOnce(&mut Entity) -> Result<Edited, WriteError> + Send>;

/// What an [`Edit`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Edited {
    /// Attributes written (their new values go to history).
    pub updated: Vec<String>,
    /// Attributes not written, with the reason for each (a 207 answer).
    pub not_updated: Vec<(String, String)>,
}

pub enum WriteOp {
    Create(Entity),
    Batch {
        kind: BatchKind,
        entities: Vec<Entity>,
    },
    Delete(EntityId),
    /// Deletes several entities; each missing one is reported.
    BatchDelete(Vec<EntityId>),
    /// Temporal writes: instances of attributes, each kept in history and
    /// the newest becoming the entity's state; `entity` is what is created
    /// (when `create`) if the entity does not exist.
    Observe {
        entity: Entity,
        observations: Vec<Observation>,
        create: bool,
    },
    /// Any other change to one existing entity: merge, replace, attribute operations.
    Edit {
        id: EntityId,
        edit: Edit,
    },
}

impl WriteOp {
    /// The one entity this write addresses, if it addresses one.
    fn target(&self) -> Option<&EntityId> {
        match self {
            Self::Create(e) | Self::Observe { entity: e, .. } => Some(&e.id),
            Self::Delete(id) | Self::Edit { id, .. } => Some(id),
            Self::Batch { .. } | Self::BatchDelete(_) => None,
        }
    }
}

impl std::fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create(e) => f.debug_tuple("Create").field(&e.id).finish(),
            Self::Batch { kind, entities } => write!(f, "Batch({kind:?}, {} entities)", entities.len()),
            Self::Delete(id) => f.debug_tuple("Delete").field(id).finish(),
            Self::BatchDelete(ids) => write!(f, "BatchDelete({} entities)", ids.len()),
            Self::Observe {
                entity, observations, ..
            } => {
                write!(f, "Observe({}, {} instances)", entity.id, observations.len())
            }
            Self::Edit { id, .. } => f.debug_tuple("Edit").field(id).finish(),
        }
    }
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
    #[error("entity {id}: {attribute}")]
    AttributeNotFound { id: EntityId, attribute: String },
    /// Valid NGSI-LD that Vigie's model cannot hold.
    #[error("{0}")]
    NotSupported(String),
    /// The change does not fit the entity (e.g. a merge fragment that does not apply).
    #[error("{0}")]
    Invalid(String),
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
        self.send(op, None).await
    }

    /// Like [`IngestHandle::write`], with the write's audit record made by
    /// `note` and made durable with it: if the record cannot be, the write
    /// answers an error.
    pub async fn write_audited(&self, op: WriteOp, note: AuditNote) -> Result<WriteOutcome, WriteError> {
        self.send(op, Some(note)).await
    }

    async fn send(&self, op: WriteOp, audit: Option<AuditNote>) -> Result<WriteOutcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Work::Write { op, reply, audit })
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
    pub observers: Vec<Arc<dyn ChangeObserver>>,
    pub audit: AuditTrail,
}

/// One entity's change in a committed batch: its state before the batch and
/// after it (`None`: absent, or deleted). Several writes to one entity in one
/// batch make one change.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: EntityId,
    pub before: Option<Arc<Entity>>,
    pub after: Option<Arc<Entity>>,
}

/// Sees every change the writer commits (subscriptions, the console's live feed).
pub trait ChangeObserver: Send + Sync {
    /// Runs before the commit: what it adds to `batch` (e.g. pending
    /// notifications) is committed in the same transaction as the changes.
    fn prepare(&self, changes: &[Change], now: Timestamp, batch: &mut WriteBatch);
    /// Runs once the batch is durable and the twin shows it.
    fn committed(&self, batch: &WriteBatch);
}

/// An entity's state before a batch and now (`None`: absent or deleted).
type BeforeAndNow = (Option<Arc<Entity>>, Option<Arc<Entity>>);

/// The states a batch handed to the store will have once it is durable:
/// the next batch builds on them while the store commits.
type InFlight = HashMap<EntityId, Option<Arc<Entity>>>;

/// Entities touched by a batch. Reads fall through to the batch in flight,
/// then to the twin.
struct WorkingSet<'a> {
    twin: &'a Twin,
    in_flight: &'a InFlight,
    touched: &'a mut HashMap<EntityId, BeforeAndNow>,
}

impl WorkingSet<'_> {
    fn base(&self, id: &EntityId) -> Option<Arc<Entity>> {
        match self.in_flight.get(id) {
            Some(state) => state.clone(),
            None => self.twin.get(id.as_str()),
        }
    }

    fn get(&self, id: &EntityId) -> Option<Arc<Entity>> {
        match self.touched.get(id) {
            Some((_, now)) => now.clone(),
            None => self.base(id),
        }
    }

    fn set(&mut self, id: EntityId, state: Option<Arc<Entity>>) {
        match self.touched.get_mut(&id) {
            Some((_, now)) => *now = state,
            None => {
                let before = self.base(&id);
                self.touched.insert(id, (before, state));
            }
        }
    }

    fn put(&mut self, entity: Entity) {
        self.set(entity.id.clone(), Some(Arc::new(entity)));
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

/// A batch: what its items did, and once sealed, what to commit.
#[derive(Default)]
struct Prepared {
    /// Items applied so far.
    items: usize,
    touched: HashMap<EntityId, BeforeAndNow>,
    batch: WriteBatch,
    changes: Vec<Change>,
    replies: Vec<(Reply, Result<WriteOutcome, WriteError>)>,
    /// The HTTP writes' audit records, in the order of the writes.
    audit: Vec<AuditEvent>,
    acks: Vec<Box<dyn Acknowledge>>,
    mqtt_messages: u64,
    refused: u64,
}

impl Prepared {
    /// Tells the batch's HTTP writers it failed; its MQTT messages stay
    /// unacknowledged, for the broker to deliver again.
    fn abandon(self, why: &str) {
        for (reply, _) in self.replies {
            let _ = reply.send(Err(WriteError::Unavailable(why.to_owned())));
        }
    }
}

/// When the next batch goes to the store. Why wait at all: the writers of
/// the batch just committed send their next writes a fraction of a
/// millisecond after their answers; committing at once would leave them for
/// the batch after, and under steady load the writers would split into
/// groups taking turns, each commit (an fsync, mostly) serving only part of
/// them. So when the open batch is smaller than the last one, it waits for
/// the stragglers, at most half the last commit's time.
#[derive(Default)]
struct Gathering {
    /// Items of the last batch sent to the store.
    last_items: usize,
    /// When the last batch was sent to the store.
    started: Option<tokio::time::Instant>,
    /// Until when the open batch waits for more items.
    until: Option<tokio::time::Instant>,
}

impl Gathering {
    /// The longest wait for stragglers.
    const MAX_WAIT: Duration = Duration::from_millis(2);

    fn ready(&self, open_items: usize) -> bool {
        self.until.is_none() || open_items >= self.last_items
    }

    fn started(&mut self, items: usize) {
        self.last_items = items;
        self.started = Some(tokio::time::Instant::now());
        self.until = None;
    }

    fn finished(&mut self, open_items: usize) {
        if open_items < self.last_items
            && let Some(started) = self.started
        {
            let wait = (started.elapsed() / 2).min(Self::MAX_WAIT);
            self.until = Some(tokio::time::Instant::now() + wait);
        }
    }
}

/// A writer running on its own thread; [`WriterTask::join`] waits for it to
/// drain and stop.
pub struct WriterTask {
    done: oneshot::Receiver<()>,
}

impl WriterTask {
    pub async fn join(self) {
        // An error means the thread ended without saying so: stopped all the same.
        let _ = self.done.await;
    }
}

impl Writer {
    /// Starts the writer on a thread of its own, with a runtime of its own.
    /// Why: every write in Vigie waits on this one loop, and a commit is
    /// several round trips to SQLite's thread; in the shared runtime each
    /// wake-up queued behind hundreds of HTTP and MQTT tasks. On its own
    /// thread it waits only on SQLite and gets its share of the cores
    /// whatever the number of connections.
    pub fn spawn(self, rx: mpsc::Receiver<Work>, stop: CancellationToken) -> std::io::Result<WriterTask> {
        let (finished, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("vigie-writer".into()).spawn(move || {
            runtime.block_on(self.run(rx, stop));
            let _ = finished.send(());
        })?;
        Ok(WriterTask { done })
    }

    /// Runs until the queue is closed and drained. When `stop` fires while the
    /// store is failing, gives up on the pending batches (unacknowledged MQTT
    /// messages are redelivered by the broker later).
    ///
    /// Group commit: while the store commits one batch, the items arriving
    /// are applied to the next one, on top of the states the first will
    /// have; the next batch goes to the store as soon as it is free. The
    /// store is never idle while work waits, and batches grow with the load
    /// instead of the commits multiplying.
    pub async fn run(self, mut rx: mpsc::Receiver<Work>, stop: CancellationToken) {
        let mut items = Vec::with_capacity(self.batch_max);
        let mut open = Prepared::default();
        let mut in_flight = InFlight::new();
        let mut committing: Option<std::pin::Pin<Box<dyn Future<Output = bool> + '_>>> = None;
        let mut gathering = Gathering::default();
        let mut closed = false;
        loop {
            if committing.is_none() && open.items > 0 && (closed || gathering.ready(open.items)) {
                let batch = self.seal(std::mem::take(&mut open), Timestamp::now());
                in_flight = batch.changes.iter().map(|c| (c.id.clone(), c.after.clone())).collect();
                gathering.started(batch.items);
                committing = Some(Box::pin(self.process(batch, &stop)));
            }
            if closed && committing.is_none() {
                break;
            }
            let room = self.batch_max.saturating_sub(open.items);
            let until = gathering.until.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                biased;
                committed = async {
                    match committing.as_mut() {
                        Some(commit) => commit.await,
                        None => std::future::pending().await,
                    }
                }, if committing.is_some() =>
                {
                    committing = None;
                    in_flight.clear();
                    gathering.finished(open.items);
                    if !committed {
                        // The open batch was built on states that never became durable.
                        std::mem::take(&mut open).abandon("Vigie is stopping and the store cannot commit writes");
                    }
                }
                received = rx.recv_many(&mut items, room), if !closed && room > 0 => {
                    if received == 0 {
                        closed = true;
                    } else {
                        self.metrics.queue_depth.store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        self.apply(&mut open, items.drain(..), &in_flight, Timestamp::now());
                    }
                }
                () = tokio::time::sleep_until(until), if committing.is_none() && gathering.until.is_some() => {
                    gathering.until = None;
                }
            }
        }
        tracing::info!("ingest writer drained and stopped");
    }

    /// Commits a sealed batch, then publishes it. Returns false when it gave
    /// up on the batch (the store failing as Vigie stops).
    async fn process(&self, mut prepared: Prepared, stop: &CancellationToken) -> bool {
        let audit = std::mem::take(&mut prepared.audit);
        // Records go with the batch when the trail is in the same store,
        // else after it.
        let (mut in_batch, after) = match &self.audit {
            AuditTrail::InBatch(_) => (audit, Vec::new()),
            AuditTrail::Apart(_) => (Vec::new(), audit),
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.commit(&mut prepared.batch, std::mem::take(&mut in_batch)).await {
                Ok(()) => {
                    self.metrics.observe_commit(started.elapsed().as_secs_f64());
                    break;
                }
                Err((e, unrecorded)) => {
                    in_batch = unrecorded;
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
                        return false;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let AuditTrail::Apart(trail) = &self.audit
            && !after.is_empty()
            && let Err(e) = trail.record_all(after).await
        {
            // The changes are durable; their writers must not be told all is well.
            for (_, outcome) in &mut prepared.replies {
                *outcome = Err(WriteError::Unavailable(format!(
                    "the write was made but its audit record was not: {e}"
                )));
            }
        }
        let points = prepared.batch.history.len() as u64;
        self.twin.commit(prepared.changes.into_iter().map(|c| (c.id, c.after)));
        for observer in &self.observers {
            observer.committed(&prepared.batch);
        }
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
        true
    }

    /// Commits a batch, with its audit records when the trail is in the
    /// same store. On failure, gives the records' events back for a retry.
    async fn commit(
        &self,
        batch: &mut WriteBatch,
        audit: Vec<AuditEvent>,
    ) -> Result<(), (StoreError, Vec<AuditEvent>)> {
        let trail = match &self.audit {
            AuditTrail::InBatch(trail) if !audit.is_empty() => trail,
            _ => return self.store.write(batch).await.map_err(|e| (e, audit)),
        };
        trail
            .append_with(audit, async |records: &mut Vec<AuditRecord>| {
                std::mem::swap(&mut batch.audit, records);
                let written = self.store.write(batch).await;
                std::mem::swap(&mut batch.audit, records);
                written
            })
            .await
            .map(|_| ())
    }

    /// Applies items to the open batch `p`, on top of the batch in flight.
    fn apply(&self, p: &mut Prepared, items: impl Iterator<Item = Work>, in_flight: &InFlight, now: Timestamp) {
        let mut ws = WorkingSet {
            twin: &self.twin,
            in_flight,
            touched: &mut p.touched,
        };
        for item in items {
            p.items += 1;
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
                Work::Write { op, reply, audit } => {
                    inc(&self.metrics.http_writes, 1);
                    let target = op.target().cloned();
                    let before = target.as_ref().and_then(|id| ws.get(id));
                    let outcome = apply_write(&mut ws, op, now, &mut p.batch.history);
                    if let Some(note) = audit {
                        let after = target.as_ref().and_then(|id| ws.get(id));
                        p.audit.push(note(Audited {
                            result: &outcome,
                            before: before.as_deref(),
                            after: after.as_deref(),
                        }));
                    }
                    p.replies.push((reply, outcome));
                }
            }
        }
    }

    /// Turns the touched entities into the batch's changes and rows, and
    /// lets the observers add theirs.
    fn seal(&self, mut p: Prepared, now: Timestamp) -> Prepared {
        for (id, (before, after)) in std::mem::take(&mut p.touched) {
            // Deleting an entity created in the same batch changes nothing.
            if before.is_none() && after.is_none() {
                continue;
            }
            match &after {
                Some(e) => p.batch.upserts.push(Arc::clone(e)),
                None => p.batch.deletes.push(id.clone()),
            }
            p.changes.push(Change { id, before, after });
        }
        for observer in &self.observers {
            observer.prepare(&p.changes, now, &mut p.batch);
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
        // First message of a provisioned device: its entity appears, as with the IoT Agent.
        let template = || {
            Entity::new(
                device.entity_name.clone(),
                device.entity_type.clone(),
                device.scope.clone(),
            )
        };
        observe(ws, &device.entity_name, template, observations, now, history);
    }
}

/// Applies observations to an entity (created from `template` when it does
/// not exist yet): each goes to history, and becomes the entity's state when
/// newer than what it holds. Returns whether the entity was created.
fn observe(
    ws: &mut WorkingSet<'_>,
    id: &EntityId,
    template: impl FnOnce() -> Entity,
    observations: Vec<Observation>,
    now: Timestamp,
    history: &mut Vec<HistoryPoint>,
) -> bool {
    let (mut entity, created) = match ws.get(id) {
        Some(e) => (Entity::clone(&e), false),
        None => {
            let mut e = template();
            e.created_at = Some(now);
            (e, true)
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
    created
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
                        (BatchKind::Create | BatchKind::UpsertReplace | BatchKind::UpsertUpdate, None) => {
                            create(ws, e, now, history).map(|()| true)
                        }
                        (BatchKind::Create, Some(_)) => Err(WriteError::AlreadyExists(id.clone())),
                        (BatchKind::UpsertReplace, Some(old)) => {
                            let mut e = e;
                            e.created_at = old.created_at;
                            e.modified_at = Some(now);
                            history_of(&e, e.attributes.keys().cloned(), now, history);
                            ws.put(e);
                            Ok(false)
                        }
                        (BatchKind::Update { .. } | BatchKind::Merge, None) => Err(WriteError::NotFound(id.clone())),
                        (BatchKind::UpsertUpdate, Some(old)) => {
                            update_entity(ws, &old, e, true, now, history).map(|_| false)
                        }
                        (BatchKind::Update { overwrite }, Some(old)) => {
                            update_entity(ws, &old, e, overwrite, now, history).map(|_| false)
                        }
                        (BatchKind::Merge, Some(old)) => {
                            let mut merged = Entity::clone(&old);
                            merge(&mut merged, &e)
                                .and_then(|edited| commit_edit(ws, merged, edited, now, history))
                                .map(|_| false)
                        }
                    };
                    (id, result)
                })
                .collect();
            Ok(WriteOutcome::Batch(results))
        }
        WriteOp::Delete(id) => {
            ws.get(&id).ok_or_else(|| WriteError::NotFound(id.clone()))?;
            ws.set(id, None);
            Ok(WriteOutcome::Done)
        }
        WriteOp::Observe {
            entity,
            observations,
            create,
        } => {
            let id = entity.id.clone();
            if !create && ws.get(&id).is_none() {
                return Err(WriteError::NotFound(id));
            }
            let created = observe(ws, &id, || entity, observations, now, history);
            Ok(if created {
                WriteOutcome::Created
            } else {
                WriteOutcome::Done
            })
        }
        WriteOp::BatchDelete(ids) => {
            let results = ids
                .into_iter()
                .map(|id| match ws.get(&id) {
                    Some(_) => {
                        ws.set(id.clone(), None);
                        (id, Ok(false))
                    }
                    None => (id.clone(), Err(WriteError::NotFound(id))),
                })
                .collect();
            Ok(WriteOutcome::Batch(results))
        }
        WriteOp::Edit { id, edit } => {
            let old = ws.get(&id).ok_or(WriteError::NotFound(id))?;
            let mut e = Entity::clone(&old);
            let edited = edit(&mut e)?;
            commit_edit(ws, e, edited, now, history)
        }
    }
}

/// Adds the attributes of `fragment` to `old` (replacing existing ones unless
/// `overwrite` is false), and its scope when it has one.
fn update_entity(
    ws: &mut WorkingSet<'_>,
    old: &Entity,
    fragment: Entity,
    overwrite: bool,
    now: Timestamp,
    history: &mut Vec<HistoryPoint>,
) -> Result<WriteOutcome, WriteError> {
    let mut e = old.clone();
    let mut edited = Edited::default();
    for (name, attr) in fragment.attributes {
        if !overwrite && e.attributes.contains_key(&name) {
            edited
                .not_updated
                .push((name, "the attribute exists and noOverwrite was asked".to_owned()));
        } else {
            e.attributes.insert(name.clone(), attr);
            edited.updated.push(name);
        }
    }
    if fragment.scope.is_some() {
        e.scope = fragment.scope;
    }
    commit_edit(ws, e, edited, now, history)
}

/// NGSI-LD merge (5.6.17) of a batch item into an entity.
fn merge(e: &mut Entity, fragment: &Entity) -> Result<Edited, WriteError> {
    let changes = vigie_core::ngsi::merge_entity(e, &fragment.to_normalized(false), &Default::default())
        .map_err(|err| WriteError::from_update(&e.id, err))?;
    Ok(changes.into())
}

impl From<vigie_core::ngsi::Changes> for Edited {
    fn from(c: vigie_core::ngsi::Changes) -> Self {
        let mut updated = c.updated;
        updated.extend(c.deleted);
        Self {
            updated,
            not_updated: Vec::new(),
        }
    }
}

impl WriteError {
    /// A core update rule's refusal, for the entity `id`.
    pub fn from_update(id: &EntityId, e: vigie_core::ngsi::UpdateError) -> Self {
        use vigie_core::ngsi::UpdateError;
        match e {
            UpdateError::NoSuchAttribute { .. } => Self::AttributeNotFound {
                id: id.clone(),
                attribute: e.to_string(),
            },
            UpdateError::BadData(_) => Self::Invalid(e.to_string()),
            UpdateError::NotSupported(_) => Self::NotSupported(e.to_string()),
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

/// Puts an edited entity in the batch when anything changed, with history
/// for what was written; 207-style outcome when some attributes were not.
fn commit_edit(
    ws: &mut WorkingSet<'_>,
    mut e: Entity,
    Edited { updated, not_updated }: Edited,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_smaller_than_the_last_waits_briefly_for_its_stragglers() {
        let mut g = Gathering::default();
        assert!(g.ready(1), "nothing sent yet: no reason to wait");

        g.started(32);
        tokio::time::sleep(Duration::from_millis(6)).await;
        g.finished(5);
        assert!(!g.ready(5), "5 writers back of the last 32: wait for the others");
        assert!(g.ready(32), "as many as the last batch: no more to wait for");
        let until = g.until.expect("a deadline");
        let longest = tokio::time::Instant::now() + Gathering::MAX_WAIT;
        assert!(until <= longest, "never longer than {:?}", Gathering::MAX_WAIT);

        g.started(5);
        g.finished(40);
        assert!(g.until.is_none(), "more waiting than the last batch: go at once");
        assert!(g.ready(40));
    }
}
