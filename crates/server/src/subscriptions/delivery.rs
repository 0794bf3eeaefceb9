//! Delivery: one worker per subscription takes its notifications in order
//! (from memory when it keeps up, from the store's outbox when it fell behind
//! or after a restart), sends them to the endpoint, retries with backoff,
//! and deletes what was delivered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{self, header};
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigie_core::ngsi::Subscription;
use vigie_core::ngsi::subscription::{MqttTarget, Target};
use vigie_core::{EntityId, Timestamp};
use vigie_store::{PendingNotification, Store};

use super::Entry;
use crate::outbound::HttpClient;

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Most entities in one notification (pending ones are sent together).
    pub batch_max: usize,
    /// Notifications a subscription keeps in memory; beyond, its worker
    /// reads them back from the outbox.
    pub memory_queue: usize,
    /// First wait after a failed delivery, doubled up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How often a subscription's delivery counters are written back.
    pub persist_every: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            batch_max: 100,
            memory_queue: 10_000,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            persist_every: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct QueueState {
    memory: VecDeque<PendingNotification>,
    /// Notifications left out of `memory` (it was full): the outbox has them.
    dropped: u64,
    /// Whether the worker must read the outbox before trusting `memory`.
    from_store: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

/// The subscription's side of its worker.
pub(super) struct WorkerHandle {
    queue: Arc<Queue>,
    stop: CancellationToken,
    memory_cap: usize,
}

impl WorkerHandle {
    /// The handle of a worker not started yet ([`start`] starts it);
    /// `resume`: the worker first reads what the outbox holds for its
    /// subscription.
    pub(super) fn new(options: &DeliveryOptions, resume: bool, stop: CancellationToken) -> Self {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                from_store: resume,
                ..Default::default()
            }),
            notify: Notify::new(),
        });
        Self {
            queue,
            stop,
            memory_cap: options.memory_queue.max(1),
        }
    }

    pub(super) fn push(&self, n: PendingNotification) {
        let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.memory.len() >= self.memory_cap {
            state.dropped += 1;
            state.from_store = true;
        } else {
            state.memory.push_back(n);
        }
        drop(state);
        self.queue.notify.notify_one();
    }

    /// Wakes the worker: its subscription changed (e.g. reactivated).
    pub(super) fn wake(&self) {
        self.queue.notify.notify_one();
    }

    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

/// Deletes delivered notifications from the outbox, every subscription's
/// together, once per [`Outbox::EVERY`]: one write where there was one per
/// delivery, queued beside the writer's commits. What a crash keeps from
/// being deleted is sent again after the restart (delivery is at least once).
#[derive(Default)]
pub(super) struct Outbox {
    delivered: Mutex<Vec<u64>>,
}

impl Outbox {
    const EVERY: Duration = Duration::from_millis(100);

    fn delivered(&self, seqs: &[u64]) {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(seqs);
    }

    /// Deletes what was delivered until `stop`, then once more.
    pub(super) async fn run(self: Arc<Self>, store: Arc<dyn Store>, stop: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(Self::EVERY) => false,
                () = stop.cancelled() => true,
            };
            self.flush(&*store).await;
            if stopping {
                break;
            }
        }
    }

    /// Deletes what was delivered since the last time.
    pub(super) async fn flush(&self, store: &dyn Store) {
        let seqs = std::mem::take(&mut *self.delivered.lock().unwrap_or_else(PoisonError::into_inner));
        if !seqs.is_empty()
            && let Err(e) = store.delete_notifications(&seqs).await
        {
            // Delivered but still in the outbox: sent again after a restart (at least once).
            tracing::warn!(notifications = seqs.len(), error = %e, "cannot delete delivered notifications");
        }
    }
}

