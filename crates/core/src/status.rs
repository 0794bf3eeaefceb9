//! What an operator needs from an entity at a glance: is it working, in
//! fault, offline, dimmed, or silent? One classification, shared by the
//! console's map colours, its overview counts and (later) the alarms.

use serde::Serialize;

use crate::{Entity, Timestamp};

/// An asset's state as the console colours it, from the most to the least
/// urgent (a cluster shows its most urgent member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetStatus {
    /// The equipment reports a fault (a defective lamp, a controller error).
    Fault,
    /// The equipment says it has lost its link or signal.
    Offline,
    /// Nothing heard for longer than the freshness limit.
    Stale,
    /// A light on below full level.
    Dimmed,
    /// Reporting, and reporting nothing wrong.
    Working,
}

impl AssetStatus {
    pub const ALL: [Self; 5] = [Self::Fault, Self::Offline, Self::Stale, Self::Dimmed, Self::Working];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fault => "fault",
            Self::Offline => "offline",
            Self::Stale => "stale",
            Self::Dimmed => "dimmed",
            Self::Working => "working",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Attributes whose text value says how the equipment is (Smart Data Models
/// use `status` for lights and `deviceState` for devices).
const STATE_ATTRIBUTES: [&str; 2] = ["status", "deviceState"];

/// Words of a state value meaning the link is lost, compared in lowercase.
const OFFLINE_WORDS: [&str; 5] = ["offline", "nosignal", "disconnected", "unreachable", "nocommunication"];
/// Fragments of a state value meaning a fault, compared in lowercase.
const FAULT_FRAGMENTS: [&str; 7] = ["fault", "defect", "broken", "error", "fail", "malfunction", "damaged"];

/// What an asset's state is made of, read once from its attributes when it
/// changes (reading attributes is what costs, by the hundred thousand), and
/// turned into a status at any instant by [`Condition::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Condition {
    /// Fault or offline, as the equipment says.
    said: Option<AssetStatus>,
    dimmed: bool,
    /// The newest observation of any attribute.
    newest: Option<Timestamp>,
}

impl Condition {
    pub fn of(e: &Entity) -> Self {
        Self {
            said: said(e),
            dimmed: dimmed(e),
            newest: e.attributes.values().filter_map(|a| a.observed_at).max(),
        }
    }

