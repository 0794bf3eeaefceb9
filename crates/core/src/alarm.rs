//! Alarms: what an operator must act on, and its life. Pure: the server
//! decides when to raise and clear, stores and audits; this module holds the
//! state machine (active → acknowledged → cleared → closed, shelving until a
//! time), de-duplication (the same source and type counts occurrences) and
//! the topology rule that turns a cabinet's power cut into one alarm with its
//! lights as children instead of forty-one alarms.

use serde::{Deserialize, Serialize};

use crate::{Entity, EntityId, Scope, Timestamp};

/// How urgent, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Major => "major",
            Self::Minor => "minor",
            Self::Warning => "warning",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "critical" => Ok(Self::Critical),
            "major" => Ok(Self::Major),
            "minor" => Ok(Self::Minor),
            "warning" => Ok(Self::Warning),
            other => Err(format!(
                "'{other}' is not a severity: expected critical, major, minor or warning"
            )),
        }
    }
}

/// Where an alarm is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    /// Raised, nobody has taken it yet.
    Active,
    /// An operator has taken it; the condition still holds.
    Acknowledged,
    /// The condition is gone; waits for an operator to close it.
    Cleared,
    /// Done: out of the board, kept for the record.
    Closed,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Acknowledged => "acknowledged",
            Self::Cleared => "cleared",
            Self::Closed => "closed",
        }
    }

    /// Still on the board (not closed).
    pub fn is_open(self) -> bool {
        self != Self::Closed
    }
}

/// A note an operator left on an alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub by: String,
    pub at: Timestamp,
    pub text: String,
}

/// One alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    pub id: String,
    /// The equipment it is about.
    pub source: EntityId,
    pub source_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// What happened, e.g. `power-cut`, `lamp-failure`, `silent`.
    #[serde(rename = "type")]
    pub alarm_type: String,
    pub severity: Severity,
    pub state: AlarmState,
    pub detail: String,
    pub raised_at: Timestamp,
    pub updated_at: Timestamp,
    /// Times the condition was seen again while the alarm was open.
    pub occurrences: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<Timestamp>,
    /// Equipment that depends on the source and is affected with it (a
    /// cabinet's lights): part of this alarm, not alarms of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<EntityId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelved_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
    /// Coming and going too often: kept active (not cleared and raised
    /// again each time) until the condition stays away for [`FLAP_WINDOW`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flapping: bool,
    /// When the condition last went away while flapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_since: Option<Timestamp>,
    /// The latest returns of the condition (at most [`FLAP_COUNT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Timestamp>,
    /// The steps of its procedure done so far, in the order they were done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps_done: Vec<StepDone>,
    /// How many times it was escalated for staying unacknowledged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalation_level: u8,
}

/// A step of the alarm's procedure, done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDone {
    /// Its index in the procedure, from 0.
    pub step: u16,
    pub by: String,
    pub at: Timestamp,
}

/// Whom an operator calls for a type of alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub phone: String,
}

/// The operating procedure for a type of alarm: what the operator checks
/// and does, in order, and whom to call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Procedure {
    /// The alarm type, or a prefix ending in ':' (`fault:` for every fault).
    pub alarm_type: String,
    pub title: String,
    pub steps: Vec<String>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// Most steps in a procedure.
pub const MAX_STEPS: usize = 50;

/// The procedure for `alarm_type`: an exact match first, else the longest
/// matching prefix.
pub fn procedure_for<'a>(procedures: &'a [Procedure], alarm_type: &str) -> Option<&'a Procedure> {
    procedures.iter().find(|p| p.alarm_type == alarm_type).or_else(|| {
        procedures
            .iter()
            .filter(|p| p.alarm_type.ends_with(':') && alarm_type.starts_with(&p.alarm_type))
            .max_by_key(|p| p.alarm_type.len())
    })
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Returns of a condition within [`FLAP_WINDOW`] that make an alarm flap.
pub const FLAP_COUNT: usize = 4;
/// The window of flapping, and how long a flapping condition must stay away
/// before its alarm clears.
pub const FLAP_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// What an operator does to an alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmAction {
    Acknowledge,
    Assign(String),
    Comment(String),
    Shelve(Timestamp),
    Unshelve,
    Close,
    /// Step `step` of a procedure of `of` steps is done.
    CompleteStep {
        step: u16,
        of: usize,
    },
}