/// Starts the delivery worker of `entry` (its handle is `entry.worker`).
/// It takes the finished entry: a worker that found no entry to upgrade to
/// would take the subscription for deleted and stop, never to deliver.
pub(super) fn start(
    entry: &Arc<Entry>,
    store: Arc<dyn Store>,
    outbox: Arc<Outbox>,
    sender: Arc<Sender>,
    options: DeliveryOptions,
    tasks: &TaskTracker,
) {
    let worker = Worker {
        entry: Arc::downgrade(entry),
        store,
        outbox,
        sender,
        options,
        queue: Arc::clone(&entry.worker.queue),
        stop: entry.worker.stop.clone(),
        cursor: 0,
        last_persist: Instant::now(),
        dirty: false,
    };
    tasks.spawn(worker.run());
}

struct Worker {
    entry: Weak<Entry>,
    store: Arc<dyn Store>,
    outbox: Arc<Outbox>,
    sender: Arc<Sender>,
    options: DeliveryOptions,
    queue: Arc<Queue>,
    stop: CancellationToken,
    /// The highest sequence number delivered: anything at or below is done.
    cursor: u64,
    last_persist: Instant,
    /// Delivery counters changed since they were last written back.
    dirty: bool,
}

impl Worker {
    async fn run(mut self) {
        let mut last_periodic: Option<Timestamp> = None;
        while !self.stop.is_cancelled() {
            let Some(entry) = self.entry.upgrade() else { break };
            let sub = entry.subscription();
            let id = sub.id().to_string();
            drop(entry);
            let batch = match self.next_batch(&id).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(subscription = %id, error = %e, "cannot read pending notifications; retrying");
                    self.pause(self.options.retry_initial).await;
                    continue;
                }
            };
            if !batch.is_empty() {
                self.deliver(&id, batch).await;
                continue;
            }
            // Nothing pending: a periodic subscription may be due.
            if let Some(next) = sub.next_due(last_periodic, Timestamp::now()) {
                let now = Timestamp::now();
                if sub.due(now, last_periodic) {
                    last_periodic = Some(now);
                    self.periodic(&sub).await;
                    continue;
                }
                let wait = next.duration_since(now).unsigned_abs();
                self.pause(wait.min(Duration::from_secs(3600))).await;
                continue;
            }
            self.persist_if_due(false).await;
            tokio::select! {
                () = self.queue.notify.notified() => {}
                () = self.stop.cancelled() => {}
                () = tokio::time::sleep(self.options.persist_every) => {}
            }
        }
        self.persist_if_due(true).await;
    }

    /// The next notifications to send, oldest first.
    async fn next_batch(&mut self, id: &str) -> Result<Vec<PendingNotification>, vigie_store::StoreError> {
        let max = self.options.batch_max.max(1);
        let (from_store, dropped) = {
            let state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            (state.from_store, state.dropped)
        };
        if from_store {
            let rows = self.store.pending_notifications(id, self.cursor, max).await?;
            if rows.len() < max {
                let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
                // The outbox is drained unless more were left out meanwhile.
                if state.dropped == dropped {
                    state.from_store = false;
                }
            }
            return Ok(rows);
        }
        let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = Vec::new();
        while batch.len() < max {
            match state.memory.pop_front() {
                Some(n) if n.seq > self.cursor => batch.push(n),
                Some(_) => {}
                None => break,
            }
        }
        Ok(batch)
    }

    /// Sends one batch until it is delivered (or the subscription goes).
    async fn deliver(&mut self, id: &str, batch: Vec<PendingNotification>) {
        let seqs: Vec<u64> = batch.iter().map(|n| n.seq).collect();
        let data: Vec<Value> = batch.into_iter().map(|n| n.data).collect();
        let mut backoff = self.options.retry_initial;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let Some(entry) = self.entry.upgrade() else { return };
            let sub = entry.subscription();
            drop(entry);
            if !sub.is_active() {
                // Paused: keep everything pending until it is reactivated.
                self.pause(self.options.retry_max).await;
                continue;
            }
            let now = Timestamp::now();
            // Vigie stopping cuts a send short: the batch stays in the
            // outbox and goes again after the restart (at least once).
            let result = tokio::select! {
                result = self.sender.send(&sub, seqs.first().copied().unwrap_or(0), now, data.clone()) => result,
                () = self.stop.cancelled() => return,
            };
            self.record(result.is_ok(), now);
            match result {
                Ok(()) => {
                    self.outbox.delivered(&seqs);
                    self.cursor = seqs.iter().copied().max().unwrap_or(self.cursor).max(self.cursor);
                    return;
                }
                Err(e) => {
                    tracing::warn!(subscription = %id, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "notification not delivered");
                    // New notifications do not cut a backoff short: only Vigie stopping does.
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(self.options.retry_max);
                }
            }
        }
    }

    /// A `timeInterval` subscription's round: every entity it selects, now.
    async fn periodic(&mut self, sub: &Subscription) {
        let Some(entry) = self.entry.upgrade() else { return };
        let data = {
            let twin = Arc::clone(&entry.twin);
            let owner = entry.read().owner.clone();
            let security = Arc::clone(&entry.security);
            let selects = |e: &vigie_core::Entity| sub.selects(e) && security.sees(&owner, e.scope.as_ref());
            twin.select(
                crate::twin::Candidates::All,
                &selects,
                0,
                self.options.batch_max.max(1) * 10,
                false,
            )
            .entities
            .iter()
            .map(|e| sub.render_entity(e))
            .collect::<Vec<_>>()
        };
        drop(entry);
        if data.is_empty() {
            return;
        }
        let now = Timestamp::now();
        let result = tokio::select! {
            result = self.sender.send(sub, now.as_millisecond().unsigned_abs(), now, data) => result,
            () = self.stop.cancelled() => return,
        };
        if let Err(e) = &result {
            tracing::warn!(subscription = %sub.id(), error = %e, "periodic notification not delivered");
        }
        self.record(result.is_ok(), now);
    }

    fn record(&mut self, ok: bool, at: Timestamp) {
        let Some(entry) = self.entry.upgrade() else { return };
        let mut record = entry.record.write().unwrap_or_else(PoisonError::into_inner);
        if ok {
            record.subscription.record_success(at);
        } else {
            record.subscription.record_failure(at);
        }
        self.dirty = true;
    }

    /// Writes the delivery counters back, at most every `persist_every`
    /// (or now, when stopping).
    async fn persist_if_due(&mut self, force: bool) {
        if !self.dirty || (!force && self.last_persist.elapsed() < self.options.persist_every) {
            return;
        }
        let Some(entry) = self.entry.upgrade() else { return };
        // A deleted subscription's worker is stopped: never write it back.
        if self.stop.is_cancelled() && !force {
            return;
        }
        let record = entry.read().clone();
        drop(entry);
        if let Err(e) = self.store.put_subscription(&record).await {
            tracing::warn!(subscription = %record.subscription.id(), error = %e, "cannot save delivery counters");
            return;
        }
        self.dirty = false;
        self.last_persist = Instant::now();
    }

    /// Waits `d`, or less when the subscription changes or Vigie stops.
    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = self.queue.notify.notified() => {}
            () = self.stop.cancelled() => {}
        }
    }
}

