//! SQLite engine for Vigie's [`Store`]: the embedded default, one file in the
//! data directory, WAL mode, migrations embedded in the binary.

pub mod baseline;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use vigie_core::account::{Account, ApiCredential, Session};
use vigie_core::alarm::Alarm;
use vigie_core::audit::{AuditEvent, AuditRecord};
use vigie_core::command::Command;
use vigie_core::ngsi::temporal::{AggrMethod, AttributeAggregate, Instance, Moments, PeriodStats, Periods};
use vigie_core::{Device, Entity, EntityId, Timestamp};
use vigie_store::{
    AuditQuery, DeadLetter, EntityAggregate, HistoryPoint, HistoryQuery, HistoryRange, HistorySelection,
    PendingNotification, Result, Retention, RuleRecord, SeriesRead, Store, StoreError, SubscriptionRecord, WriteBatch,
};

/// Rows per multi-row INSERT: large enough to amortise statement overhead,
/// small enough to stay far below SQLite's bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 256;

/// Settings of every connection, the readers' and the writer's.
const CONNECTION_PRAGMAS: [(&str, &str); 3] = [
    ("cache_size", "-65536"),    // 64 MiB page cache per connection
    ("mmap_size", "1073741824"), // pages read in place, not copied
    ("temp_store", "memory"),
];

/// How long a connection waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

mod committer;
use committer::{Committer, Rows};

/// How hard SQLite syncs to disk at each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync at every commit: a committed batch survives a power loss.
    Full,
    /// WAL with fewer fsyncs: survives a process crash (kill -9), may lose the
    /// last commits on power loss.
    Normal,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!("unknown durability '{other}': expected 'full' or 'normal'")),
        }
    }
}

/// Tables holding records as JSON bodies under a text key.
#[derive(Debug, Clone, Copy)]
enum BodyTable {
    Accounts,
    ApiCredentials,
    Subscriptions,
}

impl BodyTable {
    fn name(self) -> &'static str {
        match self {
            Self::Accounts => "account",
            Self::ApiCredentials => "API credential",
            Self::Subscriptions => "subscription",
        }
    }

    fn upsert(self) -> &'static str {
        match self {
            Self::Accounts => {
                "INSERT INTO accounts (name, body) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET body = excluded.body"
            }
            Self::ApiCredentials => {
                "INSERT INTO api_credentials (id, body) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body"
            }
            Self::Subscriptions => {
                "INSERT INTO subscriptions (id, body) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body"
            }
        }
    }

    fn select_one(self) -> &'static str {
        match self {
            Self::Accounts => "SELECT body FROM accounts WHERE name = ?",
            Self::ApiCredentials => "SELECT body FROM api_credentials WHERE id = ?",
            Self::Subscriptions => "SELECT body FROM subscriptions WHERE id = ?",
        }
    }

    fn select_all(self) -> &'static str {
        match self {
            Self::Accounts => "SELECT name, body FROM accounts ORDER BY name",
            Self::ApiCredentials => "SELECT id, body FROM api_credentials ORDER BY id",
            Self::Subscriptions => "SELECT id, body FROM subscriptions ORDER BY id",
        }
    }
}

pub struct SqliteStore {
    /// Readers, and the rare writes outside the ingest path.
    pool: SqlitePool,
    /// The one connection every write goes through. Why one: SQLite
    /// drops a connection's whole page cache when another connection wrote
    /// since its last transaction, so batches spread over the pool read
    /// their pages again from the file each time.
    committer: Committer,
    checkpoints: Checkpoints,
    /// Reader connections one long read may use at once: the cores.
    parallel_reads: usize,
}

/// Copies the write-ahead log back into the database file from a reader's
/// connection, at most every [`Checkpoints::EVERY`], so that the writer's
/// commits never do it (SQLite's automatic checkpoint runs inside the
/// commit that crosses its threshold). One at a time, each a short task:
/// nothing outlives the store's connections.
struct Checkpoints {
    last: Mutex<Instant>,
    running: Arc<AtomicBool>,
}

impl Checkpoints {
    const EVERY: Duration = Duration::from_millis(250);

    fn new() -> Self {
        Self {
            last: Mutex::new(Instant::now()),
            running: Arc::default(),
        }
    }

    /// Starts a checkpoint on `pool` if one is due and none is running.
    fn after_commit(&self, pool: &SqlitePool) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() < Self::EVERY || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        *last = Instant::now();
        let (pool, running) = (pool.clone(), Arc::clone(&self.running));
        tokio::spawn(async move {
            // PASSIVE: never waits for readers or the writer; what it cannot
            // copy now, a later one copies.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::debug!(error = %e, "checkpoint skipped");
            }
            running.store(false, Ordering::Release);
        });
    }
}

fn engine(e: sqlx::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn from_micros(us: i64, what: &str) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// A stored JSON body, or an error naming the record.
fn decode<T: serde::de::DeserializeOwned>(what: &str, id: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| corrupt(format!("{what} {id}"), e))
}

/// `(id, body)` rows, decoded in order.
fn decode_rows<T: serde::de::DeserializeOwned>(what: &str, rows: Vec<(String, String)>) -> Result<Vec<T>> {
    rows.into_iter().map(|(id, b)| decode(what, &id, &b)).collect()
}

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Splits a JSON value into the history columns (num, txt, json): numbers and
/// strings get native columns so that the temporal API can aggregate in SQL.
fn value_columns(v: &Value) -> (Option<f64>, Option<&str>, Option<String>) {
    match v {
        Value::Number(n) if n.as_f64().is_some() => (n.as_f64(), None, None),
        Value::String(s) => (None, Some(s.as_str()), None),
        other => (None, None, Some(other.to_string())),
    }
}

