//! The triggers as explicit state machines. Time is an argument: the server
//! calls [`Engine::on_change`] for each change of the twin and
//! [`Engine::on_tick`] about once a minute; a dry run calls both with
//! recorded times. State is kept per (rule, equipment) only while something
//! is pending or raised.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use jiff::SignedDuration;
use jiff::tz::TimeZone;

use super::calendar;
use super::clock::{self, Cron};
use super::expr::{EvalError, Evaluator, Expr};
use super::spec::{Communes, CompiledRule, Rule, RuleAction, RuleSet, SunEvent, Trigger};
use crate::{CommuneId, Entity, EntityId, Timestamp};

/// Most recent matches an area rule keeps; beyond, the oldest go.
pub const MAX_AREA_EVENTS: usize = 10_000;
/// Longest stretch of time a schedule catches up on after a pause.
const MAX_CATCH_UP: SignedDuration = SignedDuration::from_hours(24);

/// A rule that fired (or cleared) for one equipment.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule_id: Arc<str>,
    pub rule_version: u32,
    pub entity_id: EntityId,
    pub actions: Arc<[RuleAction]>,
    /// The condition stopped holding: the server clears what the rule raised.
    pub cleared: bool,
    pub at: Timestamp,
}

/// Evaluation failures of one rule: counted, the latest kept for the author.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalErrors {
    pub count: u64,
    pub last: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    /// Beyond the limit since then, not long enough yet.
    Pending(Timestamp),
    Raised,
}

#[derive(Debug, Clone)]
struct AreaEvent {
    at: Timestamp,
    entity: EntityId,
    point: (f64, f64),
}

#[derive(Debug, Default)]
struct State {
    /// Equipment for which the rule currently holds (on-change, absence, area).
    holding: HashSet<EntityId>,
    /// Threshold rules: equipment pending or raised.
    levels: HashMap<EntityId, Level>,
    /// Area rules: recent matches, oldest first, and recent firings' places.
    events: VecDeque<AreaEvent>,
    fired: VecDeque<(Timestamp, (f64, f64))>,
    /// Clock rules: the previous tick, to fire once per crossing.
    last_tick: Option<Timestamp>,
    /// Astronomical rules: sun events per UTC day and place (to 0.01°,
    /// about a kilometre, a few seconds of sun), so a tick over a city's
    /// lamps computes each a handful of times, not once per lamp.
    sun: HashMap<(jiff::civil::Date, i32, i32), Option<(Timestamp, Timestamp)>>,
}

/// Most places and days an astronomical rule remembers before starting afresh.
const MAX_SUN_CACHE: usize = 4_096;

struct Loaded {
    rule: Rule,
    id: Arc<str>,
    actions: Arc<[RuleAction]>,
    condition: Expr,
    value: Option<Expr>,
    cron: Option<Cron>,
    state: State,
    errors: EvalErrors,
}

/// The rules of a city, indexed by entity type then commune, with their state.
pub struct Engine {
    rules: Vec<Loaded>,
    by_type: HashMap<String, ByCommune>,
    /// Rules that name no entity type: looked at for every change.
    any_type: ByCommune,
    evaluator: Evaluator,
}

/// Rule indexes by commune. A metropolis writes most rules per commune: a
/// change looks up its commune's rules instead of testing every rule of its
/// type (24 communes: 196 street-light rules tested for the 12 that apply),
/// which matters on each tick, where every entity of the twin is looked at.
#[derive(Default)]
struct ByCommune {
    /// Rules enabled in every commune.
    all: Vec<usize>,
    /// Rules enabled in listed communes.
    only: HashMap<CommuneId, Vec<usize>>,
}

impl ByCommune {
    fn add(&mut self, communes: &Communes, index: usize) {
        match communes {
            Communes::All => self.all.push(index),
            Communes::Only(list) => {
                for c in list {
                    self.only.entry(c.clone()).or_default().push(index);
                }
            }
        }
    }

