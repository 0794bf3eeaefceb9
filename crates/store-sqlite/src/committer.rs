//! The store's one write connection, on a thread of its own that runs each
//! transaction from BEGIN to COMMIT in a single hand-over.
//!
//! Why not a sqlx connection: sqlx runs every statement on the connection's
//! worker thread and wakes the caller after each, so a batch (begin, entity
//! rows, history, notifications, audit, commit) was a dozen hand-overs between
//! two threads. On a busy 2-core machine each waited for a time slice behind
//! the HTTP workers, and a commit of 16 writes took 7 ms of which SQLite
//! worked 2. Here the caller turns the batch into rows, sends them once, and
//! is woken once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use vigie_core::audit::AuditRecord;
use vigie_store::{PendingNotification, Result, StoreError, WriteBatch};

use crate::{AUDIT_COLUMNS, BUSY_TIMEOUT, CONNECTION_PRAGMAS, Durability, corrupt, micros, seq_param, value_columns};

/// A transaction's rows, made by the caller (serialisation is the caller's
/// CPU, not the connection's).
#[derive(Default)]
pub(crate) struct Rows {
    entities: Vec<EntityRow>,
    deletes: Vec<String>,
    history: Vec<HistoryRow>,
    dead_letters: Vec<DeadLetterRow>,
    notifications: Vec<NotificationRow>,
    audit: Vec<AuditRow>,
    /// Delivered notifications to take out of the outbox.
    delivered: Vec<i64>,
    /// Fold the entity change log now, whatever its size.
    fold: bool,
}

struct EntityRow {
    id: String,
    entity_type: String,
    scope: Option<String>,
    body: String,
    modified_at: Option<i64>,
}

struct HistoryRow {
    entity_id: String,
    attribute: String,
    observed_at: i64,
    num: Option<f64>,
    txt: Option<String>,
    json: Option<String>,
    unit_code: Option<String>,
}

struct DeadLetterRow {
    received_at: i64,
    source: String,
    topic: String,
    reason: String,
    detail: String,
    payload: Vec<u8>,
}

struct NotificationRow {
    seq: i64,
    subscription_id: String,
    created_at: i64,
    data: String,
}

struct AuditRow {
    seq: i64,
    at: i64,
    actor: String,
    role: Option<&'static str>,
    credential: String,
    source: Option<String>,
    action: String,
    target: Option<String>,
    outcome: &'static str,
    detail: Option<String>,
    before: Option<String>,
    after: Option<String>,
    prev_hash: String,
    hash: String,
}

impl Rows {
    pub(crate) fn of_batch(batch: &WriteBatch) -> Result<Self> {
        let entities = batch
            .upserts
            .iter()
            .map(|e| {
                Ok(EntityRow {
                    id: e.id.as_str().to_owned(),
                    entity_type: e.entity_type.as_str().to_owned(),
                    scope: e.scope.as_ref().map(|s| s.to_ngsi()),
                    body: serde_json::to_string(e).map_err(|err| corrupt(e.id.as_str(), err))?,
                    modified_at: e.modified_at.map(micros),
                })
            })
            .collect::<Result<_>>()?;
        let history = batch
            .history
            .iter()
            .map(|p| {
                let (num, txt, json) = value_columns(&p.value);
                HistoryRow {
                    entity_id: p.entity_id.as_str().to_owned(),
                    attribute: p.attribute.clone(),
                    observed_at: micros(p.observed_at),
                    num,
                    txt: txt.map(str::to_owned),
                    json,
                    unit_code: p.unit_code.clone(),
                }
            })
            .collect();
        let dead_letters = batch
            .dead_letters
            .iter()
            .map(|d| DeadLetterRow {
                received_at: micros(d.received_at),
                source: d.source.clone(),
                topic: d.topic.clone(),
                reason: d.reason.clone(),
                detail: d.detail.clone(),
                payload: d.payload.clone(),
            })
            .collect();
        Ok(Self {
            entities,
            deletes: batch.deletes.iter().map(|id| id.as_str().to_owned()).collect(),
            history,
            dead_letters,
            notifications: Self::notification_rows(&batch.notifications)?,
            audit: Self::audit_rows(&batch.audit)?,
            delivered: Vec::new(),
            fold: false,
        })
    }

    /// No rows: folds the entity change log (at start, after migrating).
    pub(crate) fn fold_changes() -> Self {
        Self {
            fold: true,
            ..Self::default()
        }
    }

    pub(crate) fn of_notifications(notifications: &[PendingNotification]) -> Result<Self> {
        Ok(Self {
            notifications: Self::notification_rows(notifications)?,
            ..Self::default()
        })
    }

