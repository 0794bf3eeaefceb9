//! The city's automation rules, in one book: those of the rules file
//! (`alarms.rules_file`, deployed with the configuration, read-only here)
//! and those written through the API or the console, versioned in the store.
//! Every change is validated against the whole book before it is saved, then
//! the new set goes to the alarm desk, which keeps the state of the rules
//! that did not change.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{Mutex, watch};
use vigie_core::Timestamp;
use vigie_core::rules::{Communes, Rule, RuleError, RuleSet};
use vigie_store::{RuleRecord, Store};

use crate::api::ApiError;
use crate::audit::Audit;
use crate::security::Caller;

/// Where a rule comes from, which says how it is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The rules file: changed by redeploying the file.
    File,
    /// Saved through the API or the console.
    Api,
}

/// A rule as the book shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEntry {
    #[serde(flatten)]
    pub rule: Rule,
    pub origin: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_by: Option<String>,
}

/// A change to a saved rule: either a whole new text, or switches.
pub enum Change {
    Replace(Box<Rule>),
    Switch {
        enabled: Option<bool>,
        communes: Option<Communes>,
    },
    Retire,
}

pub struct Rulebook {
    store: Arc<dyn Store>,
    audit: Arc<Audit>,
    file: Vec<Rule>,
    /// The latest version of each saved rule; the lock also orders saves.
    saved: Mutex<BTreeMap<String, RuleRecord>>,
    published: watch::Sender<RuleSet>,
    /// E-mail can be sent: rules that mail are refused otherwise.
    mails: bool,
    /// Dry runs read much history: one at a time.
    replays: tokio::sync::Semaphore,
}