/// A stored number as JSON: integral values (counts, watts, levels) come back
/// as the integers they were written as, since SQLite keeps them as REAL.
fn number(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact in f64
    if n.fract() == 0.0 && n.abs() < EXACT {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

fn value_from_columns(num: Option<f64>, txt: Option<String>, json: Option<String>) -> Result<Value> {
    match (num, txt, json) {
        (Some(n), _, _) => Ok(number(n)),
        (_, Some(s), _) => Ok(Value::String(s)),
        (_, _, Some(j)) => serde_json::from_str(&j).map_err(|e| corrupt("history value", e)),
        _ => Err(corrupt("history value", "no column holds the value")),
    }
}

/// The audit columns, in the order [`audit_row`] reads them.
macro_rules! audit_columns {
    () => {
        "seq, at, actor, role, credential, source, action, target, outcome, detail, before, after, prev_hash, hash"
    };
}
const AUDIT_COLUMNS: &str = audit_columns!();

fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::AuditConflict(format!("sequence number {seq} is out of range")))
}

/// Reads one audit row; anything that does not decode (a manual edit) names the record.
fn audit_row(r: &SqliteRow) -> Result<AuditRecord> {
    let raw_seq: i64 = r.try_get(0).map_err(engine)?;
    let seq = u64::try_from(raw_seq).map_err(|_| StoreError::CorruptAudit {
        seq: 0,
        reason: format!("negative sequence number {raw_seq}"),
    })?;
    let bad = |what: &str, e: &dyn std::fmt::Display| StoreError::CorruptAudit {
        seq,
        reason: format!("{what}: {e}"),
    };
    let json = |what: &str, text: Option<String>| -> Result<Option<Value>> {
        text.map(|t| serde_json::from_str(&t).map_err(|e| bad(what, &e)))
            .transpose()
    };
    let at: i64 = r.try_get(1).map_err(|e| bad("at", &e))?;
    let role: Option<String> = r.try_get(3).map_err(|e| bad("role", &e))?;
    let outcome: String = r.try_get(8).map_err(|e| bad("outcome", &e))?;
    Ok(AuditRecord {
        seq,
        event: AuditEvent {
            at: Timestamp::from_microsecond(at).map_err(|e| bad("at", &e))?,
            actor: r.try_get(2).map_err(|e| bad("actor", &e))?,
            role: role.map(|x| x.parse().map_err(|e| bad("role", &e))).transpose()?,
            credential: r.try_get(4).map_err(|e| bad("credential", &e))?,
            source: r.try_get(5).map_err(|e| bad("source", &e))?,
            action: r.try_get(6).map_err(|e| bad("action", &e))?,
            target: r.try_get(7).map_err(|e| bad("target", &e))?,
            outcome: outcome.parse().map_err(|e| bad("outcome", &e))?,
            detail: r.try_get(9).map_err(|e| bad("detail", &e))?,
            before: json("before", r.try_get(10).map_err(|e| bad("before", &e))?)?,
            after: json("after", r.try_get(11).map_err(|e| bad("after", &e))?)?,
        },
        prev_hash: r.try_get(12).map_err(|e| bad("prev_hash", &e))?,
        hash: r.try_get(13).map_err(|e| bad("hash", &e))?,
    })
}

/// ` WHERE ...` for an audit query's filters.
fn push_audit_filters(qb: &mut QueryBuilder<Sqlite>, q: &AuditQuery) {
    qb.push(" WHERE 1 = 1");
    if let Some(t) = q.from {
        qb.push(" AND at >= ").push_bind(micros(t));
    }
    if let Some(t) = q.to {
        qb.push(" AND at < ").push_bind(micros(t));
    }
    if let Some(a) = &q.actor {
        qb.push(" AND actor = ").push_bind(a.clone());
    }
    match q.action.as_deref().map(|a| (a, a.strip_suffix('*'))) {
        Some((_, Some(prefix))) => {
            // substr, not LIKE: `%` and `_` in the filter stay literal.
            qb.push(" AND substr(action, 1, ")
                .push_bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
                .push(") = ")
                .push_bind(prefix.to_owned());
        }
        Some((exact, None)) => {
            qb.push(" AND action = ").push_bind(exact.to_owned());
        }
        None => {}
    }
    if let Some(prefix) = &q.target_prefix {
        qb.push(" AND substr(target, 1, ")
            .push_bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
            .push(") = ")
            .push_bind(prefix.clone());
    }
    if let Some(o) = q.outcome {
        qb.push(" AND outcome = ").push_bind(o.as_str());
    }
    if let Some(after) = q.after_seq {
        qb.push(" AND seq > ")
            .push_bind(i64::try_from(after).unwrap_or(i64::MAX));
    }
}

