//! The alarm desk: watches every committed change of the twin, raises an
//! alarm when a condition appears on a piece of equipment, counts it again
//! when it comes back, clears it when it goes, and folds the equipment that
//! depends on an alarmed one into that alarm (a cabinet's power cut is one
//! alarm with its lights as children, not one per light). Every change is
//! stored (by the recorder, in ordered batches) before consoles are told of
//! it, and every transition is in the audit trail.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use vigie_core::alarm::{self, Alarm, AlarmAction, Condition};
use vigie_core::{Entity, EntityId, Timestamp};
use vigie_store::Store;

use crate::api::ApiError;
use crate::audit::Audit;
use crate::twin::Twin;

/// How many alarm changes a slow reader of [`Alarms::subscribe`] may lag.
const FEED_CAPACITY: usize = 1024;

type Key = (EntityId, String);

/// The alarm type whose source's dependants are part of it.
const ROOT_CAUSE: &str = "power-cut";

/// Open alarms, and which conditions held at the last look at each source
/// (a condition that goes on being reported is not a new occurrence).
#[derive(Default)]
struct Book {
    alarms: HashMap<String, Alarm>,
    /// Ordered by source then type, so a source's alarms are one range.
    by_key: std::collections::BTreeMap<Key, String>,
    present: HashSet<Key>,
    /// Dependants folded into a parent's alarm: child → alarm id.
    folded: HashMap<EntityId, String>,
}

impl Book {
    /// Whether `entity` is part of its parent's open root-cause alarm; when
    /// it depends on an alarmed parent it was not listed under yet (it
    /// appeared after the cut), it joins it: the parent's alarm is returned
    /// to be recorded.
    fn fold(&mut self, entity: &Entity) -> (bool, Option<Alarm>) {
        if self.folded.get(&entity.id).is_some_and(|a| self.alarms.contains_key(a)) {
            return (true, None);
        }
        let Some(parent) = alarm::parent_of(entity).and_then(|p| EntityId::new(p).ok()) else {
            return (false, None);
        };
        let Some(id) = self.by_key.get(&(parent, ROOT_CAUSE.to_owned())).cloned() else {
            return (false, None);
        };
        let Some(parent_alarm) = self.alarms.get_mut(&id) else {
            return (false, None);
        };
        parent_alarm.children.push(entity.id.clone());
        let updated = parent_alarm.clone();
        self.folded.insert(entity.id.clone(), id);
        (true, Some(updated))
    }

    fn insert(&mut self, alarm: Alarm) {
        let key = (alarm.source.clone(), alarm.alarm_type.clone());
        for child in &alarm.children {
            self.folded.insert(child.clone(), alarm.id.clone());
        }
        if alarm.state.is_open() {
            self.by_key.insert(key, alarm.id.clone());
            self.alarms.insert(alarm.id.clone(), alarm);
        } else {
            self.by_key.remove(&key);
            self.folded.retain(|_, id| *id != alarm.id);
            self.alarms.remove(&alarm.id);
        }
    }
}

/// How long each type of equipment may stay silent: the console's "no
/// recent data" limits, so a grey asset on the map and a `silent` alarm
/// mean the same thing.
pub struct Freshness {
    default_minutes: u32,
    by_type: std::collections::BTreeMap<String, u32>,
}

impl Freshness {
    pub fn from_config(c: &crate::config::ConsoleConfig) -> Self {
        Self {
            default_minutes: c.stale_after_minutes,
            by_type: c.stale_after_by_type.clone(),
        }
    }

    fn limit(&self, entity_type: &str) -> jiff::SignedDuration {
        let minutes = self.by_type.get(entity_type).copied().unwrap_or(self.default_minutes);
        jiff::SignedDuration::from_mins(i64::from(minutes))
    }
}