    pub(crate) fn of_audit(records: &[AuditRecord]) -> Result<Self> {
        Ok(Self {
            audit: Self::audit_rows(records)?,
            ..Self::default()
        })
    }

    pub(crate) fn of_delivered(seqs: &[u64]) -> Result<Self> {
        Ok(Self {
            delivered: seqs.iter().map(|&s| seq_param(s)).collect::<Result<_>>()?,
            ..Self::default()
        })
    }

    fn notification_rows(notifications: &[PendingNotification]) -> Result<Vec<NotificationRow>> {
        notifications
            .iter()
            .map(|n| {
                Ok(NotificationRow {
                    seq: seq_param(n.seq)?,
                    subscription_id: n.subscription_id.clone(),
                    created_at: micros(n.created_at),
                    data: n.data.to_string(),
                })
            })
            .collect()
    }

    /// The records' rows, refusing records that are not contiguous.
    fn audit_rows(records: &[AuditRecord]) -> Result<Vec<AuditRow>> {
        if let Some(w) = records.windows(2).find(|w| w[1].seq != w[0].seq + 1) {
            return Err(StoreError::AuditConflict(format!(
                "record {} follows record {}: the records to append are not contiguous",
                w[1].seq, w[0].seq
            )));
        }
        records
            .iter()
            .map(|r| {
                let json = |v: &Option<serde_json::Value>| {
                    v.as_ref()
                        .map(serde_json::to_string)
                        .transpose()
                        .map_err(|e| corrupt(format!("audit record {}", r.seq), e))
                };
                let e = &r.event;
                Ok(AuditRow {
                    seq: seq_param(r.seq)?,
                    at: micros(e.at),
                    actor: e.actor.clone(),
                    role: e.role.map(|x| x.as_str()),
                    credential: e.credential.clone(),
                    source: e.source.clone(),
                    action: e.action.clone(),
                    target: e.target.clone(),
                    outcome: e.outcome.as_str(),
                    detail: e.detail.clone(),
                    before: json(&e.before)?,
                    after: json(&e.after)?,
                    prev_hash: r.prev_hash.clone(),
                    hash: r.hash.clone(),
                })
            })
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.entities.is_empty()
            && self.deletes.is_empty()
            && self.history.is_empty()
            && self.dead_letters.is_empty()
            && self.notifications.is_empty()
            && self.audit.is_empty()
            && self.delivered.is_empty()
            && !self.fold
    }
}

struct Job {
    rows: Rows,
    done: oneshot::Sender<Result<()>>,
}