/// A list as a JSON array, for `json_each`: one bound parameter whatever its length.
fn json_array<T: serde::Serialize>(items: &[T]) -> String {
    // Strings and integers always serialize.
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The history rows of a selection: ` FROM history h WHERE ...`, the entity
/// ids and attribute names passed as one JSON array each (no bound-parameter
/// limit, one statement whatever the page size). `from`/`to` narrow the range further.
fn push_selection(qb: &mut QueryBuilder<Sqlite>, s: &HistorySelection, from: Option<Timestamp>, to: Option<Timestamp>) {
    let ids: Vec<&str> = s.entity_ids.iter().map(EntityId::as_str).collect();
    qb.push(
        " FROM history h WHERE h.entity_key IN (SELECT key FROM entities WHERE id IN (SELECT value FROM json_each(",
    )
    .push_bind(json_array(&ids))
    .push(")))");
    if let Some(attributes) = &s.attributes {
        qb.push(" AND h.attribute IN (SELECT value FROM json_each(")
            .push_bind(json_array(attributes))
            .push("))");
    }
    let latest = |a: Option<Timestamp>, b: Option<Timestamp>| a.max(b).or(a).or(b);
    let earliest = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(t) = latest(s.from, from) {
        qb.push(" AND h.observed_at >= ").push_bind(micros(t));
    }
    if let Some(t) = earliest(s.to, to) {
        qb.push(" AND h.observed_at < ").push_bind(micros(t));
    }
}

/// A temporal aggregate's SQL, for one run of consecutive periods.
struct AggregateQuery<'a> {
    ids: &'a [&'a str],
    /// `None`: every attribute the entities have history for.
    attributes: Option<&'a [String]>,
    from: i64,
    to: i64,
    distinct: bool,
    squares: bool,
}

impl AggregateQuery<'_> {
    /// The query for the periods between `bounds` (microseconds), the first
    /// of them numbered `first`. Rows: entity id, attribute, period number,
    /// then the numeric and the other statistics as JSON arrays.
    fn build(&self, bounds: &[i64], first: usize) -> QueryBuilder<Sqlite> {
        // Series (entity key, id, attribute), then one subquery per series and
        // period: each an index range scan, no sort of the points. Periods of
        // any length (months included) are given by their bounds.
        let mut qb = QueryBuilder::<Sqlite>::new("WITH RECURSIVE p(i, lo, hi) AS (SELECT CAST(key AS INTEGER) + ");
        qb.push_bind(i64::try_from(first).unwrap_or(i64::MAX))
            .push(", value, lead(value) OVER (ORDER BY key) FROM json_each(");
        qb.push_bind(json_array(bounds)).push(")), ");
        match self.attributes {
            Some(attributes) => {
                qb.push("s(k, id, a) AS (SELECT e.key, e.id, a.value FROM entities e, json_each(")
                    .push_bind(json_array(attributes))
                    .push(") a WHERE e.id IN (SELECT value FROM json_each(")
                    .push_bind(json_array(self.ids))
                    .push(")))");
            }
            // Every attribute: a loose index scan, one seek per attribute.
            None => {
                qb.push(
                    "s0(k, id, a) AS (SELECT e.key, e.id, (SELECT min(attribute) FROM history WHERE entity_key = e.key) \
                     FROM entities e WHERE e.id IN (SELECT value FROM json_each(",
                )
                .push_bind(json_array(self.ids))
                .push(
                    ")) UNION ALL SELECT k, id, (SELECT min(attribute) FROM history WHERE entity_key = s0.k AND attribute > s0.a) \
                     FROM s0 WHERE s0.a IS NOT NULL), s(k, id, a) AS (SELECT k, id, a FROM s0 WHERE a IS NOT NULL)",
                );
            }
        }
        // Whether a series has any non-numeric point in the range (one seek
        // in the partial index): most have none, and skip those subqueries.
        qb.push(
            ", t(k, id, a, o) AS (SELECT k, id, a, EXISTS (SELECT 1 FROM history INDEXED BY history_non_numeric \
             WHERE entity_key = s.k AND attribute = s.a AND num IS NULL AND observed_at >= ",
        )
        .push_bind(self.from)
        .push(" AND observed_at < ")
        .push_bind(self.to)
        .push(") FROM s)");
        let range = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE h.entity_key = t.k AND h.attribute = t.a AND h.observed_at >= max(p.lo, ")
                .push_bind(self.from)
                .push(") AND h.observed_at < min(p.hi, ")
                .push_bind(self.to)
                .push(")");
        };
        // Materialized: flattened, the filter below would run every subquery twice.
        qb.push(format!(
            ", r AS MATERIALIZED (SELECT t.id, t.a, p.i, \
             (SELECT json_array(count(num), sum(num), {}, min(num), max(num){}) FROM history h",
            if self.squares { "sum(num * num)" } else { "0" },
            if self.distinct { ", count(DISTINCT num)" } else { "" }
        ));
        range(&mut qb);
        qb.push(format!(
            ") AS numbers, CASE WHEN t.o THEN (SELECT json_array(count(*), count(b), sum(b), min(b), max(b), count(sz), \
             sum(sz), min(sz), max(sz), min(txt), max(txt){}) FROM (SELECT txt, json, \
             CASE json WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 END AS b, \
             CASE WHEN json LIKE '[%' THEN CAST(json_array_length(json) AS REAL) END AS sz \
             FROM history h INDEXED BY history_non_numeric",
            if self.distinct { ", count(DISTINCT txt) + count(DISTINCT json)" } else { "" }
        ));
        range(&mut qb);
        qb.push(
            " AND h.num IS NULL)) ELSE '[0]' END AS others FROM t, p WHERE p.hi IS NOT NULL) \
             SELECT id, a, i, numbers, others FROM r WHERE numbers NOT LIKE '[0,%' OR (others NOT LIKE '[0,%' AND others <> '[0]') \
             ORDER BY id, a, i",
        );
        qb
    }
}

