//! NGSI-LD subscriptions: which changes notify whom, delivered at least once.
//!
//! ```text
//! writer batch ──▶ prepare: match every change against every subscription,
//!                  render the entity, queue a PendingNotification in the batch
//!              ──▶ store commit (changes and notifications, one transaction)
//!              ──▶ committed: hand the notifications to their subscription's worker
//! worker (one per subscription) ──▶ endpoint (HTTP or MQTT), in order, with retries
//!                               ──▶ delete what was delivered
//! ```
//!
//! A notification exists on disk from the moment its change does, and goes
//! only once its endpoint has taken it: a crash, a restart or a dead endpoint
//! delays notifications but never loses them. Each subscription has its own
//! worker, so one slow endpoint never holds up the others.

mod delivery;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigie_core::Timestamp;
use vigie_core::access::Principal;
use vigie_core::ngsi::Subscription;
use vigie_core::ngsi::subscription::{Change, Verdict};
use vigie_store::{PendingNotification, Store, StoreError, SubscriptionRecord, WriteBatch};

use crate::ingest::{self, ChangeObserver};
use crate::outbound::HttpClient;
use crate::security::Security;
use crate::twin::Twin;

pub use delivery::DeliveryOptions;

/// How long shutdown waits for the delivery workers' last writes.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One subscription and the worker delivering its notifications.
struct Entry {
    record: RwLock<SubscriptionRecord>,
    worker: delivery::WorkerHandle,
    /// Where periodic notifications read entities, and whose sight limits them.
    twin: Arc<Twin>,
    security: Arc<Security>,
}