    /// The rules enabled in `commune`, in no particular order.
    fn enabled_in<'a>(&'a self, commune: Option<&CommuneId>) -> impl Iterator<Item = usize> + 'a {
        let local = commune
            .and_then(|c| self.only.get(c))
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.all.iter().chain(local).copied()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("rules", &self.rules.len()).finish()
    }
}

/// Metres between two (longitude, latitude) points on a spherical Earth.
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (lat1, lat2) = (a.1.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.0 - a.0).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The newest time the equipment was heard from.
fn last_heard(e: &Entity) -> Option<Timestamp> {
    e.attributes
        .values()
        .filter_map(|a| a.observed_at)
        .max()
        .or(e.modified_at)
}

impl Engine {
    /// Loads the enabled rules of `set`.
    pub fn new(set: RuleSet) -> Self {
        let mut engine = Self {
            rules: Vec::new(),
            by_type: HashMap::new(),
            any_type: ByCommune::default(),
            evaluator: Evaluator::default(),
        };
        for CompiledRule {
            rule,
            condition,
            value,
            cron,
        } in set.rules.into_iter().filter(|c| c.rule.enabled)
        {
            let index = engine.rules.len();
            if rule.applies_to.types.is_empty() {
                engine.any_type.add(&rule.communes, index);
            }
            for t in &rule.applies_to.types {
                engine.by_type.entry(t.clone()).or_default().add(&rule.communes, index);
            }
            engine.rules.push(Loaded {
                id: rule.id.as_str().into(),
                actions: rule.actions.clone().into(),
                rule,
                condition,
                value,
                cron,
                state: State::default(),
                errors: EvalErrors::default(),
            });
        }
        engine
    }

    /// Replaces the rules with `set`, keeping what is pending or raised for
    /// the rules whose id and version did not change (a new version starts
    /// afresh: its condition may mean something else).
    pub fn reload(&mut self, set: RuleSet) {
        let mut old: HashMap<(Arc<str>, u32), (State, EvalErrors)> = self
            .rules
            .drain(..)
            .map(|r| ((r.id, r.rule.version), (r.state, r.errors)))
            .collect();
        let mut next = Engine::new(set);
        for r in &mut next.rules {
            if let Some((state, errors)) = old.remove(&(r.id.clone(), r.rule.version)) {
                r.state = state;
                r.errors = errors;
            }
        }
        *self = next;
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluation failures per rule id, for the rules that had some.
    pub fn evaluation_errors(&self) -> impl Iterator<Item = (&str, &EvalErrors)> {
        self.rules
            .iter()
            .filter(|r| r.errors.count > 0)
            .map(|r| (r.rule.id.as_str(), &r.errors))
    }

    /// The rules that apply to `entity` (by type and commune, then business
    /// line), in the order they were loaded.
    fn candidates(&self, entity: &Entity) -> Vec<usize> {
        let scope = entity.scope.as_ref();
        let commune = scope.map(|s| &s.commune);
        let typed = self.by_type.get(&entity.entity_type).into_iter();
        let mut found: Vec<usize> = typed
            .chain([&self.any_type])
            .flat_map(|index| index.enabled_in(commune))
            .filter(|&i| {
                let lines = &self.rules[i].rule.applies_to.lines;
                lines.is_empty() || scope.is_some_and(|s| lines.contains(&s.business_line))
            })
            .collect();
        // Rules fire in file order whatever list they came from, once each
        // (a rule may list a commune twice).
        found.sort_unstable();
        found.dedup();
        found
    }

    /// A change of `entity` (its state after the change) at `now`.
    pub fn on_change(&mut self, entity: &Entity, now: Timestamp) -> Vec<Firing> {
        let mut firings = Vec::new();
        for i in self.candidates(entity) {
            let loaded = &mut self.rules[i];
            let ev = &self.evaluator;
            match &loaded.rule.trigger {
                Trigger::OnChange => {
                    let holds = loaded.check(ev, entity, now);
                    loaded.edge(entity, holds, now, &mut firings);
                }
                Trigger::Threshold { .. } => loaded.threshold(ev, entity, now, &mut firings),
                // Heard from: no longer silent.
                Trigger::Absence { .. } => loaded.edge(entity, false, now, &mut firings),
                Trigger::AreaAggregate { .. } => loaded.area(ev, entity, now, &mut firings),
                Trigger::Schedule { .. } | Trigger::Astronomical { .. } => {}
            }
        }
        firings
    }

    /// A tick of the clock at `now`, with the equipment to look at (usually
    /// the whole twin): silent equipment, schedules, sunsets, thresholds whose
    /// minimum duration ran out without a change.
    pub fn on_tick<'a>(&mut self, now: Timestamp, entities: impl Iterator<Item = &'a Entity>) -> Vec<Firing> {
        let mut firings = Vec::new();
        // Which schedules are due is the same for every equipment.
        let due: Vec<bool> = self.rules.iter().map(|r| r.schedule_due(now)).collect();
        for entity in entities {
            for i in self.candidates(entity) {
                let loaded = &mut self.rules[i];
                let ev = &self.evaluator;
                match &loaded.rule.trigger {
                    Trigger::Absence { max_silence } => {
                        let silent = last_heard(entity).is_some_and(|t| now.duration_since(t) > *max_silence);
                        let holds = silent && loaded.check(ev, entity, now);
                        loaded.edge(entity, holds, now, &mut firings);
                    }
                    Trigger::Threshold { .. } => {
                        if matches!(loaded.state.levels.get(&entity.id), Some(Level::Pending(_))) {
                            loaded.threshold(ev, entity, now, &mut firings);
                        }
                    }
                    Trigger::Schedule { .. } => {
                        if due[i] && loaded.check(ev, entity, now) {
                            firings.push(loaded.firing(entity, false, now));
                        }
                    }
                    Trigger::Astronomical { event, offset_minutes } => {
                        let (event, offset) = (*event, *offset_minutes);
                        if loaded.sun_crossed(entity, event, offset, now) && loaded.check(ev, entity, now) {
                            firings.push(loaded.firing(entity, false, now));
                        }
                    }
                    Trigger::OnChange | Trigger::AreaAggregate { .. } => {}
                }
            }
        }
        for loaded in &mut self.rules {
            if let Trigger::AreaAggregate { window, .. } = loaded.rule.trigger {
                loaded.state.prune(now, window);
            }
            loaded.state.last_tick = Some(now);
        }
        firings
    }
}

