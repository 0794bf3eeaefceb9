//! The `Store` trait: everything Vigie keeps durably, independent of the engine.
//!
//! One crate per engine implements it (`vigie-store-sqlite` now, PostgreSQL
//! later); callers hold an `Arc<dyn Store>` picked from the database URL and
//! never see SQL. The server writes through a single batching writer, so the
//! write side is one call, [`Store::write`], that is atomic per batch.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigie_core::access::Principal;
use vigie_core::account::{Account, ApiCredential, Session};
use vigie_core::audit::{AuditRecord, Outcome};
use vigie_core::ngsi::Subscription;
use vigie_core::ngsi::temporal::{AggrMethod, AttributeAggregate, AttributeHistory, Instance, Periods};
use vigie_core::{Device, Entity, EntityId, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, disk full, locked database). Retrying may succeed.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// What was stored cannot be read back as Vigie's model (a bug or a manual edit).
    #[error("corrupt record {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// An audit record that cannot be read back (a manual edit): the
    /// verification reports it as changed.
    #[error("audit record {seq} cannot be read: {reason}")]
    CorruptAudit { seq: u64, reason: String },
    /// An append that does not continue the stored chain (another writer
    /// appended first, or the records are not contiguous).
    #[error("audit trail conflict: {0}")]
    AuditConflict(String),
    /// The URL names no engine this build has.
    #[error("unsupported database URL '{0}': expected sqlite://PATH")]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One historical value of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub entity_id: EntityId,
    pub attribute: String,
    pub observed_at: Timestamp,
    pub value: Value,
    pub unit_code: Option<String>,
}

/// A message that could not be ingested, kept with the reason so an operator
/// can see what a device sent and why it was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub received_at: Timestamp,
    /// Where it came from: `mqtt`, `http`...
    pub source: String,
    /// The MQTT topic or HTTP path.
    pub topic: String,
    /// A short machine-readable reason, e.g. `unknown-device`, `invalid-payload`.
    pub reason: String,
    /// The human-readable explanation.
    pub detail: String,
    /// The payload as received, truncated to a bounded size.
    pub payload: Vec<u8>,
}

/// Everything one batch changes, written atomically: entity states (the whole
/// entity as it now is), deletions, history points and dead letters.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// Shared with the twin, which takes the same states after the commit.
    pub upserts: Vec<Arc<Entity>>,
    pub deletes: Vec<EntityId>,
    pub history: Vec<HistoryPoint>,
    pub dead_letters: Vec<DeadLetter>,
    /// Notifications the changes cause, committed with them.
    pub notifications: Vec<PendingNotification>,
    /// Audit records of the changes, committed with them: they continue
    /// the trail exactly (see [`Store::audit_append`]).
    pub audit: Vec<AuditRecord>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.deletes.is_empty()
            && self.history.is_empty()
            && self.dead_letters.is_empty()
            && self.notifications.is_empty()
            && self.audit.is_empty()
    }
}

/// A subscription as kept: its definition and delivery record, and who
/// created it, whose sight limits what it notifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub subscription: Subscription,
    pub owner: Principal,
}

/// A notification waiting for delivery: committed with the change that
/// caused it, deleted once its endpoint has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingNotification {
    /// Assigned by the caller, increasing: the delivery order.
    pub seq: u64,
    pub subscription_id: String,
    pub created_at: Timestamp,
    /// The entity as the subscription renders it (one item of `data`).
    pub data: Value,
}

/// One version of an automation rule, as saved through the API: versions
/// are never rewritten, so what a past firing's `rule vN` did stays known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRecord {
    pub rule: vigie_core::rules::Rule,
    pub saved_at: Timestamp,
    /// The account or key that saved it.
    pub saved_by: String,
    /// This version retires the rule (its body is the last one in force).
    #[serde(default)]
    pub retired: bool,
}

/// Which history to read: one entity's attribute(s) over a time range.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub entity_id: Option<EntityId>,
    pub attribute: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub limit: usize,
}