impl Entry {
    fn subscription(&self) -> Subscription {
        self.read().subscription.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SubscriptionRecord> {
        self.record.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A tenant's subscriptions.
pub struct Subscriptions {
    store: Arc<dyn Store>,
    twin: Arc<Twin>,
    security: Arc<Security>,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    /// The last sequence number given to a queued notification.
    seq: AtomicU64,
    /// When each subscription last queued a notification (for `throttling`);
    /// only the writer touches it.
    last_queued: Mutex<HashMap<String, Timestamp>>,
    sender: Arc<delivery::Sender>,
    outbox: Arc<delivery::Outbox>,
    options: DeliveryOptions,
    stop: CancellationToken,
    /// The delivery workers and the outbox's deleter, awaited at shutdown.
    tasks: TaskTracker,
}

impl Subscriptions {
    /// Loads the tenant's subscriptions and starts their workers, which
    /// first deliver what a previous run left pending.
    pub async fn load(
        store: Arc<dyn Store>,
        twin: Arc<Twin>,
        security: Arc<Security>,
        http: Arc<HttpClient>,
        options: DeliveryOptions,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let records = store.subscriptions().await?;
        let seq = store.last_notification_seq().await?;
        let outbox = Arc::new(delivery::Outbox::default());
        let tasks = TaskTracker::new();
        tasks.spawn(Arc::clone(&outbox).run(Arc::clone(&store), stop.clone()));
        let this = Arc::new(Self {
            store,
            twin,
            security,
            entries: RwLock::new(BTreeMap::new()),
            seq: AtomicU64::new(seq),
            last_queued: Mutex::new(HashMap::new()),
            sender: Arc::new(delivery::Sender::new(http)),
            outbox,
            options,
            stop,
            tasks,
        });
        let pending = this.store.count_pending_notifications().await?;
        for record in records {
            this.start(record, true);
        }
        tracing::info!(subscriptions = this.len(), pending, "subscriptions loaded");
        Ok(this)
    }

    fn start(self: &Arc<Self>, record: SubscriptionRecord, resume: bool) {
        let id = record.subscription.id().to_string();
        let entry = Arc::new(Entry {
            record: RwLock::new(record),
            worker: delivery::WorkerHandle::new(&self.options, resume, self.stop.child_token()),
            twin: Arc::clone(&self.twin),
            security: Arc::clone(&self.security),
        });
        delivery::start(
            &entry,
            Arc::clone(&self.store),
            Arc::clone(&self.outbox),
            Arc::clone(&self.sender),
            self.options.clone(),
            &self.tasks,
        );
        let old = self
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, entry);
        if let Some(old) = old {
            old.worker.stop();
        }
    }

    /// Once Vigie's stop token is cancelled: waits for the delivery workers
    /// and the outbox's deleter to end, so that their last writes (delivery
    /// counters, deletions of what was delivered) land before the process
    /// exits. Bounded: a store that does not answer does not hold the exit.
    pub async fn stopped(&self) {
        self.tasks.close();
        if tokio::time::timeout(STOP_WAIT, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = self.tasks.len(),
                "subscription workers still busy at shutdown; their last counters may be lost"
            );
        }
        // What workers delivered after the deleter's last round.
        self.outbox.flush(&*self.store).await;
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The subscriptions `visible` lets the caller see, in id order.
    pub fn list(&self, visible: impl Fn(&SubscriptionRecord) -> bool) -> Vec<SubscriptionRecord> {
        let entries: Vec<Arc<Entry>> = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        entries
            .iter()
            .map(|e| e.read().clone())
            .filter(|r| visible(r))
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<SubscriptionRecord> {
        self.entry(id).map(|e| e.read().clone())
    }

    /// Stores a new or changed subscription and (re)starts its worker.
    pub async fn put(self: &Arc<Self>, record: SubscriptionRecord) -> Result<(), StoreError> {
        self.store.put_subscription(&record).await?;
        let id = record.subscription.id().to_string();
        match self.entry(&id) {
            // An update keeps the worker and its queue; only the definition changes.
            Some(entry) => {
                *entry.record.write().unwrap_or_else(PoisonError::into_inner) = record;
                entry.worker.wake();
            }
            None => self.start(record, false),
        }
        Ok(())
    }

    /// Deletes a subscription with its undelivered notifications.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.entries.write().unwrap_or_else(PoisonError::into_inner).remove(id);
        if let Some(entry) = &removed {
            entry.worker.stop();
        }
        let stored = self.store.delete_subscription(id).await?;
        Ok(removed.is_some() || stored)
    }

    /// Notifications waiting for delivery, across subscriptions.
    pub async fn pending(&self) -> Result<u64, StoreError> {
        self.store.count_pending_notifications().await
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether the owner may see the entity a change is about.
    fn owner_sees(&self, owner: &Principal, change: &Change<'_>) -> bool {
        self.security.sees(owner, change.subject().scope.as_ref())
    }
}

impl ChangeObserver for Subscriptions {
    fn prepare(&self, changes: &[ingest::Change], now: Timestamp, batch: &mut WriteBatch) {
        let entries: Vec<Arc<Entry>> = {
            let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if map.is_empty() {
                return;
            }
            map.values().cloned().collect()
        };
        let records: Vec<std::sync::RwLockReadGuard<'_, SubscriptionRecord>> =
            entries.iter().map(|e| e.read()).collect();
        let mut last_queued = self.last_queued.lock().unwrap_or_else(PoisonError::into_inner);
        for c in changes {
            let Some(change) = Change::new(c.before.as_deref(), c.after.as_deref()) else {
                continue;
            };
            for record in &records {
                let sub = &record.subscription;
                if !matches!(sub.evaluate(&change, now), Verdict::Fire(_)) {
                    continue;
                }
                let id = sub.id().as_str();
                if !sub.throttle_allows(last_queued.get(id).copied(), now) || !self.owner_sees(&record.owner, &change) {
                    continue;
                }
                last_queued.insert(id.to_owned(), now);
                batch.notifications.push(PendingNotification {
                    seq: self.next_seq(),
                    subscription_id: id.to_owned(),
                    created_at: now,
                    data: sub.render_change(&change, now),
                });
            }
        }
    }

    fn committed(&self, batch: &WriteBatch) {
        if batch.notifications.is_empty() {
            return;
        }
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        for n in &batch.notifications {
            if let Some(entry) = entries.get(&n.subscription_id) {
                entry.worker.push(n.clone());
            }
        }
    }
}