impl Rulebook {
    /// The file's rules and the saved ones. A saved rule that no longer
    /// validates (written by an older Vigie) is left out and logged, not
    /// fatal: the control post must start.
    pub async fn load(store: Arc<dyn Store>, audit: Arc<Audit>, file: RuleSet, mails: bool) -> anyhow::Result<Self> {
        let file: Vec<Rule> = file.rules().cloned().collect();
        let mut saved = BTreeMap::new();
        for record in store.rules().await? {
            let id = record.rule.id.clone();
            if file.iter().any(|r| r.id == id) {
                tracing::warn!(
                    rule = id,
                    "a saved rule has the id of a rule in the rules file: the file's is used"
                );
                continue;
            }
            if let Err(errors) = vigie_core::rules::spec::compile(record.rule.clone()) {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                tracing::error!(
                    rule = id,
                    errors = list.join("; "),
                    "a saved rule is no longer valid: left out"
                );
                continue;
            }
            saved.insert(id, record);
        }
        let set = combine(&file, &saved).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the rules do not validate together: {}", list.join("; "))
        })?;
        tracing::info!(file = file.len(), saved = saved.len(), "rules loaded");
        Ok(Self {
            store,
            audit,
            file,
            saved: Mutex::new(saved),
            published: watch::channel(set).0,
            mails,
            replays: tokio::sync::Semaphore::new(1),
        })
    }

    /// The rule set in force, and each new one as it is saved.
    pub fn watch(&self) -> watch::Receiver<RuleSet> {
        self.published.subscribe()
    }

    /// Every rule, file ones first, then by id.
    pub async fn list(&self) -> Vec<RuleEntry> {
        let saved = self.saved.lock().await;
        let mut entries: Vec<RuleEntry> = self.file.iter().map(file_entry).collect();
        entries.extend(saved.values().map(saved_entry));
        entries
    }

    pub async fn get(&self, id: &str) -> Option<RuleEntry> {
        if let Some(rule) = self.file.iter().find(|r| r.id == id) {
            return Some(file_entry(rule));
        }
        self.saved.lock().await.get(id).map(saved_entry)
    }

    /// Every saved version of a rule, oldest first.
    pub async fn versions(&self, id: &str) -> Result<Vec<RuleRecord>, ApiError> {
        Ok(self.store.rule_versions(id).await?)
    }

    /// Checks a rule on its own and against this server (e-mail needs a mail
    /// server): every problem, each naming its field.
    pub fn validate(&self, rule: &Rule) -> Result<(), Vec<RuleError>> {
        let mut errors = vigie_core::rules::spec::compile(rule.clone()).err().unwrap_or_default();
        if !self.mails {
            for (i, action) in rule.actions.iter().enumerate() {
                if let vigie_core::rules::RuleAction::Notify {
                    channel: vigie_core::rules::Channel::Email,
                    ..
                } = action
                {
                    errors.push(RuleError::Invalid {
                        rule: rule.id.clone(),
                        field: format!("actions[{i}]"),
                        problem: "this Vigie sends no e-mail: mail.smtp_url is not configured".into(),
                    });
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Saves a new rule as its version 1.
    pub async fn create(&self, mut rule: Rule, caller: &Caller) -> Result<RuleEntry, ApiError> {
        rule.version = 1;
        let mut saved = self.saved.lock().await;
        if self.file.iter().any(|r| r.id == rule.id) || saved.contains_key(&rule.id) {
            return Err(ApiError::AlreadyExists(format!("a rule '{}' exists", rule.id)));
        }
        // A retired rule's id starts again after its last version.
        if let Some(last) = self.store.rule_versions(&rule.id).await?.last() {
            rule.version = last.rule.version + 1;
        }
        self.save(&mut saved, rule, false, caller, "rule.create").await
    }

    /// Changes a saved rule: a new version. `expected`, from `If-Match`, is
    /// the version the caller edited; another since is a conflict.
    pub async fn change(
        &self,
        id: &str,
        change: Change,
        expected: Option<u32>,
        caller: &Caller,
    ) -> Result<RuleEntry, ApiError> {
        if self.file.iter().any(|r| r.id == id) {
            return Err(ApiError::OperationNotSupported(format!(
                "rule '{id}' comes from the rules file (alarms.rules_file): change it there"
            )));
        }
        let mut saved = self.saved.lock().await;
        let current = saved
            .get(id)
            .ok_or_else(|| ApiError::NotFound(format!("no rule '{id}'")))?
            .rule
            .clone();
        if let Some(expected) = expected
            && expected != current.version
        {
            return Err(ApiError::PreconditionFailed(format!(
                "rule '{id}' is at version {}, not {expected}: reload it and edit again",
                current.version
            )));
        }
        let (mut rule, retired, verb) = match change {
            Change::Replace(rule) => {
                let mut rule = *rule;
                if rule.id != id {
                    return Err(ApiError::BadRequestData(format!(
                        "the rule's id '{}' is not '{id}': a rule keeps its id",
                        rule.id
                    )));
                }
                rule.version = current.version;
                (rule, false, "rule.replace")
            }
            Change::Switch { enabled, communes } => {
                let mut rule = current;
                if let Some(enabled) = enabled {
                    rule.enabled = enabled;
                }
                if let Some(communes) = communes {
                    rule.communes = communes;
                }
                (rule, false, "rule.switch")
            }
            Change::Retire => (current, true, "rule.retire"),
        };
        rule.version += 1;
        self.save(&mut saved, rule, retired, caller, verb).await
    }

    /// Validates the book with `rule` in it, stores the version, audits it
    /// and hands the new set to the desk.
    async fn save(
        &self,
        saved: &mut BTreeMap<String, RuleRecord>,
        rule: Rule,
        retired: bool,
        caller: &Caller,
        verb: &str,
    ) -> Result<RuleEntry, ApiError> {
        if !retired {
            self.validate(&rule).map_err(ApiError::InvalidRule)?;
        }
        let record = RuleRecord {
            rule,
            saved_at: Timestamp::now(),
            saved_by: caller.principal.subject.clone(),
            retired,
        };
        let mut next = saved.clone();
        if retired {
            next.remove(&record.rule.id);
        } else {
            next.insert(record.rule.id.clone(), record.clone());
        }
        let set = combine(&self.file, &next).map_err(ApiError::InvalidRule)?;
        self.store.put_rule_version(&record).await?;
        *saved = next;
        self.published.send_replace(set);
        let event = vigie_core::audit::AuditEvent {
            target: Some(format!("rule:{}", record.rule.id)),
            detail: Some(format!(
                "version {}{}",
                record.rule.version,
                if record.rule.enabled { "" } else { ", disabled" }
            )),
            ..crate::audit::event(caller, verb)
        };
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(rule = %record.rule.id, error = %e, "cannot audit a rule's change");
        }
        tracing::info!(rule = %record.rule.id, version = record.rule.version, verb, "rule saved");
        Ok(saved_entry(&record))
    }
}

/// The city's rules file (`alarms.rules_file`), every error named.
pub fn load_file(path: &str) -> anyhow::Result<vigie_core::rules::RuleSet> {
    if path.is_empty() {
        return vigie_core::rules::RuleSet::from_rules(Vec::new())
            .map_err(|e| anyhow::anyhow!("empty rule set: {e:?}"));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("alarms.rules_file: cannot read {path}: {e}"))?;
    vigie_core::rules::RuleSet::parse_toml(&text).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("alarms.rules_file {path}: {}", list.join("; "))
    })
}