impl State {
    fn prune(&mut self, now: Timestamp, window: SignedDuration) {
        let old = |at: Timestamp| now.duration_since(at) > window;
        while self.events.front().is_some_and(|e| old(e.at)) {
            self.events.pop_front();
        }
        while self.fired.front().is_some_and(|f| old(f.0)) {
            self.fired.pop_front();
        }
    }
}

impl Loaded {
    fn firing(&self, entity: &Entity, cleared: bool, at: Timestamp) -> Firing {
        Firing {
            rule_id: self.id.clone(),
            rule_version: self.rule.version,
            entity_id: entity.id.clone(),
            actions: self.actions.clone(),
            cleared,
            at,
        }
    }

    fn count(&mut self, e: EvalError) {
        self.errors.count += 1;
        self.errors.last = Some(e.to_string());
    }

    /// The condition, an error counting as "does not hold".
    fn check(&mut self, ev: &Evaluator, entity: &Entity, now: Timestamp) -> bool {
        ev.eval_bool(&self.condition, entity, now).unwrap_or_else(|e| {
            self.count(e);
            false
        })
    }

    /// Fires when the rule starts to hold for `entity`, clears when it stops.
    fn edge(&mut self, entity: &Entity, holds: bool, now: Timestamp, out: &mut Vec<Firing>) {
        if holds && self.state.holding.insert(entity.id.clone()) {
            out.push(self.firing(entity, false, now));
        } else if !holds && self.state.holding.remove(&entity.id) {
            out.push(self.firing(entity, true, now));
        }
    }