/// Sends notifications over HTTP or MQTT.
pub(super) struct Sender {
    http: Arc<HttpClient>,
    mqtt: tokio::sync::Mutex<HashMap<String, Arc<MqttLink>>>,
    /// Numbers each broker connection's client id.
    links_made: std::sync::atomic::AtomicU64,
}

impl Sender {
    pub(super) fn new(http: Arc<HttpClient>) -> Self {
        Self {
            http,
            mqtt: tokio::sync::Mutex::new(HashMap::new()),
            links_made: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) async fn send(
        &self,
        sub: &Subscription,
        seq: u64,
        now: Timestamp,
        data: Vec<Value>,
    ) -> Result<(), String> {
        // Unique per subscription: the sequence number of its first entity.
        let id = EntityId::new(format!("urn:ngsi-ld:Notification:{seq}")).map_err(|e| e.to_string())?;
        let notification = sub.notification(&id, now, data);
        match sub.endpoint().target() {
            Target::Http { .. } => self.post(sub, &notification).await,
            Target::Mqtt(target) => {
                let message = sub
                    .mqtt_message(notification)
                    .ok_or_else(|| "the endpoint is not an MQTT one".to_owned())?;
                let link = self.link(target).await?;
                let payload = serde_json::to_vec(&message.payload).map_err(|e| e.to_string())?;
                let result = link.publish(&message.topic, message.qos, payload).await;
                if result.is_err() {
                    // The next attempt reconnects.
                    self.mqtt.lock().await.remove(&link_key(target));
                }
                result
            }
        }
    }

    async fn post(&self, sub: &Subscription, notification: &Value) -> Result<(), String> {
        let uri = sub.endpoint().uri();
        let mut req = http::Request::post(uri);
        for (name, value) in sub.notification_headers() {
            req = req.header(name, value);
        }
        let body = serde_json::to_vec(notification).map_err(|e| e.to_string())?;
        let req = req
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{uri}: {e}"))?;
        let (status, _, _) = self.http.send(req, uri).await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{uri} answered {status}"))
        }
    }

