//! A rule replayed over recorded history, to show its author what it would
//! have done before it is enabled. The replay drives a fresh [`Engine`]
//! with the recorded times: each recorded state is a change, and the clock
//! ticks every `tick` in between for the triggers that need time to pass.

use std::collections::HashMap;

use jiff::SignedDuration;

use super::RuleError;
use super::engine::{Engine, EvalErrors, Firing};
use super::spec::{self, Rule, RuleSet, Trigger};
use crate::{Entity, EntityId, Observation, Timestamp};

/// Most recorded states replayed; the rest is left out (and said so).
pub const MAX_HISTORY: usize = 1_000_000;
/// Most firings reported.
pub const MAX_FIRINGS: usize = 10_000;
/// Most (tick, equipment) evaluations a replay does.
pub const MAX_TICK_WORK: u64 = 50_000_000;

/// What a rule would have done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DryRun {
    /// In time order, each with the time it would have fired.
    pub firings: Vec<Firing>,
    pub errors: EvalErrors,
    /// The replay stopped at one of the bounds above.
    pub truncated: bool,
}

/// Replays `rule` (enabled for the replay whatever its `enabled`) over
/// `history`, time-ordered (time, state of an equipment after a change).
/// `tick` is how often the clock ticks between changes (one minute when the
/// server runs); rules that do not need ticks are not ticked.
pub fn dry_run(
    mut rule: Rule,
    history: impl IntoIterator<Item = (Timestamp, Entity)>,
    tick: SignedDuration,
) -> Result<DryRun, Vec<RuleError>> {
    rule.enabled = true;
    let ticks = !matches!(rule.trigger, Trigger::OnChange | Trigger::AreaAggregate { .. });
    let tick = tick.max(SignedDuration::from_secs(1));
    let compiled = spec::compile(rule)?;
    let mut engine = Engine::new(RuleSet { rules: vec![compiled] });
    let mut twin: HashMap<EntityId, Entity> = HashMap::new();
    let mut run = DryRun::default();
    let mut next_tick: Option<Timestamp> = None;
    let mut work = 0u64;
    for (count, (at, entity)) in history.into_iter().enumerate() {
        if count >= MAX_HISTORY || run.firings.len() >= MAX_FIRINGS {
            run.truncated = true;
            break;
        }
        if ticks {
            let mut t = next_tick.unwrap_or(at);
            while t <= at {
                work += twin.len() as u64;
                if work > MAX_TICK_WORK {
                    run.truncated = true;
                    break;
                }
                run.firings.extend(engine.on_tick(t, twin.values()));
                t = match t.checked_add(tick) {
                    Ok(next) => next,
                    Err(_) => break,
                };
            }
            next_tick = Some(t);
            if run.truncated {
                break;
            }
        }
        run.firings.extend(engine.on_change(&entity, at));
        twin.insert(entity.id.clone(), entity);
    }
    run.firings.truncate(MAX_FIRINGS);
    if let Some((_, errors)) = engine.evaluation_errors().next() {
        run.errors = errors.clone();
    }
    Ok(run)
}