    fn threshold(&mut self, ev: &Evaluator, entity: &Entity, now: Timestamp, out: &mut Vec<Firing>) {
        let Trigger::Threshold {
            above,
            below,
            hysteresis,
            min_duration,
            ..
        } = self.rule.trigger
        else {
            return;
        };
        let Some(value_expr) = &self.value else { return };
        let value = match ev.eval_number(value_expr, entity, now) {
            Ok(v) => v,
            Err(e) => return self.count(e),
        };
        // The condition narrows which equipment the threshold watches.
        let watched = self.check(ev, entity, now);
        let (beyond, back) = match (above, below) {
            (Some(limit), _) => (value > limit, value <= limit - hysteresis),
            (None, Some(limit)) => (value < limit, value >= limit + hysteresis),
            (None, None) => return,
        };
        let beyond = beyond && watched;
        let current = self.state.levels.get(&entity.id).copied();
        let next = match current {
            None if beyond && min_duration <= SignedDuration::ZERO => Some(Level::Raised),
            None if beyond => Some(Level::Pending(now)),
            None => None,
            Some(Level::Pending(since)) if beyond => {
                if now.duration_since(since) >= min_duration {
                    Some(Level::Raised)
                } else {
                    Some(Level::Pending(since))
                }
            }
            Some(Level::Pending(_)) => None,
            Some(Level::Raised) if back || !watched => None,
            Some(Level::Raised) => Some(Level::Raised),
        };
        match (current, next) {
            (Some(Level::Raised), None) => out.push(self.firing(entity, true, now)),
            (c, Some(Level::Raised)) if c != Some(Level::Raised) => out.push(self.firing(entity, false, now)),
            _ => {}
        }
        match next {
            Some(level) => self.state.levels.insert(entity.id.clone(), level),
            None => self.state.levels.remove(&entity.id),
        };
    }

    fn area(&mut self, ev: &Evaluator, entity: &Entity, now: Timestamp, out: &mut Vec<Firing>) {
        let Trigger::AreaAggregate {
            min_count,
            radius_m,
            window,
        } = self.rule.trigger
        else {
            return;
        };
        let holds = self.check(ev, entity, now);
        // Only the start of a match counts: a lamp repeating "fault" is one lamp.
        if !holds {
            self.state.holding.remove(&entity.id);
            return;
        }
        if !self.state.holding.insert(entity.id.clone()) {
            return;
        }
        let Some(point) = entity.point() else {
            return self.count(EvalError::Type {
                expected: "a location (an area rule counts equipment by place)",
                got: "none".into(),
            });
        };
        let state = &mut self.state;
        state.prune(now, window);
        state.events.retain(|e| e.entity != entity.id);
        if state.events.len() >= MAX_AREA_EVENTS {
            state.events.pop_front();
        }
        state.events.push_back(AreaEvent {
            at: now,
            entity: entity.id.clone(),
            point,
        });
        let near = state
            .events
            .iter()
            .filter(|e| haversine_m(e.point, point) <= radius_m)
            .count();
        // One firing per cluster: later matches near a recent firing add nothing.
        let already = state.fired.iter().any(|(_, p)| haversine_m(*p, point) <= radius_m);
        if near >= min_count as usize && !already {
            state.fired.push_back((now, point));
            out.push(self.firing(entity, false, now));
        }
    }

    /// Whether a schedule rule has a minute in (previous tick, now].
    fn schedule_due(&self, now: Timestamp) -> bool {
        let (
            Some(cron),
            Trigger::Schedule {
                skip_public_holidays, ..
            },
        ) = (&self.cron, &self.rule.trigger)
        else {
            return false;
        };
        let Some(last) = self.state.last_tick else {
            return false;
        };
        let start = last.max(now - MAX_CATCH_UP);
        // Whole minutes after `start`, up to `now`.
        let mut minute = start.as_second().div_euclid(60) + 1;
        let end = now.as_second().div_euclid(60);
        while minute <= end {
            if let Ok(t) = Timestamp::from_second(minute * 60) {
                let local = clock::local(t);
                if cron.matches(local) && !(*skip_public_holidays && calendar::is_public_holiday(local.date())) {
                    return true;
                }
            }
            minute += 1;
        }
        false
    }

