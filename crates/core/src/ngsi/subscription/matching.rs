//! Whether a change of one entity fires a subscription, and why (5.8, 5.11),
//! plus the time rules: throttling, cooldown after a failure, and the
//! schedule of periodic (`timeInterval`) subscriptions.

use jiff::SignedDuration;

use super::{Subscription, SubscriptionStatus, Trigger};
use crate::{Entity, Timestamp};

/// What happened to an entity, or to one of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One attribute whose value or metadata changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeChange<'a> {
    pub name: &'a str,
    pub kind: ChangeKind,
}

/// A change of one entity, with the attributes it touched worked out once
/// and shared by every subscription evaluated against it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    before: Option<&'a Entity>,
    after: Option<&'a Entity>,
    /// The state queries read: the new one, or the old one for a deletion.
    subject: &'a Entity,
    kind: ChangeKind,
    /// In name order.
    attributes: Vec<AttributeChange<'a>>,
    /// The entity's own members (its scope) changed.
    scope_changed: bool,
}

impl<'a> Change<'a> {
    /// `before` absent: a creation; `after` absent: a deletion; both: an
    /// update. `None` when neither is given, or when they are two different
    /// entities (the caller's mistake, not a change).
    pub fn new(before: Option<&'a Entity>, after: Option<&'a Entity>) -> Option<Self> {
        let every = |e: &'a Entity, kind| {
            e.attributes
                .keys()
                .map(|name| AttributeChange { name, kind })
                .collect::<Vec<_>>()
        };
        let (kind, subject, attributes, scope_changed) = match (before, after) {
            (None, None) => return None,
            (None, Some(a)) => (ChangeKind::Created, a, every(a, ChangeKind::Created), false),
            (Some(b), None) => (ChangeKind::Deleted, b, every(b, ChangeKind::Deleted), false),
            (Some(b), Some(a)) => {
                if b.id != a.id {
                    return None;
                }
                (ChangeKind::Updated, a, diff(b, a), b.scope != a.scope)
            }
        };
        Some(Self {
            before,
            after,
            subject,
            kind,
            attributes,
            scope_changed,
        })
    }

    pub fn kind(&self) -> ChangeKind {
        self.kind
    }
    pub fn before(&self) -> Option<&'a Entity> {
        self.before
    }
    pub fn after(&self) -> Option<&'a Entity> {
        self.after
    }
    /// The entity as `q`, `geoQ` and `scopeQ` see it: after the change, or
    /// before it for a deletion.
    pub fn subject(&self) -> &'a Entity {
        self.subject
    }
    /// The attributes created, updated (value or metadata) or deleted.
    pub fn attributes(&self) -> &[AttributeChange<'a>] {
        &self.attributes
    }
    /// An update that changed nothing (the same values written again).
    pub fn is_empty(&self) -> bool {
        self.kind == ChangeKind::Updated && self.attributes.is_empty() && !self.scope_changed
    }
}

/// The attributes that differ between two states, by a walk of both
/// name-ordered maps.
fn diff<'a>(before: &'a Entity, after: &'a Entity) -> Vec<AttributeChange<'a>> {
    let mut out = Vec::new();
    let mut old = before.attributes.iter().peekable();
    let mut new = after.attributes.iter().peekable();
    loop {
        let change = match (old.peek(), new.peek()) {
            (None, None) => return out,
            (Some((name, _)), None) => {
                let name = name.as_str();
                old.next();
                Some((name, ChangeKind::Deleted))
            }
            (None, Some((name, _))) => {
                let name = name.as_str();
                new.next();
                Some((name, ChangeKind::Created))
            }
            (Some((o, oa)), Some((n, na))) => match o.cmp(n) {
                std::cmp::Ordering::Less => {
                    let name = o.as_str();
                    old.next();
                    Some((name, ChangeKind::Deleted))
                }
                std::cmp::Ordering::Greater => {
                    let name = n.as_str();
                    new.next();
                    Some((name, ChangeKind::Created))
                }
                std::cmp::Ordering::Equal => {
                    // Value, kind and every metadata member compared.
                    let changed = (oa != na).then_some((n.as_str(), ChangeKind::Updated));
                    old.next();
                    new.next();
                    changed
                }
            },
        };
        if let Some((name, kind)) = change {
            out.push(AttributeChange { name, kind });
        }
    }
}

/// Whether a subscription fires for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Notify; the trigger says why (the first of [`Trigger::ALL`] that applies).
    Fire(Trigger),
    Skip(Skip),
}

/// Why a subscription does not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `isActive` is false.
    Paused,
    /// `expiresAt` has passed.
    Expired,
    /// The subscription notifies on time (`timeInterval`), not on change.
    Periodic,
    /// No entity selector selects the entity.
    NotSelected,
    /// Nothing the subscription watches changed.
    NotWatched,
    /// The change is not of a kind `notificationTrigger` lists.
    NotTriggered,
    /// `scopeQ` does not select the entity.
    ScopeQuery,
    /// `q` does not select the entity.
    Query,
    /// `geoQ` does not select the entity.
    GeoQuery,
}