/// The states equipment went through, rebuilt from recorded values for a
/// replay, in time order: each of `current` (its type, scope, position and
/// unrecorded attributes as they are now) takes its recorded values in time
/// order, and one equipment's values recorded at one instant make one state.
/// Before the first state, every recorded attribute takes its earliest
/// value, so no state mixes a past value with a present one of the same
/// attribute. Lazy: one equipment's state is cloned at a time.
pub fn states_from_history(
    current: impl IntoIterator<Item = Entity>,
    mut recorded: Vec<Observation>,
) -> impl Iterator<Item = (Timestamp, Entity)> {
    recorded.sort_by(|a, b| (a.observed_at, &a.entity_id).cmp(&(b.observed_at, &b.entity_id)));
    let mut states: HashMap<EntityId, Entity> = current.into_iter().map(|e| (e.id.clone(), e)).collect();
    recorded.retain(|o| states.contains_key(&o.entity_id));
    for state in states.values_mut() {
        state.modified_at = None;
    }
    for o in &recorded {
        if let Some(attribute) = states
            .get_mut(&o.entity_id)
            .and_then(|e| e.attributes.instance_mut(&o.attribute, None))
        {
            attribute.observed_at = None;
        }
    }
    let mut primed = std::collections::HashSet::new();
    for o in &recorded {
        if primed.insert((&o.entity_id, o.attribute.as_str()))
            && let Some(state) = states.get_mut(&o.entity_id)
        {
            state.apply(o);
        }
    }
    let mut next = 0;
    std::iter::from_fn(move || {
        let first = recorded.get(next)?;
        let (at, id) = (first.observed_at, first.entity_id.clone());
        let state = states.get_mut(&id)?;
        while let Some(o) = recorded.get(next).filter(|o| o.observed_at == at && o.entity_id == id) {
            state.apply(o);
            next += 1;
        }
        Some((at, state.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attribute, Scope};

    #[test]
    fn replay_shows_past_hits_with_their_times() {
        let set = RuleSet::parse_toml(include_str!("../../rules/examples.toml")).expect("valid");
        let frost = set.rules().find(|r| r.id == "frost-on-roads").cloned().expect("frost");
        let id = EntityId::conventional("WeatherObserved", "dijon", "w1").expect("id");
        let scope = Scope::new("dijon".parse().expect("slug"), "roads".parse().expect("slug"));
        let t0: Timestamp = "2026-12-01T02:00:00Z".parse().expect("ts");
        // A night: cooling to -1 °C, then warming.
        let temperatures = [3.0, 1.0, 0.4, 0.2, -0.5, -1.0, -0.5, 0.8, 1.2, 1.6, 2.0];
        let history = temperatures.iter().enumerate().map(|(i, t)| {
            let at = t0 + SignedDuration::from_mins(10 * i as i64);
            let e = Entity::new(id.clone(), "WeatherObserved", Some(scope.clone()))
                .with("temperature", Attribute::property(*t).observed(at));
            (at, e)
        });
        let run = dry_run(frost, history, SignedDuration::from_mins(1)).expect("valid rule");
        let times: Vec<(String, bool)> = run.firings.iter().map(|f| (f.at.to_string(), f.cleared)).collect();
        assert_eq!(
            times,
            vec![
                // Below 0.5 from 02:20; 15 minutes later, at the 02:35 tick.
                ("2026-12-01T02:35:00Z".to_owned(), false),
                // 1.6 °C is past 0.5 + 1.0 at 03:30.
                ("2026-12-01T03:30:00Z".to_owned(), true),
            ]
        );
        assert!(!run.truncated);
        assert_eq!(run.errors.count, 0);
    }

    #[test]
    fn states_are_rebuilt_in_time_order_one_per_instant() {
        let id = EntityId::conventional("Streetlight", "dijon", "1").expect("id");
        let t: Vec<Timestamp> = ["2026-12-01T18:00:00Z", "2026-12-01T18:10:00Z", "2026-12-01T18:20:00Z"]
            .iter()
            .map(|s| s.parse().expect("ts"))
            .collect();
        let now = Entity::new(id.clone(), "Streetlight", None)
            .with("status", Attribute::property("ok").observed(t[2]))
            .with("powerState", Attribute::property("on").observed(t[2]))
            .with("name", Attribute::property("Rue de la Liberté 12"));
        let obs = |attribute: &str, value: &str, at: Timestamp| Observation {
            entity_id: id.clone(),
            attribute: attribute.into(),
            value: value.into(),
            observed_at: at,
            unit_code: None,
        };
        // Out of order, two at the same instant.
        let recorded = vec![
            obs("status", "ok", t[2]),
            obs("status", "defectiveLamp", t[1]),
            obs("powerState", "on", t[1]),
            obs("status", "ok", t[0]),
            obs("powerState", "off", t[0]),
        ];
        let states: Vec<(Timestamp, Entity)> = states_from_history([now], recorded).collect();
        let seen: Vec<(Timestamp, &str, &str)> = states
            .iter()
            .map(|(at, e)| {
                let text = |name: &str| e.attributes.get(name).and_then(|a| a.value.as_str()).unwrap_or("");
                (*at, text("status"), text("powerState"))
            })
            .collect();
        assert_eq!(
            seen,
            vec![(t[0], "ok", "off"), (t[1], "defectiveLamp", "on"), (t[2], "ok", "on"),]
        );
        // What was never recorded is as it is now.
        assert!(states.iter().all(|(_, e)| e.attributes.contains_key("name")));
    }

    #[test]
    fn an_invalid_rule_is_refused() {
        let set = RuleSet::parse_toml(include_str!("../../rules/examples.toml")).expect("valid");
        let mut rule = set.rules().next().cloned().expect("a rule");
        rule.condition = "status ==".into();
        assert!(dry_run(rule, Vec::new(), SignedDuration::from_mins(1)).is_err());
    }
}