    /// Whether the sun event plus offset at the equipment fell in (previous tick, now].
    fn sun_crossed(&mut self, entity: &Entity, event: SunEvent, offset_minutes: i32, now: Timestamp) -> bool {
        let Some(last) = self.state.last_tick else {
            return false;
        };
        let Some((lon, lat)) = entity.point() else {
            self.count(EvalError::Type {
                expected: "a location (an astronomical rule needs the sun's position)",
                got: "none".into(),
            });
            return false;
        };
        let last = last.max(now - MAX_CATCH_UP);
        let offset = SignedDuration::from_mins(i64::from(offset_minutes));
        let today = now.to_zoned(TimeZone::UTC).date();
        let cache = &mut self.state.sun;
        if cache.len() > MAX_SUN_CACHE {
            cache.clear();
        }
        let (x, y) = ((lon * 100.0).round() as i32, (lat * 100.0).round() as i32);
        // The event of the previous or next UTC day may fall in the interval
        // once offset (sunset + 6 h is after midnight).
        [today.yesterday(), Ok(today), today.tomorrow()]
            .into_iter()
            .flatten()
            .filter_map(|day| {
                *cache
                    .entry((day, x, y))
                    .or_insert_with(|| clock::sun_events(day, f64::from(x) / 100.0, f64::from(y) / 100.0))
            })
            .filter_map(|(rise, set)| {
                let t = if event == SunEvent::Sunrise { rise } else { set };
                t.checked_add(offset).ok()
            })
            .any(|t| t > last && t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attribute, Scope};

    const EXAMPLES: &str = include_str!("../../rules/examples.toml");

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn engine_with(ids: &[&str]) -> Engine {
        let set = RuleSet::parse_toml(EXAMPLES).expect("valid examples");
        let rules = set
            .rules()
            .filter(|r| ids.contains(&r.id.as_str()))
            .cloned()
            .map(|mut r| {
                r.enabled = true;
                r
            })
            .collect();
        Engine::new(RuleSet::from_rules(rules).expect("valid"))
    }

    fn entity(kind: &str, local: &str, line: &str, lon: f64, lat: f64) -> Entity {
        let id = EntityId::conventional(kind, "dijon", local).expect("id");
        let scope = Scope::new("dijon".parse().expect("slug"), line.parse().expect("slug"));
        Entity::new(id, kind, Some(scope)).with("location", Attribute::point(lon, lat))
    }

    fn lamp(local: &str, status: &str, lon: f64) -> Entity {
        entity("Streetlight", local, "lighting", lon, 47.3220)
            .with("status", Attribute::property(status))
            .with("powerState", Attribute::property("on"))
    }

    #[test]
    fn on_change_fires_once_and_clears() {
        let mut engine = engine_with(&["lamp-out-at-night"]);
        let night = ts("2026-12-01T21:00:00Z");
        assert!(engine.on_change(&lamp("1", "ok", 5.04), night).is_empty());
        let f = engine.on_change(&lamp("1", "fault", 5.04), night);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (&*f[0].rule_id, f[0].rule_version, f[0].cleared),
            ("lamp-out-at-night", 1, false)
        );
        assert!(matches!(f[0].actions[0], RuleAction::RaiseAlarm { .. }));
        // Still in fault: no second alarm.
        assert!(engine.on_change(&lamp("1", "fault", 5.04), night).is_empty());
        let f = engine.on_change(&lamp("1", "ok", 5.04), night);
        assert!(f.len() == 1 && f[0].cleared);
        // By day a fault does not match this rule.
        assert!(
            engine
                .on_change(&lamp("1", "fault", 5.04), ts("2026-12-01T12:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn scope_and_type_select_rules() {
        let mut engine = engine_with(&["traffic-controller-fault", "cabinet-power-cut"]);
        let now = ts("2026-12-01T12:00:00Z");
        let controller = |line: &str| {
            entity("TrafficLightController", "c1", line, 5.04, 47.32).with("status", Attribute::property("fault-red"))
        };
        assert!(
            engine.on_change(&controller("lighting"), now).is_empty(),
            "wrong business line"
        );
        let f = engine.on_change(&controller("traffic"), now);
        assert_eq!(f.len(), 1);
        assert!(matches!(&f[0].actions[0], RuleAction::SendCommand { command, .. } if command == "mode"));
        let cabinet =
            entity("StreetlightControlCabinet", "k1", "lighting", 5.04, 47.32).with("voltageR", Attribute::property(0));
        assert_eq!(engine.on_change(&cabinet, now).len(), 1);
    }

    #[test]
    fn communes_select_rules_in_file_order() {
        let rule = |id: &str, communes: &str| {
            format!(
                "[[rule]]\nid = \"{id}\"\nname = \"{id}\"\ncommunes = {communes}\n\
                 applies_to = {{ types = [\"Streetlight\"] }}\ntrigger = {{ type = \"on-change\" }}\n\
                 condition = \"status == 'fault'\"\n\
                 actions = [{{ action = \"raise-alarm\", alarm_type = \"{id}\", severity = \"minor\" }}]\n\n"
            )
        };
        let text = [
            rule("dijon-only", r#"["dijon", "dijon"]"#),
            rule("everywhere", r#""all""#),
            rule("chenove-only", r#"["chenove"]"#),
            rule("dijon-and-talant", r#"["talant", "dijon"]"#),
        ]
        .concat();
        let mut engine = Engine::new(RuleSet::parse_toml(&text).expect("valid"));
        let fired = |engine: &mut Engine, commune: &str| -> Vec<String> {
            let id = EntityId::conventional("Streetlight", commune, "1").expect("id");
            let scope = Scope::new(commune.parse().expect("slug"), "lighting".parse().expect("slug"));
            let e = Entity::new(id, "Streetlight", Some(scope)).with("status", Attribute::property("fault"));
            let now = ts("2026-12-01T12:00:00Z");
            engine
                .on_change(&e, now)
                .iter()
                .map(|f| f.rule_id.to_string())
                .collect()
        };
        // Once each (dijon is listed twice), in the file's order.
        assert_eq!(
            fired(&mut engine, "dijon"),
            ["dijon-only", "everywhere", "dijon-and-talant"]
        );
        assert_eq!(fired(&mut engine, "chenove"), ["everywhere", "chenove-only"]);
        assert_eq!(fired(&mut engine, "ahuy"), ["everywhere"]);
        // Equipment without a scope: only the rules enabled everywhere.
        let bare = Entity::new(
            EntityId::new("urn:ngsi-ld:Streetlight:x").expect("id"),
            "Streetlight",
            None,
        )
        .with("status", Attribute::property("fault"));
        let f = engine.on_change(&bare, ts("2026-12-01T12:00:00Z"));
        assert_eq!(f.iter().map(|f| &*f.rule_id).collect::<Vec<_>>(), ["everywhere"]);
    }

    #[test]
    fn evaluation_errors_are_counted_not_fatal() {
        let mut engine = engine_with(&["cabinet-power-cut"]);
        let cabinet = entity("StreetlightControlCabinet", "k1", "lighting", 5.04, 47.32);
        assert!(engine.on_change(&cabinet, ts("2026-12-01T12:00:00Z")).is_empty());
        // A text compared to a number is just not equal in CEL: no error.
        let with_text = cabinet.with("voltageR", Attribute::property("n/a"));
        assert!(engine.on_change(&with_text, ts("2026-12-01T12:00:00Z")).is_empty());
        let with_list = with_text.with("voltageR", Attribute::property(serde_json::json!([1])));
        assert!(engine.on_change(&with_list, ts("2026-12-01T12:00:00Z")).is_empty());
        let errors: Vec<_> = engine.evaluation_errors().collect();
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].0, errors[0].1.count), ("cabinet-power-cut", 1));
        assert!(errors[0].1.last.is_some());
    }

    fn station(temperature: f64) -> Entity {
        entity("WeatherObserved", "w1", "roads", 5.04, 47.32).with("temperature", Attribute::property(temperature))
    }

    #[test]
    fn threshold_waits_min_duration_and_clears_with_hysteresis() {
        let mut engine = engine_with(&["frost-on-roads"]);
        let t0 = ts("2026-12-01T03:00:00Z");
        let at = |m: i64| t0 + SignedDuration::from_mins(m);
        assert!(engine.on_change(&station(0.4), at(0)).is_empty(), "pending");
        assert!(engine.on_change(&station(0.3), at(10)).is_empty(), "10 minutes only");
        // Back above for a moment: the wait starts again.
        assert!(engine.on_change(&station(0.6), at(11)).is_empty());
        assert!(engine.on_change(&station(0.2), at(12)).is_empty());
        assert!(engine.on_tick(at(20), [station(0.2)].iter()).is_empty());
        let f = engine.on_tick(at(27), [station(0.2)].iter());
        assert!(
            f.len() == 1 && !f[0].cleared,
            "15 minutes below, raised by the tick: {f:?}"
        );
        // 1.0 °C is above the limit but not past the hysteresis: still raised.
        assert!(engine.on_change(&station(1.0), at(30)).is_empty());
        assert!(engine.on_change(&station(0.1), at(31)).is_empty(), "no second raise");
        let f = engine.on_change(&station(1.5), at(40));
        assert!(f.len() == 1 && f[0].cleared);
    }

    #[test]
    fn absence_on_tick() {
        let mut engine = engine_with(&["silent-weather-station"]);
        let t0 = ts("2026-12-01T03:00:00Z");
        let heard = |at: Timestamp| {
            entity("WeatherObserved", "w1", "roads", 5.04, 47.32)
                .with("temperature", Attribute::property(2.0).observed(at))
        };
        let e = heard(t0);
        assert!(
            engine
                .on_tick(t0 + SignedDuration::from_mins(29), [&e].into_iter())
                .is_empty()
        );
        let f = engine.on_tick(t0 + SignedDuration::from_mins(31), [&e].into_iter());
        assert!(f.len() == 1 && !f[0].cleared);
        assert!(
            engine
                .on_tick(t0 + SignedDuration::from_mins(32), [&e].into_iter())
                .is_empty(),
            "once"
        );
        let later = t0 + SignedDuration::from_mins(40);
        let f = engine.on_change(&heard(later), later);
        assert!(f.len() == 1 && f[0].cleared);
        // No observation time at all: cannot be judged silent.
        let unknown = entity("WeatherObserved", "w2", "roads", 5.04, 47.32);
        assert!(
            engine
                .on_tick(later + SignedDuration::from_hours(5), [&unknown].into_iter())
                .is_empty()
        );
    }

    #[test]
    fn schedule_fires_once_per_minute_and_skips_holidays() {
        let mut engine = engine_with(&["dim-at-night-on-working-days"]);
        let lamps = [lamp("1", "ok", 5.04), lamp("2", "ok", 5.05)];
        // Tuesday 1 December 2026, 23:00 in Paris is 22:00 UTC.
        let mut fired = Vec::new();
        let mut t = ts("2026-12-01T21:58:00Z");
        while t <= ts("2026-12-01T22:03:00Z") {
            fired.extend(engine.on_tick(t, lamps.iter()));
            t += SignedDuration::from_secs(30);
        }
        assert_eq!(fired.len(), 2, "{fired:?}");
        assert!(fired.iter().all(|f| f.at == ts("2026-12-01T22:00:00Z")));
        // Friday 25 December 2026 is a public holiday.
        engine.on_tick(ts("2026-12-25T21:59:00Z"), lamps.iter());
        assert!(engine.on_tick(ts("2026-12-25T22:01:00Z"), lamps.iter()).is_empty());
        // Saturday is not in 1-5.
        engine.on_tick(ts("2026-12-05T21:59:00Z"), lamps.iter());
        assert!(engine.on_tick(ts("2026-12-05T22:01:00Z"), lamps.iter()).is_empty());
    }

    #[test]
    fn astronomical_fires_after_sunset_at_the_lamp() {
        let mut engine = engine_with(&["switch-on-at-sunset"]);
        let off = lamp("1", "ok", 5.04).with("powerState", Attribute::property("off"));
        let (_, sunset) = clock::sun_events(jiff::civil::date(2026, 12, 1), 5.04, 47.322).expect("sun");
        let due = sunset + SignedDuration::from_mins(10);
        let mut fired = Vec::new();
        let mut t = due - SignedDuration::from_mins(5);
        while t <= due + SignedDuration::from_mins(5) {
            fired.extend(engine.on_tick(t, [&off].into_iter()));
            t += SignedDuration::from_mins(1);
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        // The sun is computed to 0.01° of the lamp: within seconds of `due`.
        assert!(
            fired[0].at.duration_since(due).abs() <= SignedDuration::from_mins(1),
            "{fired:?}"
        );
        // A lamp already on is left alone.
        let on = lamp("2", "ok", 5.04);
        engine.on_tick(due - SignedDuration::from_mins(1), [&on].into_iter());
        assert!(
            engine
                .on_tick(due + SignedDuration::from_mins(1), [&on].into_iter())
                .is_empty()
        );
    }

    #[test]
    fn area_aggregate_needs_three_distinct_lamps_close_together() {
        let mut engine = engine_with(&["lamps-out-cluster"]);
        let t0 = ts("2026-12-01T21:00:00Z");
        let at = |m: i64| t0 + SignedDuration::from_mins(m);
        // ~0.0004° of longitude is ~30 m at Dijon's latitude.
        assert!(engine.on_change(&lamp("1", "fault", 5.0400), at(0)).is_empty());
        assert!(
            engine.on_change(&lamp("1", "fault", 5.0400), at(1)).is_empty(),
            "same lamp again"
        );
        assert!(
            engine.on_change(&lamp("far", "fault", 5.0600), at(2)).is_empty(),
            "1.5 km away"
        );
        assert!(engine.on_change(&lamp("2", "fault", 5.0404), at(3)).is_empty());
        let f = engine.on_change(&lamp("3", "fault", 5.0408), at(4));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].entity_id.as_str(), "urn:ngsi-ld:Streetlight:dijon:3");
        assert!(
            engine.on_change(&lamp("4", "fault", 5.0402), at(5)).is_empty(),
            "same cluster"
        );
        // An hour later, the first matches have left the window.
        let mut engine = engine_with(&["lamps-out-cluster"]);
        engine.on_change(&lamp("1", "fault", 5.0400), at(0));
        engine.on_change(&lamp("2", "fault", 5.0404), at(30));
        assert!(engine.on_change(&lamp("3", "fault", 5.0408), at(70)).is_empty());
    }

    #[test]
    fn reload_keeps_the_state_of_unchanged_rules() {
        let mut engine = engine_with(&["lamp-out-at-night"]);
        let night = ts("2026-12-01T21:00:00Z");
        assert_eq!(engine.on_change(&lamp("1", "fault", 5.04), night).len(), 1);
        let set = RuleSet::parse_toml(EXAMPLES).expect("valid");
        let mut rules: Vec<Rule> = set.rules().filter(|r| r.id == "lamp-out-at-night").cloned().collect();
        engine.reload(RuleSet::from_rules(rules.clone()).expect("valid"));
        assert!(
            engine.on_change(&lamp("1", "fault", 5.04), night).is_empty(),
            "already raised"
        );
        rules[0].version = 2;
        engine.reload(RuleSet::from_rules(rules).expect("valid"));
        let f = engine.on_change(&lamp("1", "fault", 5.04), night);
        assert!(f.len() == 1 && f[0].rule_version == 2, "a new version starts afresh");
    }

    #[test]
    fn haversine_distance() {
        let d = haversine_m((5.0415, 47.3220), (4.8357, 45.7640));
        assert!((d - 174_000.0).abs() < 2_000.0, "Dijon-Lyon {d}");
        assert!(haversine_m((5.04, 47.32), (5.04, 47.32)) < 1e-6);
    }
}