/// The write connection's thread. Dropping the last sender ends it.
pub(crate) struct Committer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Committer {
    /// Opens the write connection (the file exists and is in WAL mode: the
    /// readers' pool made it so) and starts its thread.
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self> {
        let cannot_open = |e: rusqlite::Error| StoreError::Engine(format!("cannot open {}: {e}", path.display()));
        let conn = Connection::open(path).map_err(cannot_open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(cannot_open)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        // The readers' settings, and WAL with the durability asked. The
        // automatic checkpoint is only a backstop for when the background
        // one falls behind (16 MiB of log rather than 4).
        let pragmas = CONNECTION_PRAGMAS
            .iter()
            .map(|(name, value)| format!("PRAGMA {name} = {value};"))
            .collect::<String>();
        conn.execute_batch(&format!(
            "{pragmas} PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA wal_autocheckpoint = 4000;"
        ))
        .map_err(cannot_open)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (finished, stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("vigie-sqlite-commit".into())
            .spawn(move || {
                let mut conn = conn;
                let mut changes = ChangeLog::new();
                let mut next = None;
                loop {
                    let first = match next.take().map_or_else(|| queue.recv_timeout(FOLD_EVERY), Ok) {
                        Ok(first) => first,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if changes.logged > 0 {
                                changes.fold_alone(&mut conn);
                            }
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let mut jobs = vec![first];
                    jobs.extend(queue.try_iter().take(MAX_MERGED - 1));
                    commit_jobs(&mut conn, jobs, &mut changes);
                    // A fold due waits for a moment with nothing queued, so
                    // that it holds no one's commit (past `FOLD_AT_LATEST`
                    // a commit carries it).
                    if changes.due() {
                        match queue.try_recv() {
                            Ok(job) => next = Some(job),
                            Err(mpsc::TryRecvError::Empty) => changes.fold_alone(&mut conn),
                            Err(mpsc::TryRecvError::Disconnected) => break,
                        }
                    }
                }
                if changes.logged > 0 {
                    changes.fold_alone(&mut conn);
                }
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %e, "closing the write connection");
                }
                let _ = finished.send(());
            })
            .map_err(|e| StoreError::Engine(format!("cannot start the write connection's thread: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            stopped: Mutex::new(Some(stopped)),
        })
    }

    /// Commits `rows` in one transaction.
    pub(crate) async fn commit(&self, rows: Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        let sent = match &*self.jobs.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(jobs) => jobs.send(Job { rows, done }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Engine("the store is closed".into()));
        }
        answer
            .await
            .map_err(|_| StoreError::Engine("the write connection's thread stopped".into()))?
    }

    /// Finishes the queued transactions and closes the connection.
    pub(crate) async fn close(&self) {
        drop(self.jobs.lock().unwrap_or_else(PoisonError::into_inner).take());
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }
}

/// Most queued jobs one transaction takes.
const MAX_MERGED: usize = 64;

/// Jobs queued together commit in one transaction, in their order: one log
/// write and one sync instead of several (the writer's batch, the outbox's
/// deletions and an audit append often meet here). If that transaction
/// fails, each job is tried alone, so that a bad one fails only itself.
fn commit_jobs(conn: &mut Connection, jobs: Vec<Job>, changes: &mut ChangeLog) {
    if jobs.len() > 1 {
        match transact(conn, jobs.iter().map(|j| &j.rows), changes) {
            Ok(()) => {
                for job in jobs {
                    let _ = job.done.send(Ok(()));
                }
                return;
            }
            Err(e) => tracing::debug!(jobs = jobs.len(), error = %e, "merged transaction failed; each job alone"),
        }
    }
    for job in jobs {
        let _ = job.done.send(transact(conn, std::iter::once(&job.rows), changes));
    }
}

fn engine(e: rusqlite::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// Writes `all` in one transaction; IMMEDIATE because the audit guard
/// reads the trail's end before writing.
fn transact<'a>(conn: &mut Connection, all: impl Iterator<Item = &'a Rows>, changes: &mut ChangeLog) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(engine)?;
    // The log as this transaction leaves it, kept only if it commits.
    let mut log = *changes;
    let mut fold_asked = false;
    for rows in all {
        fold_asked |= rows.fold;
        write_entities(&tx, rows, &mut log)?;
        write_outbox(&tx, rows)?;
        write_audit(&tx, &rows.audit)?;
    }
    // Past `FOLD_AT_LATEST` it is too late to wait for a quiet moment.
    if fold_asked || log.logged >= FOLD_AT_LATEST {
        log.fold(&tx)?;
    }
    tx.commit().map_err(engine)?;
    *changes = log;
    Ok(())
}

/// How often, at most, the entity change log is folded into `entities`
/// (and how long the thread waits idle before folding what is left).
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// Changes logged that make a fold due before `FOLD_EVERY`: a fold's work is
/// bounded, so that the write waiting behind it is not held long.
const FOLD_AT: usize = 8_192;

/// Changes logged that make a commit carry the fold, when the queue was
/// never empty since it was due (writes without pause).
const FOLD_AT_LATEST: usize = 4 * FOLD_AT;

/// The entity change log as the write connection knows it (see
/// `migrations/0010_entity_changes.sql`): a change to an entity that has a
/// row is appended to the log, a few hundred bytes in pages written in
/// sequence, and folded into the rows from time to time, where many changes
/// to the same rows and pages cost one write each.
#[derive(Clone, Copy)]
struct ChangeLog {
    /// Changes in the log, as of the last commit.
    logged: usize,
    folded_at: Instant,
}

impl ChangeLog {
    fn new() -> Self {
        Self {
            logged: 0,
            folded_at: Instant::now(),
        }
    }

    /// A fold is due: folded in the next moment with nothing queued.
    fn due(&self) -> bool {
        self.logged >= FOLD_AT || (self.logged > 0 && self.folded_at.elapsed() >= FOLD_EVERY)
    }

    /// Folds in a transaction of its own (the thread is idle or stopping).
    fn fold_alone(&mut self, conn: &mut Connection) {
        let folded = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(engine)
            .and_then(|tx| {
                let mut log = *self;
                log.fold(&tx)?;
                tx.commit().map_err(engine)?;
                Ok(log)
            });
        match folded {
            Ok(log) => *self = log,
            Err(e) => tracing::warn!(error = %e, "cannot fold the entity change log; will try again"),
        }
    }

    /// Writes each logged entity's latest change into its row and empties
    /// the log. A change to an entity deleted since finds no row (deletions
    /// fold first, so no change can outlive its entity and land on a new
    /// one of the same id).
    fn fold(&mut self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        // `max(seq)` makes SQLite take the other columns from the latest row.
        tx.prepare_cached(
            "UPDATE entities SET type = c.type, scope = c.scope, body = c.body, modified_at = c.modified_at \
             FROM (SELECT id, type, scope, body, modified_at, max(seq) FROM entity_changes GROUP BY id) AS c \
             WHERE entities.id = c.id",
        )
        .and_then(|mut s| s.execute([]))
        .and_then(|_| tx.prepare_cached("DELETE FROM entity_changes"))
        .and_then(|mut s| s.execute([]))
        .map_err(engine)?;
        self.logged = 0;
        self.folded_at = Instant::now();
        Ok(())
    }
}