    /// A fault or a lost link first (what the equipment says), then silence
    /// (observations older than `stale_after`), then dimming. Entities that
    /// never observe anything (a group, a static asset) are never stale.
    pub fn status(&self, now: Timestamp, stale_after: jiff::SignedDuration) -> AssetStatus {
        if let Some(said) = self.said {
            return said;
        }
        if self
            .newest
            .is_some_and(|newest| now.duration_since(newest) > stale_after)
        {
            return AssetStatus::Stale;
        }
        if self.dimmed {
            return AssetStatus::Dimmed;
        }
        AssetStatus::Working
    }
}

fn said(e: &Entity) -> Option<AssetStatus> {
    // No supply voltage is a fault whatever the rest says: a cabinet whose
    // feed is cut (its lights, unpowered, fall silent).
    let unpowered = e
        .attributes
        .iter()
        .any(|(name, a)| name.starts_with("voltage") && a.value.as_f64() == Some(0.0));
    if unpowered {
        return Some(AssetStatus::Fault);
    }
    STATE_ATTRIBUTES
        .iter()
        .filter_map(|name| e.attributes.get(name).and_then(|a| a.value.as_str()))
        .find_map(said_of)
}

/// What a state value (`status`, `deviceState`) says: a fault, a lost link,
/// or nothing wrong (`None`).
pub fn said_of(state: &str) -> Option<AssetStatus> {
    // The usual answer, without lowercasing nor searching (this runs for
    // every change of every asset).
    if state == "ok" {
        return None;
    }
    let state = state.to_ascii_lowercase();
    if OFFLINE_WORDS.contains(&state.as_str()) {
        return Some(AssetStatus::Offline);
    }
    FAULT_FRAGMENTS
        .iter()
        .any(|f| state.contains(f))
        .then_some(AssetStatus::Fault)
}

/// Lights say "low", or "on" with a level below 1.
fn dimmed(e: &Entity) -> bool {
    let power = e.attributes.get("powerState").and_then(|a| a.value.as_str());
    let level = e.attributes.get("illuminanceLevel").and_then(|a| a.value.as_f64());
    power == Some("low") || (power == Some("on") && level.is_some_and(|l| l > 0.0 && l < 1.0))
}

/// Classifies `e` at `now` (see [`Condition::status`]).
pub fn classify(e: &Entity, now: Timestamp, stale_after: jiff::SignedDuration) -> AssetStatus {
    Condition::of(e).status(now, stale_after)
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::{Attribute, EntityId};

    fn at(minutes: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(minutes)
    }

    fn light(status: &str, power: &str, level: f64, observed: i64) -> Entity {
        let id = EntityId::new("urn:ngsi-ld:Streetlight:1").expect("valid id");
        Entity::new(id, "Streetlight", None)
            .with("status", Attribute::property(status).observed(at(observed)))
            .with("powerState", Attribute::property(power).observed(at(observed)))
            .with("illuminanceLevel", Attribute::property(level).observed(at(observed)))
    }

    const HOUR: SignedDuration = SignedDuration::from_hours(1);

    #[test]
    fn what_the_equipment_says_comes_first() {
        assert_eq!(
            classify(&light("defectiveLamp", "on", 1.0, 0), at(10), HOUR),
            AssetStatus::Fault
        );
        assert_eq!(classify(&light("ok", "on", 1.0, 0), at(10), HOUR), AssetStatus::Working);
        // A fault stays a fault even when the lamp has gone silent since.
        assert_eq!(
            classify(&light("fault", "on", 1.0, 0), at(600), HOUR),
            AssetStatus::Fault
        );
        let camera = Entity::new(EntityId::new("urn:ngsi-ld:Camera:1").expect("id"), "Camera", None)
            .with("deviceState", Attribute::property("noSignal").observed(at(0)));
        assert_eq!(classify(&camera, at(1), HOUR), AssetStatus::Offline);
    }

    #[test]
    fn no_supply_voltage_is_a_fault() {
        let cabinet = |volts: f64| {
            Entity::new(
                EntityId::new("urn:ngsi-ld:StreetlightControlCabinet:1").expect("id"),
                "StreetlightControlCabinet",
                None,
            )
            .with("voltageR", Attribute::property(volts).observed(at(0)))
            .with("workingMode", Attribute::property("automatic").observed(at(0)))
        };
        assert_eq!(classify(&cabinet(0.0), at(1), HOUR), AssetStatus::Fault);
        assert_eq!(classify(&cabinet(231.5), at(1), HOUR), AssetStatus::Working);
    }

    #[test]
    fn silence_beyond_the_limit_is_stale() {
        assert_eq!(classify(&light("ok", "on", 1.0, 0), at(61), HOUR), AssetStatus::Stale);
        assert_eq!(classify(&light("ok", "on", 1.0, 0), at(60), HOUR), AssetStatus::Working);
        let group = Entity::new(
            EntityId::new("urn:ngsi-ld:StreetlightGroup:1").expect("id"),
            "StreetlightGroup",
            None,
        )
        .with("name", Attribute::property("G1"));
        assert_eq!(classify(&group, at(100_000), HOUR), AssetStatus::Working);
    }

    #[test]
    fn a_lit_lamp_below_full_level_is_dimmed() {
        assert_eq!(classify(&light("ok", "on", 0.5, 0), at(1), HOUR), AssetStatus::Dimmed);
        assert_eq!(classify(&light("ok", "low", 0.5, 0), at(1), HOUR), AssetStatus::Dimmed);
        assert_eq!(classify(&light("ok", "off", 0.0, 0), at(1), HOUR), AssetStatus::Working);
        assert_eq!(classify(&light("ok", "on", 1.0, 0), at(1), HOUR), AssetStatus::Working);
    }

    #[test]
    fn the_order_puts_the_most_urgent_first() {
        let mut all = AssetStatus::ALL;
        all.sort();
        assert_eq!(all[0], AssetStatus::Fault);
        assert_eq!(all[4], AssetStatus::Working);
    }
}