/// Reads the JSON array a statistics subquery returns: `[count, ...]`.
struct StatsArray(Vec<Value>);

impl StatsArray {
    fn parse(text: Option<String>) -> Result<Self> {
        let text = text.ok_or_else(|| corrupt("history aggregate", "no statistics"))?;
        serde_json::from_str(&text)
            .map(Self)
            .map_err(|e| corrupt("history aggregate", e))
    }

    fn count(&self, i: usize) -> u64 {
        self.0.get(i).and_then(Value::as_u64).unwrap_or(0)
    }

    fn number(&self, i: usize) -> Option<f64> {
        self.0.get(i).and_then(Value::as_f64)
    }

    fn text(&self, i: usize) -> Option<String> {
        self.0.get(i).and_then(Value::as_str).map(str::to_owned)
    }
}

fn merge(a: Moments, b: Moments) -> Moments {
    let pick = |x: Option<f64>, y: Option<f64>, f: fn(f64, f64) -> f64| match (x, y) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, y) => x.or(y),
    };
    Moments {
        count: a.count + b.count,
        sum: a.sum + b.sum,
        sum_sq: a.sum_sq + b.sum_sq,
        min: pick(a.min, b.min, f64::min),
        max: pick(a.max, b.max, f64::max),
    }
}

/// One period's statistics from the two subqueries of [`Store::history_aggregate`]:
/// numbers (the `num` column) and the other values (booleans, arrays, strings, JSON).
fn period_stats(numbers: &StatsArray, others: &StatsArray, distinct: bool) -> PeriodStats {
    let booleans = Moments {
        count: others.count(1),
        sum: others.number(2).unwrap_or(0.0),
        // 1² = 1, 0² = 0.
        sum_sq: others.number(2).unwrap_or(0.0),
        min: others.number(3),
        max: others.number(4),
    };
    PeriodStats {
        total_count: numbers.count(0) + others.count(0),
        distinct_count: distinct.then(|| numbers.count(5) + others.count(11)),
        numbers: merge(
            Moments {
                count: numbers.count(0),
                sum: numbers.number(1).unwrap_or(0.0),
                sum_sq: numbers.number(2).unwrap_or(0.0),
                min: numbers.number(3),
                max: numbers.number(4),
            },
            booleans,
        ),
        array_sizes: Moments {
            count: others.count(5),
            sum: others.number(6).unwrap_or(0.0),
            sum_sq: 0.0,
            min: others.number(7),
            max: others.number(8),
        },
        text_min: others.text(9),
        text_max: others.text(10),
    }
}

impl SqliteStore {
    /// Writes a record as a JSON body under its key.
    async fn put_body(&self, table: BodyTable, id: &str, record: &impl serde::Serialize) -> Result<()> {
        let body = serde_json::to_string(record).map_err(|e| corrupt(format!("{} {id}", table.name()), e))?;
        sqlx::query(table.upsert())
            .bind(id)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(engine)?;
        Ok(())
    }

