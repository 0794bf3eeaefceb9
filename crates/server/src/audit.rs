//! The audit trail service: one hash chain, appended by every state-changing
//! request (and every sensitive read), anchored outside the database.
//!
//! [`Audit::record`] seals an event after the current head and appends it;
//! appends are serialized by one lock that holds the head, so the chain has a
//! single writer. The head (seq and hash) is then written to the *anchor*, a
//! small file beside the database (`<db>.audit-head`, replaced atomically),
//! and logged at info level (target `vigie::audit`), so that cutting the tail
//! of the trail — which leaves a valid, shorter chain — is detected by
//! `vigie audit verify`, and a copy of the head exists in the logs shipped
//! elsewhere. The threat model is in docs/security.md.
//!
//! Nothing is dropped silently: if the append fails, `record` fails, and the
//! request answers 500 (the failure is logged with the event).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Mutex;
use vigie_core::access::{Action, Credential, Denied, Principal};
use vigie_core::audit::{AuditEvent, AuditRecord, Head, Outcome, Problem, Verified, Verifier};
use vigie_core::{Device, Entity, EntityId, Scope, Timestamp};
use vigie_store::{Store, StoreError};

use crate::api::ApiError;
use crate::config::Config;
use crate::ingest::{AuditNote, Audited, DeviceRegistry, WriteError, WriteOutcome};
use crate::security::Caller;

/// Records read per page when the whole trail is verified.
const VERIFY_PAGE: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit trail cannot be written: {0}")]
    Store(#[from] StoreError),
    #[error("the audit anchor {path}: {message}")]
    Anchor { path: PathBuf, message: String },
    /// Found at start: the trail does not match its anchor or its own hashes.
    #[error(
        "the audit trail is not intact: {problem}. Run `vigie audit verify` to investigate. \
         If this is expected (a database restored from a backup), move {anchor} away and start again: \
         the start is then recorded in the trail as audit.anchor-missing"
    )]
    Tampered { problem: Problem, anchor: String },
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The anchor file for a configuration: `audit.anchor_file`, or the SQLite
/// database's path with `.audit-head` appended. `None` when neither applies.
pub fn anchor_path(config: &Config) -> Option<PathBuf> {
    if !config.audit.anchor_file.is_empty() {
        return Some(PathBuf::from(&config.audit.anchor_file));
    }
    let url = &config.store.url;
    let db = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))?;
    let mut path = PathBuf::from(db).into_os_string();
    path.push(".audit-head");
    Some(PathBuf::from(path))
}

/// Reads the anchor: `Ok(None)` when the file does not exist.
pub fn read_anchor(path: &Path) -> Result<Option<Head>, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuditError::Anchor {
                path: path.to_owned(),
                message: format!("cannot be read: {e}"),
            });
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| AuditError::Anchor {
        path: path.to_owned(),
        message: format!("is not an audit anchor ({e}); expected {{\"seq\": N, \"hash\": \"...\"}}"),
    })
}

/// Replaces the anchor atomically: a temporary file, synced, renamed over it.
fn write_anchor(path: &Path, head: &Head) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let body = serde_json::json!({"seq": head.seq, "hash": head.hash, "at": Timestamp::now().to_string()});
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{body}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename itself durable; not every platform can open a directory.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// How a credential is named in the trail (`session`, `api-key`...).
pub fn credential_name(c: Credential) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{c:?}"))
}

/// An event by a principal (or by nobody known, for a failed login) from an address.
pub fn event_by(principal: Option<&Principal>, source: Option<IpAddr>, action: &str) -> AuditEvent {
    AuditEvent {
        at: Timestamp::now(),
        actor: principal.map_or_else(String::new, |p| p.subject.clone()),
        role: principal.map(|p| p.role),
        credential: principal.map_or_else(|| "none".to_owned(), |p| credential_name(p.credential)),
        source: source.map(|ip| ip.to_string()),
        action: action.to_owned(),
        target: None,
        outcome: Outcome::Ok,
        detail: None,
        before: None,
        after: None,
    }
}