impl AlarmAction {
    /// The audit verb.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Acknowledge => "alarm.acknowledge",
            Self::Assign(_) => "alarm.assign",
            Self::Comment(_) => "alarm.comment",
            Self::Shelve(_) => "alarm.shelve",
            Self::Unshelve => "alarm.unshelve",
            Self::Close => "alarm.close",
            Self::CompleteStep { .. } => "alarm.step",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    #[error("alarm {id} is {state}: it cannot be {action}")]
    Transition {
        id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Longest comment kept.
pub const MAX_COMMENT: usize = 2_000;
/// Most comments on one alarm.
pub const MAX_COMMENTS: usize = 200;

impl Alarm {
    /// A new active alarm.
    pub fn raise(id: String, source: &Entity, condition: &Condition, at: Timestamp) -> Self {
        Self {
            id,
            source: source.id.clone(),
            source_type: source.entity_type.clone(),
            scope: source.scope.clone(),
            alarm_type: condition.alarm_type.clone(),
            severity: condition.severity,
            state: AlarmState::Active,
            detail: condition.detail.clone(),
            raised_at: at,
            updated_at: at,
            occurrences: 1,
            cleared_at: None,
            children: Vec::new(),
            assignee: None,
            shelved_until: None,
            comments: Vec::new(),
            flapping: false,
            quiet_since: None,
            recent: Vec::new(),
            steps_done: Vec::new(),
            escalation_level: 0,
        }
    }

    /// Whether it is time to escalate once more: still active (nobody took
    /// it), not shelved, and `after` more has passed since the last level.
    pub fn escalation_due(&self, now: Timestamp, after: jiff::SignedDuration) -> bool {
        let next = i64::from(self.escalation_level) + 1;
        self.state == AlarmState::Active
            && !self.is_shelved(now)
            && self.escalation_level < u8::MAX
            && now.duration_since(self.raised_at).as_secs() >= after.as_secs().saturating_mul(next)
    }

    /// Shelved now: off the board until the time comes.
    pub fn is_shelved(&self, now: Timestamp) -> bool {
        self.shelved_until.is_some_and(|t| t > now)
    }

    /// The condition was seen again: one more occurrence, the same alarm
    /// (a cleared one becomes active again: the problem is back).
    pub fn recur(&mut self, condition: &Condition, at: Timestamp) {
        self.occurrences = self.occurrences.saturating_add(1);
        self.recent.retain(|t| at.duration_since(*t) <= FLAP_WINDOW);
        if self.recent.len() >= FLAP_COUNT {
            self.recent.remove(0);
        }
        self.recent.push(at);
        self.quiet_since = None;
        if self.recent.len() >= FLAP_COUNT {
            self.flapping = true;
        }
        self.detail.clone_from(&condition.detail);
        self.severity = self.severity.min(condition.severity);
        if self.state == AlarmState::Cleared {
            self.state = AlarmState::Active;
            self.cleared_at = None;
        }
        self.updated_at = at;
    }

    /// The condition is gone. A flapping alarm only notes when (see
    /// [`Alarm::settle`]), so the board does not churn.
    pub fn clear(&mut self, at: Timestamp) {
        if self.flapping {
            self.quiet_since.get_or_insert(at);
            return;
        }
        if matches!(self.state, AlarmState::Active | AlarmState::Acknowledged) {
            self.state = AlarmState::Cleared;
            self.cleared_at = Some(at);
            self.updated_at = at;
        }
    }

    /// A flapping alarm whose condition has stayed away for [`FLAP_WINDOW`]
    /// stops flapping and clears; true when it did.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        match self.quiet_since {
            Some(since) if self.flapping && now.duration_since(since) >= FLAP_WINDOW => {
                self.flapping = false;
                self.quiet_since = None;
                self.recent.clear();
                self.clear(now);
                true
            }
            _ => false,
        }
    }