    /// A record's body, `None` when there is no such id.
    async fn one_body<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        what: &str,
        id: &str,
    ) -> Result<Option<T>> {
        let body: Option<String> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(engine)?;
        body.map(|b| decode(what, id, &b)).transpose()
    }

    async fn get_body<T: serde::de::DeserializeOwned>(&self, table: BodyTable, id: &str) -> Result<Option<T>> {
        self.one_body(table.select_one(), table.name(), id).await
    }

    async fn all_bodies<T: serde::de::DeserializeOwned>(&self, table: BodyTable) -> Result<Vec<T>> {
        let rows: Vec<(String, String)> = sqlx::query_as(table.select_all())
            .fetch_all(&self.pool)
            .await
            .map_err(engine)?;
        decode_rows(table.name(), rows)
    }

    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Engine(format!("cannot create data directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false);
        let options = CONNECTION_PRAGMAS
            .iter()
            .fold(options, |o, (name, value)| o.pragma(*name, *value));
        let cannot_open = |e| StoreError::Engine(format!("cannot open {}: {e}", path.display()));
        let parallel_reads = std::thread::available_parallelism().map_or(1, usize::from);
        let pool = SqlitePoolOptions::new()
            .max_connections(u32::try_from(parallel_reads).unwrap_or(u32::MAX).max(4))
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        let committer = Committer::open(path, durability)?;
        Ok(Self {
            pool,
            committer,
            checkpoints: Checkpoints::new(),
            parallel_reads,
        })
    }

    /// Opens from a URL: `sqlite://PATH` or `sqlite:PATH`.
    pub async fn open_url(url: &str, durability: Durability) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
        Self::open(Path::new(path), durability).await
    }

    /// SQLite's own consistency check of the file: `ok`, or what is wrong.
    pub async fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await
            .map_err(engine)?;
        Ok(rows.join("; "))
    }

    /// Closes every connection, after which the file can be copied or reopened.
    pub async fn close(&self) {
        self.committer.close().await;
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Engine(format!("migration failed: {e}")))?;
        // What the last run logged and did not fold (it stopped abruptly).
        self.committer.commit(Rows::fold_changes()).await
    }

    async fn write(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.committer.commit(Rows::of_batch(batch)?).await?;
        self.checkpoints.after_commit(&self.pool);
        Ok(())
    }

    async fn entities_page(&self, after: Option<&EntityId>, limit: usize) -> Result<Vec<Entity>> {
        // The rows, each with its latest logged change if it has one (see
        // migrations/0010_entity_changes.sql); one statement, one snapshot.
        let rows = sqlx::query(
            "WITH page AS (SELECT id, body FROM entities WHERE id > ?1 ORDER BY id LIMIT ?2), \
             latest AS (SELECT id, body, max(seq) FROM entity_changes WHERE id IN (SELECT id FROM page) GROUP BY id) \
             SELECT p.id, coalesce(l.body, p.body) FROM page p LEFT JOIN latest l ON l.id = p.id ORDER BY p.id",
        )
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(engine)?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0).map_err(engine)?;
                let body: String = row.try_get(1).map_err(engine)?;
                serde_json::from_str(&body).map_err(|e| corrupt(format!("entity {id}"), e))
            })
            .collect()
    }

    async fn count_entities(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entities")
            .fetch_one(&self.pool)
            .await
            .map_err(engine)?;
        Ok(n.unsigned_abs())
    }

    async fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryPoint>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT e.id, h.attribute, h.observed_at, h.num, h.txt, h.json, h.unit_code \
             FROM history h JOIN entities e ON e.key = h.entity_key WHERE 1 = 1",
        );
        if let Some(id) = &q.entity_id {
            qb.push(" AND e.id = ").push_bind(id.as_str());
        }
        if let Some(a) = &q.attribute {
            qb.push(" AND h.attribute = ").push_bind(a.as_str());
        }
        if let Some(t) = q.from {
            qb.push(" AND h.observed_at >= ").push_bind(micros(t));
        }
        if let Some(t) = q.to {
            qb.push(" AND h.observed_at < ").push_bind(micros(t));
        }
        qb.push(" ORDER BY h.observed_at LIMIT ")
            .push_bind(i64::try_from(q.limit).unwrap_or(i64::MAX));
        let rows = qb.build().fetch_all(&self.pool).await.map_err(engine)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(engine)?;
                Ok(HistoryPoint {
                    entity_id: EntityId::new(id).map_err(|e| corrupt("history entity id", e))?,
                    attribute: r.try_get(1).map_err(engine)?,
                    observed_at: from_micros(r.try_get(2).map_err(engine)?, "history time")?,
                    value: value_from_columns(
                        r.try_get(3).map_err(engine)?,
                        r.try_get(4).map_err(engine)?,
                        r.try_get(5).map_err(engine)?,
                    )?,
                    unit_code: r.try_get(6).map_err(engine)?,
                })
            })
            .collect()
    }

    async fn count_history(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM history")
            .fetch_one(&self.pool)
            .await
            .map_err(engine)?;
        Ok(n.unsigned_abs())
    }

    async fn history_range(
        &self,
        selection: &HistorySelection,
        last_n: Option<usize>,
        limit: usize,
    ) -> Result<HistoryRange> {
        if selection.entity_ids.is_empty() {
            return Ok(HistoryRange::default());
        }
        let per_series = HistoryRange::read_per_series(limit, last_n);
        let order = if last_n.is_some() { "DESC" } else { "ASC" };
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT e.id, r.attribute, r.observed_at, r.num, r.txt, r.json, r.unit_code FROM (\
             SELECT h.*, row_number() OVER (PARTITION BY h.entity_key, h.attribute ORDER BY h.observed_at {order}) AS rn"
        ));
        push_selection(&mut qb, selection, None, None);
        qb.push(") r JOIN entities e ON e.key = r.entity_key WHERE r.rn <= ")
            .push_bind(i64::try_from(per_series).unwrap_or(i64::MAX))
            .push(" ORDER BY e.id, r.attribute, r.observed_at");
        let rows = qb.build().fetch_all(&self.pool).await.map_err(engine)?;
        let mut series: Vec<SeriesRead> = Vec::new();
        for r in &rows {
            let id: String = r.try_get(0).map_err(engine)?;
            let attribute: String = r.try_get(1).map_err(engine)?;
            let instance = Instance {
                observed_at: from_micros(r.try_get(2).map_err(engine)?, "history time")?,
                value: value_from_columns(
                    r.try_get(3).map_err(engine)?,
                    r.try_get(4).map_err(engine)?,
                    r.try_get(5).map_err(engine)?,
                )?,
                unit_code: r.try_get(6).map_err(engine)?,
            };
            match series.last_mut() {
                Some(s) if s.entity_id.as_str() == id && s.attribute == attribute => s.instances.push(instance),
                _ => series.push(SeriesRead {
                    entity_id: EntityId::new(id).map_err(|e| corrupt("history entity id", e))?,
                    attribute,
                    instances: vec![instance],
                }),
            }
        }
        Ok(HistoryRange::assemble(series, limit, last_n))
    }

    async fn history_extent(&self, selection: &HistorySelection) -> Result<Option<(Timestamp, Timestamp)>> {
        if selection.entity_ids.is_empty() {
            return Ok(None);
        }
        let mut qb = match &selection.attributes {
            // Each series' first and last point: two index seeks, where a
            // min/max over the whole selection would read every point.
            Some(attributes) => {
                let ids: Vec<&str> = selection.entity_ids.iter().map(EntityId::as_str).collect();
                let mut qb =
                    QueryBuilder::<Sqlite>::new("WITH s(k, a) AS (SELECT e.key, a.value FROM entities e, json_each(");
                qb.push_bind(json_array(attributes))
                    .push(") a WHERE e.id IN (SELECT value FROM json_each(")
                    .push_bind(json_array(&ids))
                    .push("))) SELECT min(min_at), max(max_at) FROM (SELECT ");
                let bound = |qb: &mut QueryBuilder<Sqlite>, f: &str| {
                    qb.push(format!(
                        "(SELECT {f}(h.observed_at) FROM history h WHERE h.entity_key = s.k AND h.attribute = s.a"
                    ));
                    if let Some(t) = selection.from {
                        qb.push(" AND h.observed_at >= ").push_bind(micros(t));
                    }
                    if let Some(t) = selection.to {
                        qb.push(" AND h.observed_at < ").push_bind(micros(t));
                    }
                    qb.push(format!(") AS {f}_at"));
                };
                bound(&mut qb, "min");
                qb.push(", ");
                bound(&mut qb, "max");
                qb.push(" FROM s)");
                qb
            }
            None => {
                let mut qb = QueryBuilder::<Sqlite>::new("SELECT min(h.observed_at), max(h.observed_at)");
                push_selection(&mut qb, selection, None, None);
                qb
            }
        };
        let row = qb.build().fetch_one(&self.pool).await.map_err(engine)?;
        let first: Option<i64> = row.try_get(0).map_err(engine)?;
        let last: Option<i64> = row.try_get(1).map_err(engine)?;
        match (first, last) {
            (Some(a), Some(b)) => Ok(Some((from_micros(a, "history time")?, from_micros(b, "history time")?))),
            _ => Ok(None),
        }
    }

    async fn history_aggregate(
        &self,
        selection: &HistorySelection,
        periods: &Periods,
        methods: &[AggrMethod],
    ) -> Result<Vec<EntityAggregate>> {
        let (Some(start), Some(end)) = (periods.start(), periods.end()) else {
            return Ok(Vec::new());
        };
        if selection.entity_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = selection.entity_ids.iter().map(EntityId::as_str).collect();
        let bounds: Vec<i64> = periods.boundaries().iter().map(|t| micros(*t)).collect();
        let query = AggregateQuery {
            ids: &ids,
            attributes: selection.attributes.as_deref(),
            from: micros(selection.from.map_or(start, |t| t.max(start))),
            to: micros(selection.to.map_or(end, |t| t.min(end))),
            distinct: methods.contains(&AggrMethod::DistinctCount),
            // Each aggregate costs per point: the sum of squares only when asked.
            squares: methods
                .iter()
                .any(|m| matches!(m, AggrMethod::Stddev | AggrMethod::Sumsq)),
        };
        // The periods split over reader connections, each on its own thread:
        // a long aggregate takes every core the machine has free.
        let parts = periods.len().clamp(1, self.parallel_reads);
        let per_part = periods.len().div_ceil(parts);
        let answers = futures::future::try_join_all((0..periods.len()).step_by(per_part.max(1)).map(|first| {
            let last = (first + per_part).min(periods.len());
            let mut qb = query.build(&bounds[first..=last], first);
            async move { qb.build().fetch_all(&self.pool).await }
        }))
        .await
        .map_err(engine)?;

        let mut rows = Vec::new();
        for r in answers.iter().flatten() {
            let period = usize::try_from(r.try_get::<i64, _>(2).map_err(engine)?)
                .ok()
                .filter(|p| *p < periods.len())
                .ok_or_else(|| corrupt("history aggregate", "a period index out of range"))?;
            let id: String = r.try_get(0).map_err(engine)?;
            let attribute: String = r.try_get(1).map_err(engine)?;
            rows.push((id, attribute, period, r));
        }
        // Each part is in (entity, attribute, period) order; together they are not.
        rows.sort_unstable_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        let mut out: Vec<EntityAggregate> = Vec::new();
        for (id, attribute, period, r) in rows {
            let numbers = StatsArray::parse(r.try_get(3).map_err(engine)?)?;
            let others = StatsArray::parse(r.try_get(4).map_err(engine)?)?;
            if out.last().is_none_or(|e| e.entity_id.as_str() != id) {
                out.push(EntityAggregate {
                    entity_id: EntityId::new(id).map_err(|e| corrupt("history entity id", e))?,
                    attributes: Vec::new(),
                });
            }
            let Some(entity) = out.last_mut() else { continue };
            if entity.attributes.last().is_none_or(|a| a.name != attribute) {
                // Periods without a point were left out: they count nothing.
                let empty = PeriodStats {
                    distinct_count: query.distinct.then_some(0),
                    ..PeriodStats::default()
                };
                entity.attributes.push(AttributeAggregate {
                    name: attribute,
                    periods: vec![empty; periods.len()],
                });
            }
            if let Some(slot) = entity.attributes.last_mut().and_then(|a| a.periods.get_mut(period)) {
                *slot = period_stats(&numbers, &others, query.distinct);
            }
        }
        Ok(out)
    }

    async fn prune_history(&self, now: Timestamp, retention: &Retention) -> Result<u64> {
        let cutoff = |days: u32| micros(now) - i64::from(days) * 86_400 * 1_000_000;
        let mut removed = 0;
        for (attribute, days) in &retention.per_attribute_days {
            removed += sqlx::query("DELETE FROM history WHERE attribute = ? AND observed_at < ?")
                .bind(attribute)
                .bind(cutoff(*days))
                .execute(&self.pool)
                .await
                .map_err(engine)?
                .rows_affected();
        }
        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM history WHERE observed_at < ");
        qb.push_bind(cutoff(retention.default_days));
        if !retention.per_attribute_days.is_empty() {
            qb.push(" AND attribute NOT IN (");
            let mut list = qb.separated(", ");
            for attribute in retention.per_attribute_days.keys() {
                list.push_bind(attribute);
            }
            qb.push(")");
        }
        removed += qb.build().execute(&self.pool).await.map_err(engine)?.rows_affected();
        Ok(removed)
    }

    async fn put_devices(&self, devices: &[Device]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(engine)?;
        for chunk in devices.chunks(ROWS_PER_STATEMENT) {
            let bodies: Vec<String> = chunk
                .iter()
                .map(|d| serde_json::to_string(d).map_err(|e| corrupt(d.device_id.as_str(), e)))
                .collect::<Result<_>>()?;
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO devices (device_id, body) ");
            qb.push_values(chunk.iter().zip(&bodies), |mut row, (d, body)| {
                row.push_bind(d.device_id.as_str()).push_bind(body.as_str());
            });
            qb.push(" ON CONFLICT (device_id) DO UPDATE SET body = excluded.body");
            qb.build().execute(&mut *tx).await.map_err(engine)?;
        }
        tx.commit().await.map_err(engine)
    }

    async fn delete_device(&self, device_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM devices WHERE device_id = ?")
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(engine)?;
        Ok(r.rows_affected() > 0)
    }

    async fn devices(&self) -> Result<Vec<Device>> {
        let rows = sqlx::query("SELECT device_id, body FROM devices ORDER BY device_id")
            .fetch_all(&self.pool)
            .await
            .map_err(engine)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(engine)?;
                let body: String = r.try_get(1).map_err(engine)?;
                serde_json::from_str(&body).map_err(|e| corrupt(format!("device {id}"), e))
            })
            .collect()
    }

    async fn dead_letters(&self, limit: usize, offset: usize) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT received_at, source, topic, reason, detail, payload FROM dead_letters \
             ORDER BY seq DESC LIMIT ? OFFSET ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(engine)?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    received_at: from_micros(r.try_get(0).map_err(engine)?, "dead letter time")?,
                    source: r.try_get(1).map_err(engine)?,
                    topic: r.try_get(2).map_err(engine)?,
                    reason: r.try_get(3).map_err(engine)?,
                    detail: r.try_get(4).map_err(engine)?,
                    payload: r.try_get(5).map_err(engine)?,
                })
            })
            .collect()
    }

    async fn count_dead_letters(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&self.pool)
            .await
            .map_err(engine)?;
        Ok(n.unsigned_abs())
    }

    async fn put_account(&self, account: &Account) -> Result<()> {
        self.put_body(BodyTable::Accounts, &account.name, account).await
    }

    async fn account(&self, name: &str) -> Result<Option<Account>> {
        self.get_body(BodyTable::Accounts, name).await
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        self.all_bodies(BodyTable::Accounts).await
    }

    async fn delete_account(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(engine)?;
        sqlx::query("DELETE FROM sessions WHERE account = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(engine)?;
        let r = sqlx::query("DELETE FROM accounts WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(engine)?;
        tx.commit().await.map_err(engine)?;
        Ok(r.rows_affected() > 0)
    }

    async fn put_subscription(&self, record: &SubscriptionRecord) -> Result<()> {
        self.put_body(BodyTable::Subscriptions, record.subscription.id().as_str(), record)
            .await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        self.all_bodies(BodyTable::Subscriptions).await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(engine)?;
        sqlx::query("DELETE FROM pending_notifications WHERE subscription_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(engine)?;
        let gone = sqlx::query("DELETE FROM subscriptions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(engine)?
            .rows_affected();
        tx.commit().await.map_err(engine)?;
        Ok(gone > 0)
    }

    async fn put_notifications(&self, notifications: &[PendingNotification]) -> Result<()> {
        self.committer.commit(Rows::of_notifications(notifications)?).await
    }

    async fn pending_notifications(
        &self,
        subscription_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<PendingNotification>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT seq, created_at, data FROM pending_notifications \
             WHERE subscription_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(subscription_id)
        .bind(after_seq as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(engine)?;
        rows.into_iter()
            .map(|(seq, created_at, data)| {
                let what = format!("notification {seq}");
                Ok(PendingNotification {
                    seq: seq as u64,
                    subscription_id: subscription_id.to_owned(),
                    created_at: from_micros(created_at, &what)?,
                    data: serde_json::from_str(&data).map_err(|e| corrupt(what, e))?,
                })
            })
            .collect()
    }

    async fn delete_notifications(&self, seqs: &[u64]) -> Result<()> {
        self.committer.commit(Rows::of_delivered(seqs)?).await
    }

    async fn last_notification_seq(&self) -> Result<u64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM pending_notifications")
            .fetch_one(&self.pool)
            .await
            .map_err(engine)?;
        Ok(max.unwrap_or(0).max(0) as u64)
    }

    async fn count_pending_notifications(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pending_notifications")
            .fetch_one(&self.pool)
            .await
            .map_err(engine)?;
        Ok(n.max(0) as u64)
    }

    async fn put_command(&self, command: &Command) -> Result<()> {
        let body = serde_json::to_string(command).map_err(|e| corrupt(format!("command {}", command.id), e))?;
        sqlx::query(
            "INSERT INTO commands (id, entity_id, issued_at, open, body) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET open = excluded.open, body = excluded.body",
        )
        .bind(&command.id)
        .bind(command.entity_id.as_str())
        .bind(command.issued_at.as_microsecond())
        .bind(command.state.is_open())
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(engine)?;
        Ok(())
    }

    async fn command(&self, id: &str) -> Result<Option<Command>> {
        self.one_body("SELECT body FROM commands WHERE id = ?", "command", id)
            .await
    }

    async fn commands_of(&self, entity_id: &str, limit: usize) -> Result<Vec<Command>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, body FROM commands WHERE entity_id = ? ORDER BY issued_at DESC, id DESC LIMIT ?",
        )
        .bind(entity_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(engine)?;
        decode_rows("command", rows)
    }

    async fn open_commands(&self) -> Result<Vec<Command>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, body FROM commands WHERE open = 1 ORDER BY issued_at, id")
                .fetch_all(&self.pool)
                .await
                .map_err(engine)?;
        decode_rows("command", rows)
    }

    async fn put_alarms(&self, alarms: &[Alarm]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(engine)?;
        for alarm in alarms {
            let body = serde_json::to_string(alarm).map_err(|e| corrupt(format!("alarm {}", alarm.id), e))?;
            sqlx::query(
                "INSERT INTO alarms (id, source, raised_at, open, body) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET open = excluded.open, body = excluded.body",
            )
            .bind(&alarm.id)
            .bind(alarm.source.as_str())
            .bind(alarm.raised_at.as_microsecond())
            .bind(alarm.state.is_open())
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(engine)?;
        }
        tx.commit().await.map_err(engine)?;
        Ok(())
    }

    async fn alarm(&self, id: &str) -> Result<Option<Alarm>> {
        self.one_body("SELECT body FROM alarms WHERE id = ?", "alarm", id).await
    }

    async fn open_alarms(&self) -> Result<Vec<Alarm>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, body FROM alarms WHERE open = 1 ORDER BY raised_at, id")
                .fetch_all(&self.pool)
                .await
                .map_err(engine)?;
        decode_rows("alarm", rows)
    }

    async fn put_rule_version(&self, record: &RuleRecord) -> Result<()> {
        let rule = &record.rule;
        let body = serde_json::to_string(record).map_err(|e| corrupt(format!("rule {}", rule.id), e))?;
        sqlx::query("INSERT INTO rule_versions (id, version, saved_at, retired, body) VALUES (?, ?, ?, ?, ?)")
            .bind(&rule.id)
            .bind(rule.version)
            .bind(record.saved_at.as_microsecond())
            .bind(record.retired)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(engine)?;
        Ok(())
    }

    async fn rules(&self) -> Result<Vec<RuleRecord>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT v.id, v.body FROM rule_versions v \
             WHERE v.version = (SELECT MAX(version) FROM rule_versions WHERE id = v.id) AND v.retired = 0 \
             ORDER BY v.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(engine)?;
        decode_rows("rule", rows)
    }

    async fn rule_versions(&self, id: &str) -> Result<Vec<RuleRecord>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, body FROM rule_versions WHERE id = ? ORDER BY version")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(engine)?;
        decode_rows("rule", rows)
    }

    async fn put_api_credential(&self, credential: &ApiCredential) -> Result<()> {
        self.put_body(BodyTable::ApiCredentials, &credential.id, credential)
            .await
    }

    async fn api_credentials(&self) -> Result<Vec<ApiCredential>> {
        self.all_bodies(BodyTable::ApiCredentials).await
    }

    async fn put_session(&self, session: &Session) -> Result<()> {
        let body = serde_json::to_string(session).map_err(|e| corrupt("session", e))?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, account, expires_at, body) VALUES (?, ?, ?, ?) \
             ON CONFLICT (token_hash) DO UPDATE SET account = excluded.account, \
             expires_at = excluded.expires_at, body = excluded.body",
        )
        .bind(&session.token_hash)
        .bind(&session.account)
        .bind(micros(session.expires_at))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(engine)?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(engine)?;
        body.map(|b| serde_json::from_str(&b).map_err(|e| corrupt("session", e)))
            .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(engine)?;
        Ok(())
    }

    async fn delete_sessions_of(&self, account: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE account = ?")
            .bind(account)
            .execute(&self.pool)
            .await
            .map_err(engine)?;
        Ok(r.rows_affected())
    }

    async fn prune_sessions(&self, now: Timestamp) -> Result<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .map_err(engine)?;
        Ok(r.rows_affected())
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> Result<()> {
        self.committer.commit(Rows::of_audit(records)?).await
    }

    async fn audit_head(&self) -> Result<Option<AuditRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit ORDER BY seq DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await
        .map_err(engine)?;
        row.as_ref().map(audit_row).transpose()
    }

    async fn audit_get(&self, seq: u64) -> Result<Option<AuditRecord>> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let row = sqlx::query(concat!("SELECT ", audit_columns!(), " FROM audit WHERE seq = ?"))
            .bind(seq)
            .fetch_optional(&self.pool)
            .await
            .map_err(engine)?;
        row.as_ref().map(audit_row).transpose()
    }

    async fn audit_after(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(engine)?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit"));
        push_audit_filters(&mut qb, q);
        qb.push(if q.newest_first {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        });
        qb.push(" LIMIT ")
            .push_bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
            .push(" OFFSET ")
            .push_bind(i64::try_from(q.offset).unwrap_or(i64::MAX));
        let rows = qb.build().fetch_all(&self.pool).await.map_err(engine)?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_count(&self, q: &AuditQuery) -> Result<u64> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM audit");
        push_audit_filters(&mut qb, q);
        let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await.map_err(engine)?;
        Ok(n.unsigned_abs())
    }
}