/// The alarm type of equipment silent beyond its limit.
const SILENT: &str = "silent";
/// How often silences, flapping alarms and shelving are looked at.
const TICK: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Alarms {
    store: Arc<dyn Store>,
    twin: Arc<Twin>,
    audit: Arc<Audit>,
    book: Mutex<Book>,
    feed: broadcast::Sender<Alarm>,
    freshness: Freshness,
    /// Silence is judged only once Vigie has been up for the limit: after a
    /// restart, equipment gets the time to report before it is called silent.
    started: Timestamp,
    escalation: Escalation,
    procedures: Vec<vigie_core::alarm::Procedure>,
    /// The city's declarative rules, evaluated on every change and tick.
    rules: Mutex<vigie_core::rules::Engine>,
    /// Alarm types raised by rules: cleared by their rules, not by the
    /// built-in conditions' absence. Replaced with the rules.
    rule_types: RwLock<Arc<HashSet<String>>>,
    /// What rules do besides alarms.
    actions: crate::actions::Actions,
    /// A tick is under way (ticks never overlap).
    ticking: std::sync::atomic::AtomicBool,
    /// Changes on their way to the store, in order.
    recorder: mpsc::Sender<Recording>,
    /// The recorder's end, taken by [`Alarms::run`].
    recordings: Mutex<Option<mpsc::Receiver<Recording>>>,
}

/// Changes handed to the recorder, each with its audit event; `done` when
/// they are stored.
struct Recording {
    changes: Vec<(Alarm, vigie_core::audit::AuditEvent)>,
    done: tokio::sync::oneshot::Sender<()>,
}

/// Most recordings the recorder writes in one transaction.
const RECORD_BATCH: usize = 1_000;

/// How the desk judges and acts, from the configuration.
pub struct Policy {
    pub freshness: Freshness,
    pub escalation: Escalation,
    pub procedures: Vec<vigie_core::alarm::Procedure>,
}

impl Policy {
    pub fn from_config(config: &crate::Config, notifier: Arc<crate::notify::Notifier>) -> anyhow::Result<Self> {
        Ok(Self {
            freshness: Freshness::from_config(&config.console),
            escalation: Escalation::from_config(&config.alarms, notifier)?,
            procedures: load_procedures(&config.alarms.procedures_file)?,
        })
    }
}