    /// An operator's action, checked against the state machine.
    pub fn apply(&mut self, action: &AlarmAction, by: &str, at: Timestamp) -> Result<(), AlarmError> {
        let refuse = |action: &'static str| AlarmError::Transition {
            id: self.id.clone(),
            state: self.state.as_str(),
            action,
        };
        match action {
            AlarmAction::Acknowledge => {
                if self.state != AlarmState::Active {
                    return Err(refuse("acknowledged"));
                }
                self.state = AlarmState::Acknowledged;
                if self.assignee.is_none() {
                    self.assignee = Some(by.to_owned());
                }
            }
            AlarmAction::Assign(to) => {
                if !self.state.is_open() {
                    return Err(refuse("assigned"));
                }
                if to.trim().is_empty() || to.len() > 128 {
                    return Err(AlarmError::Invalid(
                        "assign to a user name of 1 to 128 characters".into(),
                    ));
                }
                self.assignee = Some(to.trim().to_owned());
            }
            AlarmAction::Comment(text) => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > MAX_COMMENT {
                    return Err(AlarmError::Invalid(format!(
                        "a comment has 1 to {MAX_COMMENT} characters"
                    )));
                }
                if self.comments.len() >= MAX_COMMENTS {
                    return Err(AlarmError::Invalid(format!(
                        "an alarm keeps at most {MAX_COMMENTS} comments"
                    )));
                }
                self.comments.push(Comment {
                    by: by.to_owned(),
                    at,
                    text: text.to_owned(),
                });
            }
            AlarmAction::Shelve(until) => {
                if !self.state.is_open() {
                    return Err(refuse("shelved"));
                }
                if *until <= at {
                    return Err(AlarmError::Invalid("shelve until a time in the future".into()));
                }
                self.shelved_until = Some(*until);
            }
            AlarmAction::Unshelve => self.shelved_until = None,
            AlarmAction::CompleteStep { step, of } => {
                if !self.state.is_open() {
                    return Err(refuse("worked on"));
                }
                if usize::from(*step) >= *of {
                    return Err(AlarmError::Invalid(format!(
                        "the procedure has {of} steps; there is no step {}",
                        step + 1
                    )));
                }
                if self.steps_done.iter().any(|d| d.step == *step) {
                    return Err(AlarmError::Invalid(format!("step {} is already done", step + 1)));
                }
                self.steps_done.push(StepDone {
                    step: *step,
                    by: by.to_owned(),
                    at,
                });
            }
            AlarmAction::Close => {
                // Closing an alarm whose condition still holds would hide a
                // live problem: clear first (or it clears by itself).
                if self.state != AlarmState::Cleared {
                    return Err(refuse("closed before it is cleared"));
                }
                self.state = AlarmState::Closed;
            }
        }
        self.updated_at = at;
        Ok(())
    }
}

/// A problem seen on a piece of equipment, as the rules state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub alarm_type: String,
    pub severity: Severity,
    pub detail: String,
}

/// What an entity's state says is wrong with it now, by Vigie's built-in
/// rules (declarative rules add their own): a cut supply, a reported fault,
/// a lost link.
pub fn conditions(e: &Entity) -> Vec<Condition> {
    let mut found = Vec::new();
    for (name, a) in e.attributes.iter() {
        if name.starts_with("voltage") && a.value.as_f64() == Some(0.0) {
            found.push(Condition {
                alarm_type: "power-cut".into(),
                severity: Severity::Critical,
                detail: format!("{name} = 0 V: no supply"),
            });
            break;
        }
    }
    for name in ["status", "deviceState"] {
        let Some(state) = e.attributes.get(name).and_then(|a| a.value.as_str()) else {
            continue;
        };
        match crate::status::said_of(state) {
            Some(crate::status::AssetStatus::Fault) => found.push(Condition {
                alarm_type: format!("fault:{state}"),
                severity: Severity::Major,
                detail: format!("{name} = {state}"),
            }),
            Some(crate::status::AssetStatus::Offline) => found.push(Condition {
                alarm_type: "offline".into(),
                severity: Severity::Major,
                detail: format!("{name} = {state}"),
            }),
            _ => {}
        }
    }
    found
}