/// An event by the caller of a request: fill in the rest with struct update
/// syntax, e.g. `AuditEvent { target: Some(id), ..audit::event(&caller, "entity.update") }`.
pub fn event(caller: &Caller, action: &str) -> AuditEvent {
    event_by(Some(&caller.principal), caller.source, action)
}

/// The note by which the ingest writer records an entity write (create,
/// change, delete, temporal write): what the write changed, before and
/// after it (see [`changed_parts`]), or the error. The record is durable
/// with the write, or the write fails.
pub fn entity_note(caller: &Caller, action: &str, id: &EntityId) -> AuditNote {
    let template = AuditEvent {
        target: Some(id.to_string()),
        ..event(caller, action)
    };
    Box::new(move |done: Audited<'_>| {
        let whole = |e: Option<&Entity>| e.and_then(|e| serde_json::to_value(e).ok());
        match done.result {
            Ok(_) => {
                let (before, after) = match (done.before, done.after) {
                    (Some(b), Some(a)) => {
                        let (b, a) = changed_parts(b, a);
                        (Some(b), Some(a))
                    }
                    (b, a) => (whole(b), whole(a)),
                };
                AuditEvent {
                    before,
                    after,
                    ..template
                }
            }
            Err(e) => AuditEvent {
                outcome: Outcome::Failed,
                detail: Some(e.to_string()),
                before: whole(done.before),
                ..template
            },
        }
    })
}

/// What a change to an existing entity touched, before and after it: `id`
/// and `type`, then the scope and each attribute (all its instances) that
/// differ, absent on the side where there is none. Why not the whole
/// entity twice: a light's power reading is the busiest write a city makes,
/// and its record is then a few hundred bytes instead of two copies of the light.
fn changed_parts(before: &Entity, after: &Entity) -> (Value, Value) {
    let mut b = serde_json::Map::new();
    let mut a = serde_json::Map::new();
    for (side, e) in [(&mut b, before), (&mut a, after)] {
        side.insert("id".into(), Value::String(e.id.to_string()));
        side.insert("type".into(), Value::String(e.entity_type.clone()));
    }
    if before.scope != after.scope {
        for (side, e) in [(&mut b, before), (&mut a, after)] {
            if let Some(scope) = &e.scope {
                side.insert("scope".into(), Value::String(scope.to_ngsi()));
            }
        }
    }
    let instances = |e: &Entity, name: &str| -> Vec<Value> {
        e.attributes
            .instances(name)
            .filter_map(|i| serde_json::to_value(i).ok())
            .collect()
    };
    let names: std::collections::BTreeSet<&String> = before.attributes.keys().chain(after.attributes.keys()).collect();
    for name in names {
        if before.attributes.instances(name).eq(after.attributes.instances(name)) {
            continue;
        }
        for (side, e) in [(&mut b, before), (&mut a, after)] {
            let mut run = instances(e, name);
            match run.len() {
                0 => {}
                1 => {
                    side.insert(name.clone(), run.remove(0));
                }
                _ => {
                    side.insert(name.clone(), Value::Array(run));
                }
            }
        }
    }
    (Value::Object(b), Value::Object(a))
}