fn combine(file: &[Rule], saved: &BTreeMap<String, RuleRecord>) -> Result<RuleSet, Vec<RuleError>> {
    RuleSet::from_rules(
        file.iter()
            .cloned()
            .chain(saved.values().map(|r| r.rule.clone()))
            .collect(),
    )
}

fn file_entry(rule: &Rule) -> RuleEntry {
    RuleEntry {
        rule: rule.clone(),
        origin: Origin::File,
        saved_at: None,
        saved_by: None,
    }
}

fn saved_entry(record: &RuleRecord) -> RuleEntry {
    RuleEntry {
        rule: record.rule.clone(),
        origin: Origin::Api,
        saved_at: Some(record.saved_at),
        saved_by: Some(record.saved_by.clone()),
    }
}

/// The longest span a dry run replays.
pub const DRY_RUN_MAX_SPAN: jiff::SignedDuration = jiff::SignedDuration::from_hours(31 * 24);
/// Most equipment a dry run replays (the first by id beyond).
pub const DRY_RUN_MAX_EQUIPMENT: usize = 5_000;
/// Most recorded values read per attribute of one equipment.
const DRY_RUN_MAX_VALUES_PER_SERIES: usize = 2_000;
/// Equipment whose history is read in one query: with the bound above, at
/// most about a million values in memory at once.
const DRY_RUN_CHUNK: usize = 50;
/// How often the replay's clock ticks, as the desk's does.
const DRY_RUN_TICK: jiff::SignedDuration = jiff::SignedDuration::from_mins(1);

/// What a rule would have done over recorded history.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunReport {
    pub rule: String,
    pub version: u32,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Equipment the rule applies to, replayed.
    pub equipment: usize,
    /// Recorded states replayed.
    pub states: usize,
    /// Times the rule would have fired, and cleared.
    pub fired: usize,
    pub cleared: usize,
    /// In time order.
    pub firings: Vec<DryRunFiring>,
    /// Evaluation failures (an attribute of the wrong type...).
    pub evaluation_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_evaluation_error: Option<String>,
    /// A bound was reached: `notes` says which.
    pub truncated: bool,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunFiring {
    pub at: Timestamp,
    pub entity_id: vigie_core::EntityId,
    /// The condition stopped holding (what the rule raised would clear).
    pub cleared: bool,
}