/// The relationships by which equipment depends on other equipment: a
/// light on its cabinet's supply. A condition of a dependant while its
/// parent has an open alarm is part of the parent's alarm.
pub const DEPENDS_ON: [&str; 2] = ["refStreetlightControlCabinet", "refGateway"];

/// The equipment `e` depends on, if any.
pub fn parent_of(e: &Entity) -> Option<&str> {
    DEPENDS_ON
        .iter()
        .find_map(|rel| e.attributes.get(rel).and_then(|a| a.value.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attribute;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(minutes)
    }

    fn cabinet(volts: f64) -> Entity {
        Entity::new(
            EntityId::new("urn:ngsi-ld:StreetlightControlCabinet:dijon:001").expect("id"),
            "StreetlightControlCabinet",
            None,
        )
        .with("voltageR", Attribute::property(volts))
    }

    #[test]
    fn built_in_conditions_name_what_is_wrong() {
        let cut = conditions(&cabinet(0.0));
        assert_eq!(cut.len(), 1);
        assert_eq!(
            (cut[0].alarm_type.as_str(), cut[0].severity),
            ("power-cut", Severity::Critical)
        );
        assert!(conditions(&cabinet(231.0)).is_empty());
        let lamp = Entity::new(
            EntityId::new("urn:ngsi-ld:Streetlight:1").expect("id"),
            "Streetlight",
            None,
        )
        .with("status", Attribute::property("defectiveLamp"));
        assert_eq!(conditions(&lamp)[0].alarm_type, "fault:defectiveLamp");
        let camera = Entity::new(EntityId::new("urn:ngsi-ld:Camera:1").expect("id"), "Camera", None)
            .with("deviceState", Attribute::property("noSignal"));
        assert_eq!(conditions(&camera)[0].alarm_type, "offline");
    }

    #[test]
    fn the_state_machine_refuses_what_makes_no_sense() {
        let c = &conditions(&cabinet(0.0))[0];
        let mut alarm = Alarm::raise("a1".into(), &cabinet(0.0), c, at(0));
        assert!(matches!(
            alarm.apply(&AlarmAction::Close, "ops", at(1)),
            Err(AlarmError::Transition { .. })
        ));
        alarm
            .apply(&AlarmAction::Acknowledge, "ops", at(1))
            .expect("acknowledge");
        assert_eq!(
            (alarm.state, alarm.assignee.as_deref()),
            (AlarmState::Acknowledged, Some("ops"))
        );
        assert!(alarm.apply(&AlarmAction::Acknowledge, "ops", at(2)).is_err(), "twice");
        alarm.recur(c, at(3));
        assert_eq!((alarm.occurrences, alarm.state), (2, AlarmState::Acknowledged));
        alarm.clear(at(4));
        assert_eq!(alarm.state, AlarmState::Cleared);
        alarm.recur(c, at(5));
        assert_eq!(alarm.state, AlarmState::Active, "the problem is back");
        alarm.clear(at(6));
        alarm.apply(&AlarmAction::Close, "ops", at(7)).expect("close");
        assert!(alarm.apply(&AlarmAction::Shelve(at(60)), "ops", at(8)).is_err());
    }

    #[test]
    fn a_flapping_condition_keeps_one_active_alarm_until_it_settles() {
        let c = &conditions(&cabinet(0.0))[0];
        let mut alarm = Alarm::raise("a1".into(), &cabinet(0.0), c, at(0));
        for minute in 1..=4 {
            alarm.clear(at(minute * 2 - 1));
            alarm.recur(c, at(minute * 2));
        }
        assert!(alarm.flapping, "4 returns within 10 minutes");
        alarm.clear(at(9));
        assert_eq!(alarm.state, AlarmState::Active, "no churn while flapping");
        assert!(!alarm.settle(at(15)), "not quiet for long enough");
        assert!(alarm.settle(at(19)));
        assert_eq!((alarm.state, alarm.flapping), (AlarmState::Cleared, false));
        // Slow returns do not flap.
        let mut slow = Alarm::raise("a2".into(), &cabinet(0.0), c, at(0));
        for n in 1..=6 {
            slow.clear(at(n * 30 - 1));
            slow.recur(c, at(n * 30));
        }
        assert!(!slow.flapping);
    }

    #[test]
    fn escalation_waits_for_each_level_and_stops_once_taken() {
        let c = &conditions(&cabinet(0.0))[0];
        let mut alarm = Alarm::raise("a1".into(), &cabinet(0.0), c, at(0));
        let after = jiff::SignedDuration::from_mins(15);
        assert!(!alarm.escalation_due(at(14), after));
        assert!(alarm.escalation_due(at(15), after));
        alarm.escalation_level = 1;
        assert!(!alarm.escalation_due(at(29), after));
        assert!(alarm.escalation_due(at(30), after));
        alarm.apply(&AlarmAction::Acknowledge, "ops", at(31)).expect("ack");
        assert!(!alarm.escalation_due(at(90), after), "taken: no more escalation");
    }

    #[test]
    fn procedures_match_exactly_then_by_prefix_and_steps_are_recorded_once() {
        let p = |t: &str| Procedure {
            alarm_type: t.into(),
            title: t.into(),
            steps: vec!["a".into(), "b".into()],
            contacts: vec![],
        };
        let all = [p("fault:"), p("fault:defectiveLamp"), p("power-cut")];
        assert_eq!(
            procedure_for(&all, "fault:defectiveLamp").map(|p| p.alarm_type.as_str()),
            Some("fault:defectiveLamp")
        );
        assert_eq!(
            procedure_for(&all, "fault:error").map(|p| p.alarm_type.as_str()),
            Some("fault:")
        );
        assert!(procedure_for(&all, "silent").is_none());
        let c = &conditions(&cabinet(0.0))[0];
        let mut alarm = Alarm::raise("a1".into(), &cabinet(0.0), c, at(0));
        alarm
            .apply(&AlarmAction::CompleteStep { step: 1, of: 2 }, "ops", at(1))
            .expect("step 2");
        assert!(
            alarm
                .apply(&AlarmAction::CompleteStep { step: 1, of: 2 }, "ops", at(2))
                .is_err(),
            "twice"
        );
        assert!(
            alarm
                .apply(&AlarmAction::CompleteStep { step: 2, of: 2 }, "ops", at(2))
                .is_err(),
            "no step 3"
        );
        assert_eq!(alarm.steps_done[0].by, "ops");
    }

    #[test]
    fn shelving_comments_and_assignment_are_bounded() {
        let c = &conditions(&cabinet(0.0))[0];
        let mut alarm = Alarm::raise("a1".into(), &cabinet(0.0), c, at(0));
        assert!(
            alarm.apply(&AlarmAction::Shelve(at(0)), "ops", at(1)).is_err(),
            "in the past"
        );
        alarm.apply(&AlarmAction::Shelve(at(60)), "ops", at(1)).expect("shelve");
        assert!(alarm.is_shelved(at(59)) && !alarm.is_shelved(at(61)));
        assert!(alarm.apply(&AlarmAction::Comment("  ".into()), "ops", at(2)).is_err());
        alarm
            .apply(&AlarmAction::Comment("équipe nuit prévenue".into()), "ops", at(2))
            .expect("comment");
        assert_eq!(alarm.comments[0].text, "équipe nuit prévenue");
        assert!(alarm.apply(&AlarmAction::Assign(String::new()), "ops", at(3)).is_err());
        alarm
            .apply(&AlarmAction::Assign("tech-12".into()), "ops", at(3))
            .expect("assign");
        assert_eq!(alarm.assignee.as_deref(), Some("tech-12"));
    }

    #[test]
    fn lights_depend_on_their_cabinet() {
        let light = Entity::new(
            EntityId::new("urn:ngsi-ld:Streetlight:1").expect("id"),
            "Streetlight",
            None,
        )
        .with(
            "refStreetlightControlCabinet",
            Attribute::relationship(&EntityId::new("urn:ngsi-ld:StreetlightControlCabinet:dijon:001").expect("id")),
        );
        assert_eq!(
            parent_of(&light),
            Some("urn:ngsi-ld:StreetlightControlCabinet:dijon:001")
        );
        assert_eq!(parent_of(&cabinet(1.0)), None);
    }
}