/// The note by which the ingest writer records a batch operation as one
/// record: the ids created, updated (or deleted) and failed (with the
/// reason), not the entities' bodies — a batch carries up to 1,000
/// entities, and provisioning a city is tens of thousands. `invalid`
/// counts the entities refused before the write.
pub fn batch_note(caller: &Caller, (action, mode): (&str, &'static str), invalid: usize) -> AuditNote {
    let template = event(caller, action);
    Box::new(move |done: Audited<'_>| batch_event(template, mode, done.result, invalid))
}

fn batch_event(
    template: AuditEvent,
    mode: &str,
    outcome: &Result<WriteOutcome, WriteError>,
    invalid: usize,
) -> AuditEvent {
    let (outcome, detail, after) = match outcome {
        Err(e) => (Outcome::Failed, e.to_string(), None),
        Ok(WriteOutcome::Batch(results)) => {
            let (mut created, mut updated, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            for (id, r) in results {
                match r {
                    Ok(true) => created.push(Value::String(id.to_string())),
                    Ok(false) => updated.push(Value::String(id.to_string())),
                    Err(e) => failed.push(serde_json::json!({"id": id.to_string(), "error": e.to_string()})),
                }
            }
            let detail = format!(
                "{} created, {} updated, {} failed, {invalid} invalid",
                created.len(),
                updated.len(),
                failed.len()
            );
            let outcome = if created.is_empty() && updated.is_empty() && (!failed.is_empty() || invalid > 0) {
                Outcome::Failed
            } else {
                Outcome::Ok
            };
            let after = serde_json::json!({
                "mode": mode, "created": created, "updated": updated, "failed": failed, "invalid": invalid,
            });
            (outcome, detail, Some(after))
        }
        Ok(_) => (Outcome::Ok, "done".to_owned(), None),
    };
    AuditEvent {
        outcome,
        detail: Some(detail),
        after,
        ..template
    }
}

/// The audit trail's single writer.
/// Events waiting to be appended, and where to answer once they are.
type Waiting = (Vec<AuditEvent>, tokio::sync::oneshot::Sender<Result<Head, String>>);

pub struct Audit {
    store: Arc<dyn Store>,
    anchor: Option<PathBuf>,
    head: Mutex<Head>,
    /// Events waiting for the next append, with where to say it is done:
    /// concurrent requests share one transaction and one anchor write
    /// (group commit), so auditing every write does not cap the write rate.
    pending: std::sync::Mutex<Vec<Waiting>>,
    /// Set while [`Audit::run_anchor`] keeps the anchor: appends then leave
    /// it to that task instead of two fsyncs each (the CLI, without it,
    /// writes the anchor with every append).
    anchor_kept: std::sync::atomic::AtomicBool,
}

impl Audit {
    /// Loads the head and checks it against the anchor: a trail cut or
    /// rewritten since the last run refuses to start ([`AuditError::Tampered`]).
    /// A missing anchor with a non-empty trail is recorded in the trail
    /// (`audit.anchor-missing`) and a new anchor starts from the current head.
    pub async fn open(store: Arc<dyn Store>, anchor: Option<PathBuf>) -> Result<Self, AuditError> {
        let last = store.audit_head().await?;
        if let Some(r) = &last
            && r.compute_hash() != r.hash
        {
            return Err(AuditError::Tampered {
                problem: Problem::Changed { seq: r.seq },
                anchor: anchor_name(anchor.as_deref()),
            });
        }
        let head = last.as_ref().map_or_else(Head::genesis, Head::of);
        let anchored = match &anchor {
            Some(path) => read_anchor(path)?,
            None => {
                tracing::warn!(
                    "no audit anchor (store.url is not a file and audit.anchor_file is empty): a cut tail of the audit trail cannot be detected"
                );
                None
            }
        };
        if let Some(a) = &anchored {
            let problem = if a.seq > head.seq {
                Some(Problem::Truncated {
                    last_seq: head.seq,
                    anchor_seq: a.seq,
                })
            } else if a.seq > 0 {
                match store.audit_get(a.seq).await {
                    Ok(Some(r)) if r.hash == a.hash => None,
                    Ok(Some(_)) => Some(Problem::AnchorMismatch { seq: a.seq }),
                    Ok(None) => Some(Problem::Removed {
                        after_seq: a.seq - 1,
                        missing: 1,
                    }),
                    Err(StoreError::CorruptAudit { seq, .. }) => Some(Problem::Changed { seq }),
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(AuditError::Tampered {
                    problem,
                    anchor: anchor_name(anchor.as_deref()),
                });
            }
        }
        let missing_anchor = anchor.is_some() && anchored.is_none() && head.seq > 0;
        tracing::info!(target: "vigie::audit", seq = head.seq, hash = %head.hash, "audit trail opened");
        let audit = Self {
            store,
            anchor,
            head: Mutex::new(head),
            pending: std::sync::Mutex::new(Vec::new()),
            anchor_kept: std::sync::atomic::AtomicBool::new(false),
        };
        if missing_anchor {
            let path = anchor_name(audit.anchor.as_deref());
            tracing::warn!(anchor = %path, "the audit anchor is missing: a new one starts from the current head");
            audit
                .record(AuditEvent {
                    outcome: Outcome::Failed,
                    detail: Some(format!(
                        "the anchor file {path} was missing; records before this one are verified by their chain only"
                    )),
                    ..system_event("audit.anchor-missing")
                })
                .await?;
        }
        Ok(audit)
    }

    /// Appends one event to the trail. Fails (and logs) if it cannot be made durable.
    pub async fn record(&self, event: AuditEvent) -> Result<Head, AuditError> {
        self.record_all(vec![event]).await
    }

    /// Appends events atomically, in order. Events recorded concurrently
    /// are appended together: whoever takes the head next writes every
    /// waiting event in one transaction and answers the others.
    pub async fn record_all(&self, events: Vec<AuditEvent>) -> Result<Head, AuditError> {
        if events.is_empty() {
            return Ok(self.head.lock().await.clone());
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.waiting().push((events, tx));
        let mut head = self.head.lock().await;
        // The previous writer may have taken ours along.
        if let Ok(done) = rx.try_recv() {
            return done.map_err(|e| AuditError::Store(StoreError::Engine(e)));
        }
        // Ours are among the waiting ones: answered through `rx`.
        let _ = self
            .append_locked(&mut head, Vec::new(), async |records: &mut Vec<AuditRecord>| {
                self.store.audit_append(records).await
            })
            .await;
        drop(head);
        match rx.await {
            Ok(done) => done.map_err(|e| AuditError::Store(StoreError::Engine(e))),
            Err(_) => Err(AuditError::Store(StoreError::Engine(
                "the audit writer went away".into(),
            ))),
        }
    }

    /// Appends `events` through a write of the caller's, which must store
    /// the sealed records atomically with its own changes (the ingest
    /// writer puts them in its [`vigie_store::WriteBatch`], so an entity
    /// write and its record are one commit). Events waiting for the next
    /// append ride along, before `events`. The head moves only if `write`
    /// succeeds; if it fails, `events` are given back with the error (the
    /// waiting ones' callers are told of it).
    pub async fn append_with(
        &self,
        events: Vec<AuditEvent>,
        write: impl AsyncFnOnce(&mut Vec<AuditRecord>) -> Result<(), StoreError>,
    ) -> Result<Head, (StoreError, Vec<AuditEvent>)> {
        let mut head = self.head.lock().await;
        self.append_locked(&mut head, events, write).await
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seals the waiting events, then `mine`, after `head`, and has `write`
    /// store them; answers the waiting ones and moves the head. Returns the
    /// head after `mine`, or the error and `mine` back.
    async fn append_locked(
        &self,
        head: &mut Head,
        mine: Vec<AuditEvent>,
        write: impl AsyncFnOnce(&mut Vec<AuditRecord>) -> Result<(), StoreError>,
    ) -> Result<Head, (StoreError, Vec<AuditEvent>)> {
        let mine_count = mine.len();
        let waiting = std::mem::take(&mut *self.waiting());
        let mut next = head.clone();
        let mut records = Vec::new();
        let mut answers = Vec::with_capacity(waiting.len());
        for (events, reply) in waiting {
            for e in events {
                let r = AuditRecord::seal(&next, e);
                next = Head::of(&r);
                records.push(r);
            }
            answers.push((reply, next.clone()));
        }
        for e in mine {
            let r = AuditRecord::seal(&next, e);
            next = Head::of(&r);
            records.push(r);
        }
        if records.is_empty() {
            return Ok(next);
        }
        if let Err(e) = write(&mut records).await {
            for r in &records {
                tracing::error!(
                    target: "vigie::audit", error = %e, actor = %r.event.actor, action = %r.event.action,
                    target_id = ?r.event.target, outcome = %r.event.outcome, "audit record NOT written; the request fails"
                );
            }
            // The commit may have happened and only its answer been lost:
            // continue from what the store holds.
            if let Ok(Some(stored)) = self.store.audit_head().await {
                *head = Head::of(&stored);
            }
            for (reply, _) in answers {
                let _ = reply.send(Err(e.to_string()));
            }
            let first_mine = records.len() - mine_count;
            return Err((e, records.drain(first_mine..).map(|r| r.event).collect()));
        }
        *head = next.clone();
        tracing::info!(target: "vigie::audit", seq = next.seq, hash = %next.hash, records = records.len(), "audit head");
        if !self.anchor_kept.load(std::sync::atomic::Ordering::Acquire) {
            self.write_anchor(&next).await;
        }
        for (reply, h) in answers {
            let _ = reply.send(Ok(h));
        }
        Ok(next)
    }

    /// Keeps the anchor at the head, written at most every `every` (and
    /// once more when `stop` fires): a cut of the trail's last `every` of
    /// records before a crash would go unnoticed, which is the price of not
    /// syncing a file twice per audited request.
    pub async fn run_anchor(self: Arc<Self>, every: std::time::Duration, stop: tokio_util::sync::CancellationToken) {
        if self.anchor.is_none() {
            return;
        }
        self.anchor_kept.store(true, std::sync::atomic::Ordering::Release);
        let mut anchored = 0;
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(every) => false,
                () = stop.cancelled() => true,
            };
            let head = self.head.lock().await.clone();
            if head.seq > anchored {
                self.write_anchor(&head).await;
                anchored = head.seq;
            }
            if stopping {
                break;
            }
        }
        // Appends after this point anchor themselves again.
        self.anchor_kept.store(false, std::sync::atomic::Ordering::Release);
        let head = self.head.lock().await.clone();
        if head.seq > anchored {
            self.write_anchor(&head).await;
        }
    }

    async fn write_anchor(&self, head: &Head) {
        let Some(path) = &self.anchor else { return };
        let (path, h) = (path.clone(), head.clone());
        let written = tokio::task::spawn_blocking(move || write_anchor(&path, &h)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                target: "vigie::audit", error = %e, anchor = %anchor_name(self.anchor.as_deref()),
                "the audit anchor cannot be written: a cut tail of the trail would go unnoticed"
            ),
            Err(e) => tracing::error!(target: "vigie::audit", error = %e, "the audit anchor task failed"),
        }
    }

    /// An action by Vigie itself (start, retention).
    pub async fn record_system(
        &self,
        action: &str,
        detail: Option<String>,
        after: Option<Value>,
    ) -> Result<Head, AuditError> {
        self.record(AuditEvent {
            detail,
            after,
            ..system_event(action)
        })
        .await
    }

    /// Checks the caller may perform `action`; a refusal is recorded
    /// (outcome `denied`, with the reason) before it is returned as 403.
    pub async fn check(
        &self,
        caller: &Caller,
        action: Action,
        verb: &str,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        match caller.check(action) {
            Ok(()) => Ok(()),
            Err(denied) => Err(self.denied(caller, verb, target, &denied).await),
        }
    }

    /// Like [`Audit::check`], for an action on something in `scope` (the grant must cover it).
    pub async fn check_in(
        &self,
        caller: &Caller,
        action: Action,
        scope: Option<&Scope>,
        verb: &str,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        match caller.check_in(action, scope) {
            Ok(()) => Ok(()),
            Err(denied) => Err(self.denied(caller, verb, target, &denied).await),
        }
    }

    /// Records a refusal and returns the 403 to answer (or the 500 if the
    /// refusal could not be recorded).
    pub async fn denied(&self, caller: &Caller, verb: &str, target: Option<&str>, why: &Denied) -> ApiError {
        let recorded = self
            .record(AuditEvent {
                target: target.map(str::to_owned),
                outcome: Outcome::Denied,
                detail: Some(why.to_string()),
                ..event(caller, verb)
            })
            .await;
        match recorded {
            Ok(_) => ApiError::from(why.clone()),
            Err(e) => e.into(),
        }
    }

    /// The head in memory: the last record appended by this process.
    pub async fn head(&self) -> Head {
        self.head.lock().await.clone()
    }

    /// Records a batch operation that wrote nothing (every entity was
    /// invalid or refused): see [`batch_note`].
    pub async fn batch_refused(
        &self,
        caller: &Caller,
        (action, mode): (&str, &str),
        invalid: usize,
    ) -> Result<(), ApiError> {
        let done = Ok(WriteOutcome::Batch(Vec::new()));
        self.record(batch_event(event(caller, action), mode, &done, invalid))
            .await?;
        Ok(())
    }

    /// Records a provisioning request: the device ids, and which of them
    /// replaced an existing definition. Device bodies are not copied: they
    /// carry the transport's keys.
    pub async fn devices_provisioned(
        &self,
        caller: &Caller,
        registry: &DeviceRegistry,
        devices: &[Device],
        result: &Result<(), StoreError>,
    ) -> Result<(), ApiError> {
        let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        let replaced: Vec<&str> = ids.iter().copied().filter(|id| registry.get(id).is_some()).collect();
        let (outcome, detail) = match result {
            Ok(()) => (Outcome::Ok, format!("{} devices provisioned", ids.len())),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        self.record(AuditEvent {
            target: (ids.len() == 1).then(|| ids[0].to_owned()),
            outcome,
            detail: Some(detail),
            before: (!replaced.is_empty()).then(|| serde_json::json!({"replaced": replaced})),
            after: Some(serde_json::json!({"devices": devices.iter().map(device_summary).collect::<Vec<_>>()})),
            ..event(caller, "device.provision")
        })
        .await?;
        Ok(())
    }

    /// Records a device removal (`Ok(false)`: there was no such device).
    pub async fn device_deleted(
        &self,
        caller: &Caller,
        device_id: &str,
        before: Option<&Device>,
        result: &Result<bool, StoreError>,
    ) -> Result<(), ApiError> {
        let (outcome, detail) = match result {
            Ok(true) => (Outcome::Ok, None),
            Ok(false) => (Outcome::Failed, Some(format!("no device '{device_id}'"))),
            Err(e) => (Outcome::Failed, Some(e.to_string())),
        };
        self.record(AuditEvent {
            target: Some(device_id.to_owned()),
            outcome,
            detail,
            before: before.map(device_summary),
            ..event(caller, "device.delete")
        })
        .await?;
        Ok(())
    }

    pub fn anchor_path(&self) -> Option<&Path> {
        self.anchor.as_deref()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// What the trail keeps of a device: who it is and what it feeds, not its keys.
fn device_summary(d: &Device) -> Value {
    let transport = serde_json::to_value(&d.transport)
        .ok()
        .and_then(|t| t.get("transport").cloned())
        .unwrap_or(Value::Null);
    serde_json::json!({
        "deviceId": d.device_id, "transport": transport, "entityName": d.entity_name.as_str(),
        "entityType": d.entity_type, "scope": d.scope.as_ref().map(|s| s.to_ngsi()),
    })
}

fn anchor_name(path: Option<&Path>) -> String {
    path.map_or_else(|| "(no anchor)".to_owned(), |p| p.display().to_string())
}

/// An event by Vigie itself.
pub fn system_event(action: &str) -> AuditEvent {
    AuditEvent {
        at: Timestamp::now(),
        actor: "vigie".to_owned(),
        role: None,
        credential: "system".to_owned(),
        source: None,
        action: action.to_owned(),
        target: None,
        outcome: Outcome::Ok,
        detail: None,
        before: None,
        after: None,
    }
}

/// Verifies the whole stored trail, page by page, against the anchor.
/// `Ok(Err(problem))` names the first problem; `Err` is a failure to read.
pub async fn verify_trail(store: &dyn Store, anchor: Option<Head>) -> Result<Result<Verified, Problem>, StoreError> {
    let mut v = Verifier::new(anchor);
    loop {
        let after = v.head().seq;
        let page = match store.audit_after(after, VERIFY_PAGE).await {
            Ok(p) => p,
            // A row that does not even decode was edited: verify what comes
            // before it, then name it.
            Err(StoreError::CorruptAudit { seq, .. }) if seq > after => {
                let limit = usize::try_from(seq - after - 1).unwrap_or(usize::MAX);
                let readable = if limit > 0 {
                    store.audit_after(after, limit).await?
                } else {
                    Vec::new()
                };
                for r in readable.iter().filter(|r| r.seq < seq) {
                    if let Err(p) = v.push(r) {
                        return Ok(Err(p));
                    }
                }
                let last = v.head().seq;
                return Ok(Err(if last + 1 < seq {
                    Problem::Removed {
                        after_seq: last,
                        missing: seq - last - 1,
                    }
                } else {
                    Problem::Changed { seq }
                }));
            }
            Err(e) => return Err(e),
        };
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let Err(p) = v.push(r) {
                return Ok(Err(p));
            }
        }
    }
    Ok(v.finish())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vigie_core::{Attribute, Entity, EntityId, Scope};

    use super::changed_parts;

    fn light(scope: &str) -> Entity {
        let id = EntityId::new("urn:ngsi-ld:Streetlight:dijon:000001").expect("an id");
        Entity::new(id, "Streetlight", Some(Scope::from_ngsi(scope).expect("a scope")))
            .with("powerState", Attribute::property("on"))
            .with("name", Attribute::property("Lanterne 1"))
    }

    #[test]
    fn a_change_keeps_what_differs_on_each_side() {
        let before = light("/dijon/lighting").with("faulty", Attribute::property(true));
        let mut after = light("/chenove/lighting").with("powerConsumption", Attribute::property(38.5));
        after.attributes.insert("powerState".into(), Attribute::property("off"));
        let (b, a) = changed_parts(&before, &after);
        assert_eq!(b["id"], "urn:ngsi-ld:Streetlight:dijon:000001");
        assert_eq!(a["type"], "Streetlight");
        assert_eq!(
            (&b["scope"], &a["scope"]),
            (&json!("/dijon/lighting"), &json!("/chenove/lighting"))
        );
        assert_eq!(
            (&b["powerState"]["value"], &a["powerState"]["value"]),
            (&json!("on"), &json!("off"))
        );
        // Removed on one side, added on the other; the untouched name on neither.
        assert_eq!((b.get("faulty").is_some(), a.get("faulty").is_some()), (true, false));
        assert_eq!(
            (
                b.get("powerConsumption").is_some(),
                a["powerConsumption"]["value"].clone()
            ),
            (false, json!(38.5))
        );
        assert!(b.get("name").is_none() && a.get("name").is_none());
    }

    #[test]
    fn no_change_leaves_only_the_entity_named() {
        let (b, a) = changed_parts(&light("/dijon/lighting"), &light("/dijon/lighting"));
        assert_eq!(
            b,
            json!({"id": "urn:ngsi-ld:Streetlight:dijon:000001", "type": "Streetlight"})
        );
        assert_eq!(a, b);
    }
}