impl Rulebook {
    /// Replays `rule` over the history recorded from `from` to `to` for the
    /// equipment it applies to in `twin`. Nothing is raised, sent or written.
    /// Replays run one at a time, off the request threads.
    pub async fn dry_run(
        &self,
        twin: &crate::twin::Twin,
        rule: Rule,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DryRunReport, ApiError> {
        let _turn = self
            .replays
            .try_acquire()
            .map_err(|_| ApiError::TooManyRequests("another dry run is under way: try again when it ends".into()))?;
        let store = self.store.as_ref();
        if to <= from {
            return Err(ApiError::BadRequestData(format!(
                "'to' ({to}) must be after 'from' ({from})"
            )));
        }
        if to.duration_since(from) > DRY_RUN_MAX_SPAN {
            return Err(ApiError::BadRequestData(format!(
                "a dry run replays at most {DRY_RUN_MAX_SPAN:#}: shorten from/to"
            )));
        }
        vigie_core::rules::spec::compile(rule.clone()).map_err(ApiError::InvalidRule)?;
        let mut notes = Vec::new();
        let page = twin.select(
            crate::twin::Candidates::All,
            &|e| rule.applies(e),
            0,
            DRY_RUN_MAX_EQUIPMENT + 1,
            false,
        );
        let mut equipment: Vec<vigie_core::Entity> = page.entities.iter().map(|e| (**e).clone()).collect();
        let mut truncated = false;
        if equipment.len() > DRY_RUN_MAX_EQUIPMENT {
            equipment.truncate(DRY_RUN_MAX_EQUIPMENT);
            truncated = true;
            notes.push(format!(
            "the rule applies to more than {DRY_RUN_MAX_EQUIPMENT} pieces of equipment: the first {DRY_RUN_MAX_EQUIPMENT} by id were replayed"
        ));
        }
        let mut recorded = Vec::new();
        for chunk in equipment.chunks(DRY_RUN_CHUNK) {
            if recorded.len() >= vigie_core::rules::dry_run::MAX_HISTORY {
                truncated = true;
                notes.push(format!(
                    "more than {} recorded values: the equipment from {} on was not replayed",
                    vigie_core::rules::dry_run::MAX_HISTORY,
                    chunk.first().map(|e| e.id.as_str()).unwrap_or_default()
                ));
                break;
            }
            let selection = vigie_store::HistorySelection {
                entity_ids: chunk.iter().map(|e| e.id.clone()).collect(),
                attributes: None,
                from: Some(from),
                to: Some(to),
            };
            let range = store
                .history_range(&selection, None, DRY_RUN_MAX_VALUES_PER_SERIES)
                .await?;
            if let Some(vigie_store::Truncation::CompleteUntil(until)) = range.truncation {
                truncated = true;
                notes.push(format!(
                "more than {DRY_RUN_MAX_VALUES_PER_SERIES} values of one attribute: equipment {}… replayed until {until}",
                chunk.first().map(|e| e.id.as_str()).unwrap_or_default()
            ));
            }
            for history in range.entities {
                for attribute in history.attributes {
                    recorded.extend(attribute.instances.into_iter().map(|i| vigie_core::Observation {
                        entity_id: history.entity_id.clone(),
                        attribute: attribute.name.clone(),
                        value: i.value,
                        observed_at: i.observed_at,
                        unit_code: i.unit_code,
                    }));
                }
            }
        }
        let count = equipment.len();
        let (id, version) = (rule.id.clone(), rule.version);
        let (run, replayed) = tokio::task::spawn_blocking(move || {
            let states = vigie_core::rules::dry_run::states_from_history(equipment, recorded);
            let mut replayed = 0usize;
            let counted = states.inspect(|_| replayed += 1);
            let run = vigie_core::rules::dry_run::dry_run(rule, counted, DRY_RUN_TICK);
            run.map(|run| (run, replayed))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("the dry run failed: {e}")))?
        .map_err(ApiError::InvalidRule)?;
        if run.truncated {
            truncated = true;
            notes.push(format!(
                "the replay stopped at a bound: at most {} states, {} firings",
                vigie_core::rules::dry_run::MAX_HISTORY,
                vigie_core::rules::dry_run::MAX_FIRINGS
            ));
        }
        let fired = run.firings.iter().filter(|f| !f.cleared).count();
        Ok(DryRunReport {
            rule: id,
            version,
            from,
            to,
            equipment: count,
            states: replayed,
            fired,
            cleared: run.firings.len() - fired,
            firings: run
                .firings
                .into_iter()
                .map(|f| DryRunFiring {
                    at: f.at,
                    entity_id: f.entity_id,
                    cleared: f.cleared,
                })
                .collect(),
            evaluation_errors: run.errors.count,
            last_evaluation_error: run.errors.last,
            truncated,
            notes,
        })
    }
}