fn write_entities(tx: &rusqlite::Transaction<'_>, rows: &Rows, log: &mut ChangeLog) -> Result<()> {
    let mut keys: HashMap<&str, i64> = HashMap::with_capacity(rows.entities.len());
    let mut key_of = tx
        .prepare_cached("SELECT key FROM entities WHERE id = ?1")
        .map_err(engine)?;
    let mut create = tx
        .prepare_cached(
            "INSERT INTO entities (id, type, scope, body, modified_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING key",
        )
        .map_err(engine)?;
    let mut change = tx
        .prepare_cached("INSERT INTO entity_changes (id, type, scope, body, modified_at) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(engine)?;
    for e in &rows.entities {
        let values = params![e.id, e.entity_type, e.scope, e.body, e.modified_at];
        let key = match key_of
            .query_row([&e.id], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(engine)?
        {
            Some(key) => {
                change.execute(values).map_err(engine)?;
                log.logged += 1;
                key
            }
            None => create.query_row(values, |r| r.get(0)).map_err(engine)?,
        };
        keys.insert(&e.id, key);
    }
    if !rows.deletes.is_empty() {
        log.fold(tx)?;
    }
    for id in &rows.deletes {
        // An entity's history goes with it: its key may be given again.
        tx.prepare_cached("DELETE FROM history WHERE entity_key = (SELECT key FROM entities WHERE id = ?1)")
            .and_then(|mut s| s.execute([id]))
            .and_then(|_| tx.prepare_cached("DELETE FROM entities WHERE id = ?1"))
            .and_then(|mut s| s.execute([id]))
            .map_err(engine)?;
        keys.remove(id.as_str());
    }
    let mut point = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO history (entity_key, attribute, observed_at, num, txt, json, unit_code) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(engine)?;
    for p in &rows.history {
        let key = match keys.get(p.entity_id.as_str()) {
            Some(&k) => k,
            None => match key_of
                .query_row([&p.entity_id], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(engine)?
            {
                Some(k) => {
                    keys.insert(&p.entity_id, k);
                    k
                }
                None => {
                    tracing::warn!(entity = %p.entity_id, "history point for an unknown entity dropped");
                    continue;
                }
            },
        };
        point
            .execute(params![
                key,
                p.attribute,
                p.observed_at,
                p.num,
                p.txt,
                p.json,
                p.unit_code
            ])
            .map_err(engine)?;
    }
    let mut letter = tx
        .prepare_cached(
            "INSERT INTO dead_letters (received_at, source, topic, reason, detail, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(engine)?;
    for d in &rows.dead_letters {
        letter
            .execute(params![d.received_at, d.source, d.topic, d.reason, d.detail, d.payload])
            .map_err(engine)?;
    }
    Ok(())
}

fn write_outbox(tx: &rusqlite::Transaction<'_>, rows: &Rows) -> Result<()> {
    let mut queue = tx
        .prepare_cached(
            "INSERT INTO pending_notifications (seq, subscription_id, created_at, data) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(engine)?;
    for n in &rows.notifications {
        queue
            .execute(params![n.seq, n.subscription_id, n.created_at, n.data])
            .map_err(engine)?;
    }
    let mut delivered = tx
        .prepare_cached("DELETE FROM pending_notifications WHERE seq = ?1")
        .map_err(engine)?;
    for seq in &rows.delivered {
        delivered.execute([seq]).map_err(engine)?;
    }
    Ok(())
}

/// Appends audit records after the trail's last one, refusing records that
/// would not continue it (the chain has one writer; this is its guard, and
/// the trigger `audit_continues` the database's).
fn write_audit(tx: &rusqlite::Transaction<'_>, records: &[AuditRow]) -> Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let last: Option<i64> = tx
        .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
        .map_err(engine)?;
    let last = last.unwrap_or(0);
    if first.seq != last + 1 {
        return Err(StoreError::AuditConflict(format!(
            "the trail ends at record {last}; cannot append record {}",
            first.seq
        )));
    }
    let mut append = tx
        .prepare_cached(&format!(
            "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))
        .map_err(engine)?;
    for r in records {
        append
            .execute(params![
                r.seq,
                r.at,
                r.actor,
                r.role,
                r.credential,
                r.source,
                r.action,
                r.target,
                r.outcome,
                r.detail,
                r.before,
                r.after,
                r.prev_hash,
                r.hash
            ])
            .map_err(engine)?;
    }
    Ok(())
}