/// Which history a temporal request reads: the entities the API layer
/// selected (by type, `q`, scope... against the twin), some or all of their
/// attributes, over a half-open time range of `observedAt`.
#[derive(Debug, Clone, Default)]
pub struct HistorySelection {
    pub entity_ids: Vec<EntityId>,
    /// `None`: every attribute.
    pub attributes: Option<Vec<String>>,
    /// Inclusive.
    pub from: Option<Timestamp>,
    /// Exclusive.
    pub to: Option<Timestamp>,
}

/// One entity's attributes over time, attributes by name, instances oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityHistory {
    pub entity_id: EntityId,
    pub attributes: Vec<AttributeHistory>,
}

/// Where a bounded range read stopped, for the API's 206 and `Content-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Oldest first: every instance up to this instant (included) was
    /// returned, none after it; the next page starts just after it.
    CompleteUntil(Timestamp),
    /// `lastN`, newest first: every instance from this instant (included)
    /// was returned, none before it.
    CompleteFrom(Timestamp),
}

/// The answer of [`Store::history_range`]: entities by id, none without instances.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryRange {
    pub entities: Vec<EntityHistory>,
    /// `None` when everything in range was returned.
    pub truncation: Option<Truncation>,
}

/// One series as an engine read it, oldest first, with at most one instance
/// more than the page holds (so that truncation shows).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRead {
    pub entity_id: EntityId,
    pub attribute: String,
    pub instances: Vec<Instance>,
}

impl HistoryRange {
    /// How many instances an engine reads per series for a page of `limit`:
    /// one more than the page (to see whether there is more), never more than `lastN`.
    pub fn read_per_series(limit: usize, last_n: Option<usize>) -> usize {
        let page = limit.max(1).saturating_add(1);
        last_n.map_or(page, |n| n.min(page))
    }

    /// Cuts every series to `limit` instances, at one common instant so that
    /// the page is complete up to it for every series (or, with `lastN`,
    /// complete from it), and groups the series by entity. Engines read with
    /// [`Self::read_per_series`]; series come in (entity id, attribute) order.
    pub fn assemble(mut series: Vec<SeriesRead>, limit: usize, last_n: Option<usize>) -> Self {
        let limit = limit.max(1);
        let truncation = if last_n.is_some() {
            // The most recent instances: a series cut loses its oldest ones.
            let from = series
                .iter_mut()
                .filter(|s| s.instances.len() > limit)
                .filter_map(|s| {
                    s.instances.drain(..s.instances.len() - limit);
                    s.instances.first().map(|i| i.observed_at)
                })
                .max();
            if let Some(from) = from {
                series
                    .iter_mut()
                    .for_each(|s| s.instances.retain(|i| i.observed_at >= from));
            }
            from.map(Truncation::CompleteFrom)
        } else {
            let until = series
                .iter_mut()
                .filter(|s| s.instances.len() > limit)
                .filter_map(|s| {
                    s.instances.truncate(limit);
                    s.instances.last().map(|i| i.observed_at)
                })
                .min();
            if let Some(until) = until {
                series
                    .iter_mut()
                    .for_each(|s| s.instances.retain(|i| i.observed_at <= until));
            }
            until.map(Truncation::CompleteUntil)
        };
        let mut entities: Vec<EntityHistory> = Vec::new();
        for s in series.into_iter().filter(|s| !s.instances.is_empty()) {
            let attribute = AttributeHistory {
                name: s.attribute,
                instances: s.instances,
            };
            match entities.last_mut() {
                Some(e) if e.entity_id == s.entity_id => e.attributes.push(attribute),
                _ => entities.push(EntityHistory {
                    entity_id: s.entity_id,
                    attributes: vec![attribute],
                }),
            }
        }
        Self { entities, truncation }
    }
}

/// One entity's per-period statistics, attributes by name; only attributes
/// with an instance in some period appear.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityAggregate {
    pub entity_id: EntityId,
    pub attributes: Vec<AttributeAggregate>,
}