impl Subscription {
    /// Decides whether `change` fires this subscription at `now`. Checked in
    /// order of cost: status, periodic, entity selectors, triggers and
    /// watched attributes, then `scopeQ`, `q`, `geoQ` on [`Change::subject`].
    ///
    /// Triggers: a creation fires `entityCreated`, else `attributeCreated`
    /// when a watched attribute came with the entity; a deletion fires
    /// `entityDeleted` only; an update fires `entityUpdated`, else
    /// `attributeCreated` / `attributeUpdated` / `attributeDeleted`, when a
    /// watched attribute changed (without `watchedAttributes`, any attribute;
    /// a scope change alone counts for `entityUpdated`).
    pub fn evaluate(&self, change: &Change<'_>, now: Timestamp) -> Verdict {
        match self.status(now) {
            SubscriptionStatus::Active => {}
            SubscriptionStatus::Paused => return Verdict::Skip(Skip::Paused),
            SubscriptionStatus::Expired => return Verdict::Skip(Skip::Expired),
        }
        if self.time_interval.is_some() {
            return Verdict::Skip(Skip::Periodic);
        }
        let entity = change.subject();
        if !self.selects_entity(entity) {
            return Verdict::Skip(Skip::NotSelected);
        }
        let trigger = match self.trigger_for(change) {
            Ok(t) => t,
            Err(skip) => return Verdict::Skip(skip),
        };
        match self.filter(entity) {
            Some(skip) => Verdict::Skip(skip),
            None => Verdict::Fire(trigger),
        }
    }

    /// Whether the entity is one this subscription is about: its selectors,
    /// `scopeQ`, `q` and `geoQ`. What a periodic notification gathers.
    pub fn selects(&self, entity: &Entity) -> bool {
        self.selects_entity(entity) && self.filter(entity).is_none()
    }

    fn selects_entity(&self, entity: &Entity) -> bool {
        self.entities.is_empty()
            || self.entities.iter().any(|s| {
                s.types.contains(&entity.entity_type)
                    && s.id.as_ref().is_none_or(|id| *id == entity.id)
                    && s.id_pattern.as_ref().is_none_or(|p| p.is_match(entity.id.as_str()))
            })
    }

    fn watches(&self, attribute: &str) -> bool {
        self.watched_attributes.is_empty() || self.watched_attributes.iter().any(|w| w == attribute)
    }

    fn trigger_for(&self, change: &Change<'_>) -> Result<Trigger, Skip> {
        let wanted = self.triggers;
        let watched_change =
            |kind: ChangeKind| change.attributes.iter().any(|a| a.kind == kind && self.watches(a.name));
        match change.kind {
            ChangeKind::Created => {
                if wanted.contains(Trigger::EntityCreated) {
                    Ok(Trigger::EntityCreated)
                } else if !wanted.contains(Trigger::AttributeCreated) {
                    Err(Skip::NotTriggered)
                } else if watched_change(ChangeKind::Created) {
                    Ok(Trigger::AttributeCreated)
                } else {
                    Err(Skip::NotWatched)
                }
            }
            ChangeKind::Deleted if wanted.contains(Trigger::EntityDeleted) => Ok(Trigger::EntityDeleted),
            ChangeKind::Deleted => Err(Skip::NotTriggered),
            ChangeKind::Updated => {
                let any_watched = change.attributes.iter().any(|a| self.watches(a.name))
                    || (self.watched_attributes.is_empty() && change.scope_changed);
                if !any_watched {
                    return Err(Skip::NotWatched);
                }
                if wanted.contains(Trigger::EntityUpdated) {
                    return Ok(Trigger::EntityUpdated);
                }
                [
                    (ChangeKind::Created, Trigger::AttributeCreated),
                    (ChangeKind::Updated, Trigger::AttributeUpdated),
                    (ChangeKind::Deleted, Trigger::AttributeDeleted),
                ]
                .into_iter()
                .find(|(kind, trigger)| wanted.contains(*trigger) && watched_change(*kind))
                .map(|(_, trigger)| trigger)
                .ok_or(Skip::NotTriggered)
            }
        }
    }

    /// The first of `scopeQ`, `q`, `geoQ` (cheapest first) the entity fails.
    fn filter(&self, entity: &Entity) -> Option<Skip> {
        if self.scope_q.as_ref().is_some_and(|s| !s.matches(entity)) {
            return Some(Skip::ScopeQuery);
        }
        if self.q.as_ref().is_some_and(|q| !q.matches(entity)) {
            return Some(Skip::Query);
        }
        if self.geo_q.as_ref().is_some_and(|g| !g.query().matches(entity)) {
            return Some(Skip::GeoQuery);
        }
        None
    }

    /// Whether `throttling` lets a notification go at `now`, the previous one
    /// having gone at `last_notification`. Always true without throttling.
    pub fn throttle_allows(&self, last_notification: Option<Timestamp>, now: Timestamp) -> bool {
        match (self.throttling, last_notification) {
            (Some(secs), Some(last)) => elapsed_secs(last, now) >= secs,
            _ => true,
        }
    }

    /// Whether the endpoint's `cooldown` after the failure at `last_failure`
    /// has passed at `now`. Always true without a cooldown.
    pub fn cooldown_allows(&self, last_failure: Option<Timestamp>, now: Timestamp) -> bool {
        match (self.notification.endpoint.cooldown_ms(), last_failure) {
            (Some(ms), Some(last)) => now.duration_since(last).as_millis() >= i128::from(ms),
            _ => true,
        }
    }

    /// For a periodic subscription, whether a notification is due at `now`,
    /// the previous one having gone at `last` (never: due at once). Always
    /// false for a change-driven subscription, or one not active.
    pub fn due(&self, now: Timestamp, last: Option<Timestamp>) -> bool {
        let Some(interval) = self.time_interval else {
            return false;
        };
        self.status(now) == SubscriptionStatus::Active && last.is_none_or(|l| elapsed_secs(l, now) >= interval)
    }

    /// When a periodic subscription is next due, the previous notification
    /// having gone at `last`: for the delivery worker's timer. `None` for a
    /// change-driven subscription.
    pub fn next_due(&self, last: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        let interval = SignedDuration::try_from_secs_f64(self.time_interval?).ok()?;
        match last {
            None => Some(now),
            Some(l) => l.checked_add(interval).ok(),
        }
    }
}

fn elapsed_secs(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}