/// The alarm types a rule set raises.
fn raised_types(rules: &vigie_core::rules::RuleSet) -> Arc<HashSet<String>> {
    Arc::new(
        rules
            .rules()
            .flat_map(|r| r.actions.iter())
            .filter_map(|a| match a {
                vigie_core::rules::RuleAction::RaiseAlarm { alarm_type, .. } => Some(alarm_type.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// The built-in procedures (French: the control room's language).
const BUILT_IN_PROCEDURES: &str = include_str!("../defaults/procedures.toml");

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcedureFile {
    #[serde(default)]
    procedure: Vec<vigie_core::alarm::Procedure>,
}

/// The built-in procedures, replaced type by type by the city's file.
pub fn load_procedures(path: &str) -> anyhow::Result<Vec<vigie_core::alarm::Procedure>> {
    let parse = |text: &str, origin: &str| -> anyhow::Result<Vec<vigie_core::alarm::Procedure>> {
        let file: ProcedureFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        for p in &file.procedure {
            anyhow::ensure!(
                !p.steps.is_empty() && p.steps.len() <= vigie_core::alarm::MAX_STEPS,
                "{origin}: the procedure for '{}' needs 1 to {} steps",
                p.alarm_type,
                vigie_core::alarm::MAX_STEPS
            );
        }
        Ok(file.procedure)
    };
    let mut procedures = parse(BUILT_IN_PROCEDURES, "the built-in procedures")?;
    if !path.is_empty() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("alarms.procedures_file: cannot read {path}: {e}"))?;
        for own in parse(&text, &format!("alarms.procedures_file ({path})"))? {
            procedures.retain(|p| p.alarm_type != own.alarm_type);
            procedures.push(own);
        }
    }
    Ok(procedures)
}

/// Where and when unacknowledged alarms are escalated.
pub struct Escalation {
    after: Option<jiff::SignedDuration>,
    webhooks: Vec<String>,
    emails: Vec<String>,
    notifier: Arc<crate::notify::Notifier>,
}

impl Escalation {
    pub fn from_config(
        c: &crate::config::AlarmsConfig,
        notifier: Arc<crate::notify::Notifier>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            c.escalation_emails.is_empty() || notifier.mails(),
            "alarms.escalation_emails needs mail.smtp_url"
        );
        let after = (c.escalate_after_secs > 0)
            .then(|| jiff::SignedDuration::from_secs(i64::try_from(c.escalate_after_secs).unwrap_or(i64::MAX)));
        for url in &c.escalation_webhooks {
            let parsed = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("alarms.escalation_webhooks: '{url}' is not a URL: {e}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "alarms.escalation_webhooks: '{url}' is not an http(s) URL"
            );
        }
        Ok(Self {
            after,
            webhooks: c.escalation_webhooks.clone(),
            emails: c.escalation_emails.clone(),
            notifier,
        })
    }

    /// Sends the escalation to its level's webhook and address (the last
    /// ones for levels beyond), in the background; a failure is logged (the
    /// alarm's level and the audit trail keep it).
    fn notify(&self, alarm: &Alarm) {
        let level = usize::from(alarm.escalation_level).saturating_sub(1);
        let what = format!("escalation of alarm {}", alarm.id);
        if let Some(to) = self.emails.get(level).or(self.emails.last()) {
            let subject = format!(
                "[Vigie] Alarme {} non prise en charge (niveau {}) : {}",
                alarm.severity.as_str(),
                alarm.escalation_level,
                alarm.alarm_type
            );
            let body = format!(
                "L'alarme {id} ({kind}, {severity}) sur {source} n'a pas été acquittée.\n\
                 Levée le {raised}, {children} équipement(s) touché(s).\n{detail}\n\n\
                 Alarm {id} ({kind}) on {source} has not been acknowledged (escalation level {level}).\n",
                id = alarm.id,
                kind = alarm.alarm_type,
                severity = alarm.severity.as_str(),
                source = alarm.source,
                raised = alarm.raised_at,
                children = alarm.children.len(),
                detail = alarm.detail,
                level = alarm.escalation_level,
            );
            self.notifier.mail(to, subject, body, what.clone());
        }
        if let Some(url) = self.webhooks.get(level).or(self.webhooks.last()) {
            let body = serde_json::json!({"level": alarm.escalation_level, "alarm": alarm});
            self.notifier.post_json(url, body, what);
        }
    }
}

impl Alarms {
    /// The desk with the alarms left open by the previous run.
    pub async fn load(
        store: Arc<dyn Store>,
        twin: Arc<Twin>,
        audit: Arc<Audit>,
        actions: crate::actions::Actions,
        policy: Policy,
        rules: vigie_core::rules::RuleSet,
    ) -> anyhow::Result<Self> {
        let Policy {
            freshness,
            escalation,
            procedures,
        } = policy;
        let rule_types = RwLock::new(raised_types(&rules));
        let (recorder, recordings) = mpsc::channel(10_000);
        let mut book = Book::default();
        for alarm in store.open_alarms().await? {
            book.present.insert((alarm.source.clone(), alarm.alarm_type.clone()));
            book.insert(alarm);
        }
        tracing::info!(open = book.alarms.len(), "alarms loaded");
        Ok(Self {
            store,
            twin,
            audit,
            book: Mutex::new(book),
            feed: broadcast::channel(FEED_CAPACITY).0,
            freshness,
            started: Timestamp::now(),
            escalation,
            procedures,
            rules: Mutex::new(vigie_core::rules::Engine::new(rules)),
            rule_types,
            actions,
            ticking: std::sync::atomic::AtomicBool::new(false),
            recorder,
            recordings: Mutex::new(Some(recordings)),
        })
    }

    /// How often a rule failed to evaluate since start, and its last error.
    pub fn rule_errors(&self, rule_id: &str) -> Option<vigie_core::rules::EvalErrors> {
        let engine = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        engine
            .evaluation_errors()
            .find(|(id, _)| *id == rule_id)
            .map(|(_, e)| e.clone())
    }

    /// The procedure to follow for a type of alarm.
    pub fn procedure(&self, alarm_type: &str) -> Option<&vigie_core::alarm::Procedure> {
        vigie_core::alarm::procedure_for(&self.procedures, alarm_type)
    }

    /// Every alarm change, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Alarm> {
        self.feed.subscribe()
    }

    /// The open alarms (shelved ones included), most urgent then oldest first.
    pub fn open(&self) -> Vec<Alarm> {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let mut alarms: Vec<Alarm> = book.alarms.values().cloned().collect();
        alarms.sort_by(|a, b| (a.severity, a.raised_at, &a.id).cmp(&(b.severity, b.raised_at, &b.id)));
        alarms
    }

    /// One alarm, open or closed.
    pub async fn get(&self, id: &str) -> Result<Option<Alarm>, ApiError> {
        let open = self
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .alarms
            .get(id)
            .cloned();
        match open {
            Some(a) => Ok(Some(a)),
            None => Ok(self.store.alarm(id).await?),
        }
    }

    /// Evaluates the whole twin once (what held while Vigie was down, or
    /// what a crash kept from being stored, is raised now; what vanished is
    /// cleared), then every committed change until `stop`. A lag re-evaluates
    /// the whole twin: nothing is missed, only recomputed.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, mut rules: watch::Receiver<vigie_core::rules::RuleSet>) {
        let mut feed = self.twin.subscribe();
        let queue = self.recordings.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(queue) = queue {
            tokio::spawn(Arc::clone(&self).run_recorder(queue, stop.clone()));
        }
        self.evaluate_all().await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching_rules = true;
        loop {
            let committed = tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    // The tick walks the whole twin: in its own task, so
                    // the changes behind it are not kept waiting; one at a time.
                    if !self.ticking.swap(true, std::sync::atomic::Ordering::AcqRel) {
                        let desk = Arc::clone(&self);
                        tokio::spawn(async move {
                            desk.on_tick(Timestamp::now()).await;
                            desk.ticking.store(false, std::sync::atomic::Ordering::Release);
                        });
                    }
                    continue;
                }
                changed = rules.changed(), if watching_rules => {
                    match changed {
                        Ok(()) => {
                            let set = rules.borrow_and_update().clone();
                            self.reload(set);
                        }
                        // The rule book is gone (shutdown): keep the rules in force.
                        Err(_) => watching_rules = false,
                    }
                    continue;
                }
                received = feed.recv() => received,
            };
            match committed {
                Ok(changes) => {
                    for (_, after) in changes.iter() {
                        if let Some(entity) = after {
                            self.evaluate(entity).await;
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the alarm desk fell behind the twin: re-evaluating every entity"
                    );
                    let mut all = Vec::new();
                    self.twin.for_each(&mut |e| all.push(e.id.clone()));
                    for id in all {
                        if let Some(entity) = self.twin.get(id.as_str()) {
                            self.evaluate(&entity).await;
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// A new rule set: unchanged rules keep their state (a threshold's
    /// pending duration, an absence's last report). What a removed rule
    /// raised stays open for the operator to close.
    fn reload(&self, set: vigie_core::rules::RuleSet) {
        let types = raised_types(&set);
        let count = set.len();
        self.rules.lock().unwrap_or_else(PoisonError::into_inner).reload(set);
        let mut held = self.rule_types.write().unwrap_or_else(PoisonError::into_inner);
        // Types of removed rules stay theirs: their alarms are not the
        // built-in conditions' to clear.
        let mut all: HashSet<String> = (**held).clone();
        all.extend(types.iter().cloned());
        *held = Arc::new(all);
        tracing::info!(rules = count, "rules reloaded");
    }

    async fn evaluate_all(&self) {
        let mut all = Vec::new();
        self.twin.for_each(&mut |e| all.push(e.id.clone()));
        for id in all {
            if let Some(entity) = self.twin.get(id.as_str()) {
                self.evaluate(&entity).await;
            }
        }
    }

    /// The time-driven part: equipment silent beyond its limit raises a
    /// `silent` alarm (unless it is part of its parent's alarm), and flapping
    /// alarms whose condition stayed away settle.
    async fn on_tick(&self, now: Timestamp) {
        // The twin is read before the engine is locked: changes wait on
        // the engine only while it evaluates.
        let no_rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
        let firings = if no_rules {
            Vec::new()
        } else {
            let all = self
                .twin
                .select(crate::twin::Candidates::All, &|_| true, 0, usize::MAX, false)
                .entities;
            let mut engine = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
            engine.on_tick(now, all.iter().map(|e| &**e))
        };
        self.fire(firings, now).await;
        let mut silent = Vec::new();
        self.twin.for_each_glance(&mut |sighting| {
            if let crate::twin::Sighting::Located(g) = sighting {
                let limit = self.freshness.limit(&g.entity_type);
                let judged = now.duration_since(self.started) > limit;
                if judged && g.condition.status(now, limit) == vigie_core::status::AssetStatus::Stale {
                    silent.push(g.id.clone());
                }
            }
        });
        let mut changed = Vec::new();
        {
            let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
            for id in silent {
                let key = (id.clone(), SILENT.to_owned());
                if book.by_key.contains_key(&key) {
                    continue;
                }
                let Some(entity) = self.twin.get(id.as_str()) else {
                    continue;
                };
                // Heard from since the scan (the tick runs beside the changes).
                let limit = self.freshness.limit(&entity.entity_type);
                if vigie_core::status::classify(&entity, now, limit) != vigie_core::status::AssetStatus::Stale {
                    continue;
                }
                let (folded, parent) = book.fold(&entity);
                if let Some(parent) = parent {
                    changed.push((parent, "alarm.fold"));
                }
                if folded {
                    continue;
                }
                let condition = Condition {
                    alarm_type: SILENT.into(),
                    severity: vigie_core::alarm::Severity::Minor,
                    detail: format!("nothing heard for more than {} min", limit.as_secs() / 60),
                };
                book.present.insert(key);
                let alarm = self.raise(&entity, &condition, now);
                book.insert(alarm.clone());
                changed.push((alarm, "alarm.raise"));
            }
            for alarm in book.alarms.values_mut() {
                if alarm.settle(now) {
                    changed.push((alarm.clone(), "alarm.clear"));
                }
                if let Some(after) = self.escalation.after
                    && alarm.escalation_due(now, after)
                {
                    alarm.escalation_level += 1;
                    alarm.updated_at = now;
                    self.escalation.notify(alarm);
                    changed.push((alarm.clone(), "alarm.escalate"));
                }
            }
        }
        self.record(changed, None).await;
    }

    /// What changed for one entity: new conditions raise (or count again,
    /// or fold into the parent's alarm), vanished ones clear.
    async fn evaluate(&self, entity: &Entity) {
        let now = Timestamp::now();
        let firings = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .on_change(entity, now);
        self.fire(firings, now).await;
        let conditions = alarm::conditions(entity);
        let rule_types = Arc::clone(&self.rule_types.read().unwrap_or_else(PoisonError::into_inner));
        let mut changed = Vec::new();
        {
            let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
            let mut holding: HashSet<&str> = conditions.iter().map(|c| c.alarm_type.as_str()).collect();
            // Silence ends when the equipment is heard again, not at any change.
            let limit = self.freshness.limit(&entity.entity_type);
            if vigie_core::status::classify(entity, now, limit) == vigie_core::status::AssetStatus::Stale {
                holding.insert(SILENT);
            }
            // Gone: clear the source's open alarms whose condition no longer holds.
            // The source's own alarms only (a range of the index, not every
            // open alarm: this runs for every change).
            let gone: Vec<String> = book
                .by_key
                .range((entity.id.clone(), String::new())..)
                .take_while(|((source, _), _)| *source == entity.id)
                .filter(|((_, kind), _)| !holding.contains(kind.as_str()) && !rule_types.contains(kind))
                .map(|(_, id)| id.clone())
                .collect();
            for id in gone {
                let Some(a) = book.alarms.get_mut(&id) else {
                    continue;
                };
                let was = a.state;
                a.clear(now);
                let cleared = (a.state != was).then(|| a.clone());
                let kind = a.alarm_type.clone();
                book.present.remove(&(entity.id.clone(), kind));
                if let Some(cleared) = cleared {
                    changed.push((cleared, "alarm.clear"));
                }
            }
            for condition in &conditions {
                let key = (entity.id.clone(), condition.alarm_type.clone());
                let fresh = book.present.insert(key.clone());
                if !fresh {
                    continue; // Still reported: the same occurrence.
                }
                if let Some(id) = book.by_key.get(&key).cloned() {
                    if let Some(a) = book.alarms.get_mut(&id) {
                        a.recur(condition, now);
                        changed.push((a.clone(), "alarm.recur"));
                    }
                    continue;
                }
                // Part of its parent's alarm? (a light on a cut cabinet)
                let (folded, parent) = book.fold(entity);
                if let Some(parent) = parent {
                    changed.push((parent, "alarm.fold"));
                }
                if folded {
                    continue;
                }
                let alarm = self.raise(entity, condition, now);
                book.insert(alarm.clone());
                changed.push((alarm, "alarm.raise"));
            }
        }
        self.record(changed, None).await;
    }

    /// Carries out what rules decided: raise or clear their alarms (with the
    /// same de-duplication and folding as built-in conditions); the rest
    /// goes to [`crate::actions::Actions`].
    async fn fire(&self, firings: Vec<vigie_core::rules::Firing>, now: Timestamp) {
        use vigie_core::rules::RuleAction;
        for firing in firings {
            let Some(entity) = self.twin.get(firing.entity_id.as_str()) else {
                continue;
            };
            for action in firing.actions.iter() {
                match action {
                    RuleAction::RaiseAlarm {
                        alarm_type,
                        severity,
                        detail,
                    } => {
                        if firing.cleared {
                            self.clear_rule_alarm(&entity, alarm_type, now).await;
                        } else {
                            let condition = Condition {
                                alarm_type: alarm_type.clone(),
                                severity: *severity,
                                detail: format!(
                                    "{} (rule {} v{})",
                                    vigie_core::rules::template::render(detail, &entity),
                                    firing.rule_id,
                                    firing.rule_version
                                ),
                            };
                            self.raise_rule_alarm(&entity, &condition, now).await;
                        }
                    }
                    RuleAction::ClearAlarm { alarm_type } => {
                        if !firing.cleared {
                            self.clear_rule_alarm(&entity, alarm_type, now).await;
                        }
                    }
                    other => self.actions.carry_out(&firing, &entity, other).await,
                }
            }
        }
    }

    async fn raise_rule_alarm(&self, entity: &Entity, condition: &Condition, now: Timestamp) {
        let mut changed = Vec::new();
        {
            let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (entity.id.clone(), condition.alarm_type.clone());
            book.present.insert(key.clone());
            if let Some(id) = book.by_key.get(&key).cloned() {
                if let Some(a) = book.alarms.get_mut(&id) {
                    a.recur(condition, now);
                    changed.push((a.clone(), "alarm.recur"));
                }
            } else {
                let (folded, parent) = book.fold(entity);
                if let Some(parent) = parent {
                    changed.push((parent, "alarm.fold"));
                }
                if !folded {
                    let alarm = self.raise(entity, condition, now);
                    book.insert(alarm.clone());
                    changed.push((alarm, "alarm.raise"));
                }
            }
        }
        self.record(changed, None).await;
    }

    async fn clear_rule_alarm(&self, entity: &Entity, alarm_type: &str, now: Timestamp) {
        let cleared = {
            let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (entity.id.clone(), alarm_type.to_owned());
            book.present.remove(&key);
            let id = book.by_key.get(&key).cloned();
            id.and_then(|id| book.alarms.get_mut(&id)).and_then(|a| {
                let was = a.state;
                a.clear(now);
                (a.state != was).then(|| a.clone())
            })
        };
        if let Some(alarm) = cleared {
            self.record(vec![(alarm, "alarm.clear")], None).await;
        }
    }

    /// A new alarm; a root cause (no supply) takes in the equipment that
    /// depends on its source.
    fn raise(&self, entity: &Entity, condition: &Condition, now: Timestamp) -> Alarm {
        let id = crate::security::secrets::random_hex(8)
            .map_or_else(|_| format!("alarm-{}", now.as_microsecond()), |h| format!("alarm-{h}"));
        let mut alarm = Alarm::raise(id, entity, condition, now);
        if condition.alarm_type == ROOT_CAUSE {
            let source = entity.id.as_str();
            let mut children = Vec::new();
            self.twin.for_each(&mut |e| {
                if alarm::parent_of(e) == Some(source) {
                    children.push(e.id.clone());
                }
            });
            alarm.children = children;
        }
        alarm
    }

    /// Hands alarms' changes to the recorder, which stores, audits and
    /// announces them in order. The desk goes on at once: a slow store does
    /// not hold back the alarms behind (what a crash keeps from being
    /// stored is raised again at start from the twin). An operator's action
    /// waits until its change is recorded.
    async fn record(&self, changes: Vec<(Alarm, &str)>, caller: Option<&crate::security::Caller>) {
        if changes.is_empty() {
            return;
        }
        let changes = changes
            .into_iter()
            .map(|(alarm, verb)| {
                let base = match caller {
                    Some(caller) => crate::audit::event(caller, verb),
                    None => crate::audit::system_event(verb),
                };
                let event = vigie_core::audit::AuditEvent {
                    target: Some(alarm.id.clone()),
                    detail: Some(format!(
                        "{} {} on {} ({}, {} children, occurrence {})",
                        alarm.severity.as_str(),
                        alarm.alarm_type,
                        alarm.source,
                        alarm.state.as_str(),
                        alarm.children.len(),
                        alarm.occurrences
                    )),
                    ..base
                };
                (alarm, event)
            })
            .collect();
        let (done, recorded) = tokio::sync::oneshot::channel();
        if self.recorder.send(Recording { changes, done }).await.is_err() {
            tracing::warn!("the alarm recorder has stopped: a change is not stored");
            return;
        }
        if caller.is_some() {
            let _ = recorded.await;
        }
    }

    /// Stores, audits and announces what the desk hands over, batching
    /// whatever is waiting into one transaction and one audit append (an
    /// alarm storm is one commit). A store failure is logged: the alarms
    /// stay in memory and are stored at their next change. Ends when `stop`
    /// is cancelled, after what was queued.
    async fn run_recorder(self: Arc<Self>, mut queue: mpsc::Receiver<Recording>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => None,
                next = queue.recv() => next,
            };
            let Some(first) = first.or_else(|| queue.try_recv().ok()) else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < RECORD_BATCH {
                match queue.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            let mut alarms = Vec::new();
            let mut events = Vec::new();
            let mut waiting = Vec::new();
            for Recording { changes, done } in batch {
                for (alarm, event) in changes {
                    alarms.push(alarm);
                    events.push(event);
                }
                waiting.push(done);
            }
            if let Err(e) = self.store.put_alarms(&alarms).await {
                tracing::error!(alarms = alarms.len(), error = %e, "cannot store alarms");
            }
            if let Err(e) = self.audit.record_all(events).await {
                tracing::error!(alarms = alarms.len(), error = %e, "cannot audit alarms' changes");
            }
            for alarm in alarms {
                tracing::info!(alarm = %alarm.id, source = %alarm.source, kind = %alarm.alarm_type, state = alarm.state.as_str(), "alarm");
                let _ = self.feed.send(alarm);
            }
            for done in waiting {
                let _ = done.send(());
            }
        }
    }

    /// An operator's action on an open alarm.
    pub async fn act(
        &self,
        id: &str,
        action: &AlarmAction,
        caller: &crate::security::Caller,
    ) -> Result<Alarm, ApiError> {
        let now = Timestamp::now();
        let alarm = {
            let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
            let alarm = book
                .alarms
                .get_mut(id)
                .ok_or_else(|| ApiError::NotFound(format!("no open alarm '{id}'")))?;
            alarm
                .apply(action, &caller.principal.subject, now)
                .map_err(|e| ApiError::BadRequestData(e.to_string()))?;
            let alarm = alarm.clone();
            if !alarm.state.is_open() {
                book.insert(alarm.clone());
            }
            alarm
        };
        self.record(vec![(alarm.clone(), action.verb())], Some(caller)).await;
        Ok(alarm)
    }
}