/// How long history is kept: a default, and overrides per attribute name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retention {
    pub default_days: u32,
    #[serde(default)]
    pub per_attribute_days: HashMap<String, u32>,
}

/// Which audit records to read. Every filter is optional; `limit` bounds the page.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// From this time, inclusive.
    pub from: Option<Timestamp>,
    /// Until this time, exclusive.
    pub to: Option<Timestamp>,
    pub actor: Option<String>,
    /// An exact action (`entity.update`), or a prefix ending in `*` (`entity.*`).
    pub action: Option<String>,
    /// Targets starting with this (an entity id, or `urn:ngsi-ld:Vehicle:`).
    pub target_prefix: Option<String>,
    pub outcome: Option<Outcome>,
    /// Only records after this sequence number (keyset paging for exports).
    pub after_seq: Option<u64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    pub limit: usize,
    pub offset: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema. Idempotent.
    async fn migrate(&self) -> Result<()>;

    /// Writes a batch atomically: all of it is durable when this returns Ok, none of it otherwise.
    async fn write(&self, batch: &WriteBatch) -> Result<()>;

    /// Entities in id order, after `after` (exclusive), at most `limit`: the
    /// server loads the twin page by page at startup.
    async fn entities_page(&self, after: Option<&EntityId>, limit: usize) -> Result<Vec<Entity>>;

    async fn count_entities(&self) -> Result<u64>;

    /// History points, oldest first.
    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryPoint>>;

    async fn count_history(&self) -> Result<u64>;

    /// The temporal API's instances: per entity and attribute, those in the
    /// selection's range, oldest first; with `last_n`, only the N most recent
    /// of each series (still oldest first). At most `limit` (≥ 1) per series:
    /// beyond, the page is cut at a common instant, see [`HistoryRange::assemble`].
    async fn history_range(
        &self,
        selection: &HistorySelection,
        last_n: Option<usize>,
        limit: usize,
    ) -> Result<HistoryRange>;

    /// The first and last instants in the selection, `None` if it holds
    /// nothing: what closes an open range before aggregating.
    async fn history_extent(&self, selection: &HistorySelection) -> Result<Option<(Timestamp, Timestamp)>>;

    /// Per entity and attribute, the statistics of each period of `periods`
    /// (instances also within the selection's range), computed by the engine
    /// as [`vigie_core::ngsi::temporal::aggregate`] would. `methods` says what
    /// is wanted: `distinct_count` is `None` unless `distinctCount` is in it.
    async fn history_aggregate(
        &self,
        selection: &HistorySelection,
        periods: &Periods,
        methods: &[AggrMethod],
    ) -> Result<Vec<EntityAggregate>>;

    /// Deletes history older than the retention allows; returns how many points went.
    async fn prune_history(&self, now: Timestamp, retention: &Retention) -> Result<u64>;

    /// Creates or replaces devices, all in one transaction.
    async fn put_devices(&self, devices: &[Device]) -> Result<()>;
    /// Returns whether the device existed.
    async fn delete_device(&self, device_id: &str) -> Result<bool>;
    async fn devices(&self) -> Result<Vec<Device>>;

    /// The newest dead letters first.
    async fn dead_letters(&self, limit: usize, offset: usize) -> Result<Vec<DeadLetter>>;
    async fn count_dead_letters(&self) -> Result<u64>;

    /// Creates or replaces an account.
    async fn put_account(&self, account: &Account) -> Result<()>;
    async fn account(&self, name: &str) -> Result<Option<Account>>;
    /// Every account, by name.
    async fn accounts(&self) -> Result<Vec<Account>>;
    /// Removes an account and its sessions; returns whether it existed.
    async fn delete_account(&self, name: &str) -> Result<bool>;

    /// Creates or replaces an API key or service token.
    async fn put_api_credential(&self, credential: &ApiCredential) -> Result<()>;
    /// Every API credential, revoked ones included (they are kept for the record), by id.
    async fn api_credentials(&self) -> Result<Vec<ApiCredential>>;

    /// Creates or replaces a console session.
    async fn put_session(&self, session: &Session) -> Result<()>;
    async fn session(&self, token_hash: &str) -> Result<Option<Session>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Ends every session of an account (password change, disabling); returns how many.
    async fn delete_sessions_of(&self, account: &str) -> Result<u64>;
    /// Deletes sessions past their absolute end; returns how many.
    async fn prune_sessions(&self, now: Timestamp) -> Result<u64>;
    /// Appends audit records atomically. They must continue the stored chain:
    /// the first one's `seq` is one more than the last stored, the others
    /// follow without gap; otherwise [`StoreError::AuditConflict`] and nothing
    /// is written. There is deliberately no way to change or remove a record.
    async fn audit_append(&self, records: &[AuditRecord]) -> Result<()>;
    /// The record with the highest `seq`.
    async fn audit_head(&self) -> Result<Option<AuditRecord>>;
    async fn audit_get(&self, seq: u64) -> Result<Option<AuditRecord>>;
    /// Records with `seq > after_seq`, in `seq` order, at most `limit`: the
    /// verification and the export walk the trail page by page.
    async fn audit_after(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Records matching the query, in `seq` order (or reversed), paged.
    async fn audit_query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
    /// How many records match the query's filters (ignoring limit and offset).
    async fn audit_count(&self, query: &AuditQuery) -> Result<u64>;

    // NGSI-LD subscriptions and their notifications' outbox.
    async fn put_subscription(&self, record: &SubscriptionRecord) -> Result<()>;
    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>>;
    /// Deletes a subscription and its undelivered notifications.
    async fn delete_subscription(&self, id: &str) -> Result<bool>;
    /// Queues notifications outside a write batch (periodic subscriptions).
    async fn put_notifications(&self, notifications: &[PendingNotification]) -> Result<()>;
    /// A subscription's undelivered notifications after `after_seq`, in order.
    async fn pending_notifications(
        &self,
        subscription_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<PendingNotification>>;
    async fn delete_notifications(&self, seqs: &[u64]) -> Result<()>;
    /// The highest sequence number ever queued (0 when none), so new ones continue it.
    async fn last_notification_seq(&self) -> Result<u64>;
    async fn count_pending_notifications(&self) -> Result<u64>;

    // Commands to equipment.
    /// Creates or replaces a command (its state changes in place).
    async fn put_command(&self, command: &vigie_core::command::Command) -> Result<()>;
    async fn command(&self, id: &str) -> Result<Option<vigie_core::command::Command>>;
    /// An entity's latest commands, newest first.
    async fn commands_of(&self, entity_id: &str, limit: usize) -> Result<Vec<vigie_core::command::Command>>;
    /// Every command still awaiting its answer, oldest first.
    async fn open_commands(&self) -> Result<Vec<vigie_core::command::Command>>;

    // Alarms.
    /// Creates or replaces alarms (their state changes in place), all in
    /// one transaction: an alarm storm is one commit, not one per alarm.
    async fn put_alarms(&self, alarms: &[vigie_core::alarm::Alarm]) -> Result<()>;
    async fn alarm(&self, id: &str) -> Result<Option<vigie_core::alarm::Alarm>>;
    /// Every alarm not closed, oldest first.
    async fn open_alarms(&self) -> Result<Vec<vigie_core::alarm::Alarm>>;

    // Automation rules saved through the API, every version kept.
    /// Adds a version; the rule's (id, version) must be new.
    async fn put_rule_version(&self, record: &RuleRecord) -> Result<()>;
    /// The latest version of every rule not retired, by id.
    async fn rules(&self) -> Result<Vec<RuleRecord>>;
    /// Every version of one rule, oldest first (retired ones included).
    async fn rule_versions(&self, id: &str) -> Result<Vec<RuleRecord>>;
}

#[cfg(feature = "testsuite")]
pub mod testsuite;