    async fn link(&self, target: &MqttTarget) -> Result<Arc<MqttLink>, String> {
        if target.tls {
            return Err("mqtts:// notification endpoints are not supported yet; use mqtt://".into());
        }
        let key = link_key(target);
        let mut links = self.mqtt.lock().await;
        if let Some(link) = links.get(&key) {
            return Ok(Arc::clone(link));
        }
        let n = self.links_made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let link = Arc::new(MqttLink::connect(target, n));
        links.insert(key, Arc::clone(&link));
        Ok(link)
    }
}

fn link_key(t: &MqttTarget) -> String {
    format!("{}:{}:{}", t.host, t.port, t.username.as_deref().unwrap_or(""))
}

/// A connection to an MQTT broker for notifications (MQTT 3.1.1). One
/// publish at a time, each waiting for its acknowledgement at QoS 1 and 2,
/// so a notification counts as delivered only once the broker has it.
struct MqttLink {
    client: rumqttc::AsyncClient,
    acks: tokio::sync::Mutex<mpsc::Receiver<Result<(), String>>>,
    stop: CancellationToken,
}

impl MqttLink {
    fn connect(t: &MqttTarget, n: u64) -> Self {
        // One id per connection: two with the same id would take turns disconnecting each other.
        let client_id = format!("vigie-notifier-{}-{n}", std::process::id());
        let mut options = rumqttc::MqttOptions::new(client_id, t.host.clone(), t.port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some(user) = &t.username {
            options.set_credentials(user.clone(), t.password.clone().unwrap_or_default());
        }
        let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.poll() => e,
                    () = stopped.cancelled() => break,
                };
                let ack = match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_) | rumqttc::Packet::PubComp(_))) => Ok(()),
                    Ok(_) => continue,
                    Err(e) => Err(format!("MQTT: {e}")),
                };
                let failed = ack.is_err();
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            client,
            acks: tokio::sync::Mutex::new(rx),
            stop,
        }
    }

    async fn publish(&self, topic: &str, qos: u8, payload: Vec<u8>) -> Result<(), String> {
        let qos = match qos {
            0 => rumqttc::QoS::AtMostOnce,
            1 => rumqttc::QoS::AtLeastOnce,
            _ => rumqttc::QoS::ExactlyOnce,
        };
        let mut acks = self.acks.lock().await;
        // A late acknowledgement of an earlier, timed-out publish is not this one's.
        while let Ok(stale) = acks.try_recv() {
            stale?;
        }
        self.client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|e| format!("MQTT publish: {e}"))?;
        if qos == rumqttc::QoS::AtMostOnce {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_secs(10), acks.recv()).await {
            Ok(Some(result)) => result,
            Ok(None) => Err("MQTT connection closed".into()),
            Err(_) => Err("MQTT broker did not acknowledge within 10 s".into()),
        }
    }
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
