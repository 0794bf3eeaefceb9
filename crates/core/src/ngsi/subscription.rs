//! NGSI-LD subscriptions (ETSI GS CIM 009 v1.8, data types 5.2.12 Subscription,
//! 5.2.14 NotificationParams, 5.2.15 Endpoint; behaviour 5.8 and 5.11), with
//! no I/O: parsing and validating a body, the representation the API returns,
//! PATCH semantics, deciding whether a change of an entity fires a
//! subscription, building the notification, and the delivery bookkeeping.
//!
//! A [`Subscription`] is its own compiled form: `q`, `geoQ`, `scopeQ` and every
//! `idPattern` are parsed once when it is created or loaded, so evaluating it
//! against a change costs string comparisons and the query itself. Work shared
//! by every subscription (which attributes changed) is done once per change by
//! [`Change::new`].
//!
//! The server's part: generate ids, keep subscriptions, call
//! [`Subscription::evaluate`] for each committed change, build the body with
//! [`Subscription::notification`], deliver it (HTTP with
//! [`Subscription::notification_headers`], MQTT with
//! [`Subscription::mqtt_message`]), then record the outcome with
//! [`Subscription::record_success`] / [`Subscription::record_failure`].

mod endpoint;
mod matching;
mod notify;
#[cfg(test)]
mod tests;

use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{GeoQuery, Query, ScopeQuery};
use crate::entity::format_timestamp;
use crate::{EntityId, Timestamp};

pub use endpoint::{Accept, Endpoint, KeyValuePair, MqttTarget, MqttVersion, Target};
pub use matching::{AttributeChange, Change, ChangeKind, Skip, Verdict};
pub use notify::{CORE_CONTEXT, MqttMessage, NGSI_LD_NULL};

/// Most entity selectors in `entities`.
pub const MAX_ENTITY_SELECTORS: usize = 100;
/// Most names in `watchedAttributes`, and in `notification.attributes`.
pub const MAX_ATTRIBUTES: usize = 100;
/// Longest attribute name, entity type name, `subscriptionName`, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest `description`, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Longest `idPattern`, in bytes.
pub const MAX_ID_PATTERN_LEN: usize = 1024;
/// Longest `throttling` and `timeInterval`, in seconds: a year.
pub const MAX_INTERVAL_SECS: f64 = 365.0 * 24.0 * 3600.0;
/// Longest `lang`, in bytes.
pub const MAX_LANG_LEN: usize = 64;
/// Compiled size allowed to one `idPattern` (as for `q`'s regular expressions).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a subscription body (or PATCH fragment) was refused: the member, as a
/// path from the body's root (`notification.endpoint.uri`), and the problem.
/// The API answers it as a `BadRequestData` ProblemDetails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subscription member '{member}': {reason}")]
pub struct SubscriptionError {
    pub member: String,
    pub reason: String,
}

pub(crate) fn invalid(member: impl Into<String>, reason: impl Into<String>) -> SubscriptionError {
    SubscriptionError {
        member: member.into(),
        reason: reason.into(),
    }
}

/// What kind of change a subscription asks to be told about (`notificationTrigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    EntityCreated,
    EntityUpdated,
    EntityDeleted,
    AttributeCreated,
    AttributeUpdated,
    AttributeDeleted,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Self::EntityCreated,
        Self::EntityUpdated,
        Self::EntityDeleted,
        Self::AttributeCreated,
        Self::AttributeUpdated,
        Self::AttributeDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntityCreated => "entityCreated",
            Self::EntityUpdated => "entityUpdated",
            Self::EntityDeleted => "entityDeleted",
            Self::AttributeCreated => "attributeCreated",
            Self::AttributeUpdated => "attributeUpdated",
            Self::AttributeDeleted => "attributeDeleted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Trigger`]s, one bit each: tested for every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggers(u8);

impl Triggers {
    /// What a subscription without `notificationTrigger` is told about.
    pub const DEFAULT: Triggers =
        Triggers((1 << Trigger::AttributeCreated as u8) | (1 << Trigger::AttributeUpdated as u8));

    pub fn contains(self, t: Trigger) -> bool {
        self.0 & t.bit() != 0
    }

    /// The triggers in the set, in [`Trigger::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Trigger> {
        Trigger::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<Trigger> for Triggers {
    fn from_iter<I: IntoIterator<Item = Trigger>>(items: I) -> Self {
        Self(items.into_iter().fold(0, |bits, t| bits | t.bit()))
    }
}

/// How notified entities are represented (`notification.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    /// `keyValues`; `simplified` is accepted as its other name.
    KeyValues,
    Concise,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normalized => "normalized",
            Self::KeyValues => "keyValues",
            Self::Concise => "concise",
        }
    }
}

/// A subscription's state, computed from `isActive` and `expiresAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    Paused,
    Expired,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Expired => "expired",
        }
    }
}

/// The outcome of the last delivery (`notification.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Ok,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// Which entities a subscription is about: all of `types` (any of them),
/// narrowed to one `id` or to the ids an `idPattern` matches.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySelector {
    pub id: Option<EntityId>,
    pub id_pattern: Option<IdPattern>,
    /// The entity types, any of which selects (`type: "A,B"`); never empty.
    pub types: Vec<String>,
}

/// A compiled `idPattern`, compared by its source text. It matches anywhere
/// in the id, as regular expressions do: anchor it with `^…$` to match all.
#[derive(Debug, Clone)]
pub struct IdPattern {
    source: String,
    regex: Regex,
    literal: Option<Literal>,
}

/// A pattern that is a fixed text, anchored or not (`^urn:ngsi-ld:Streetlight:`,
/// `:0042$`, `dijon`): most are, and they are tested without the regex
/// engine's per-search setup. Why it matters: each change is tested against
/// every subscription's pattern in the writer, 100 subscriptions at 10,000
/// changes a second is a million tests a second.
#[derive(Debug, Clone, PartialEq)]
struct Literal {
    text: String,
    at_start: bool,
    at_end: bool,
}

impl Literal {
    fn of(source: &str) -> Option<Self> {
        let (at_start, rest) = match source.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, source.strip_prefix(".*").unwrap_or(source)),
        };
        let (at_end, rest) = match rest.strip_suffix('$') {
            Some(rest) => (true, rest),
            None => (false, rest.strip_suffix(".*").unwrap_or(rest)),
        };
        // Any escape or operator left (an escaped `$` or `.*` included): a regex.
        let plain = !rest.is_empty() && !rest.contains(|c: char| "\\.+*?()|[]{}^$".contains(c));
        plain.then(|| Self {
            text: rest.to_owned(),
            at_start,
            at_end,
        })
    }

    fn is_match(&self, id: &str) -> bool {
        match (self.at_start, self.at_end) {
            (true, true) => id == self.text,
            (true, false) => id.starts_with(&self.text),
            (false, true) => id.ends_with(&self.text),
            (false, false) => id.contains(&self.text),
        }
    }
}

impl PartialEq for IdPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl IdPattern {
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("must be a non-empty regular expression".into());
        }
        if source.len() > MAX_ID_PATTERN_LEN {
            return Err(format!("is longer than {MAX_ID_PATTERN_LEN} bytes"));
        }
        let regex = RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => "is too complex a regular expression".to_owned(),
                other => {
                    let detail = other.to_string();
                    let last = detail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                    format!("is not a valid regular expression: {}", last.trim())
                }
            })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
            literal: Literal::of(source),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, id: &str) -> bool {
        match &self.literal {
            Some(literal) => literal.is_match(id),
            None => self.regex.is_match(id),
        }
    }
}

/// A subscription's `geoQ`: the members as given (to render them back) and
/// the parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQ {
    geometry: String,
    coordinates: Value,
    georel: String,
    geoproperty: Option<String>,
    query: GeoQuery,
}

impl GeoQ {
    pub fn query(&self) -> &GeoQuery {
        &self.query
    }
}

/// Delivery bookkeeping (`notification.timesSent`, `lastNotification`...):
/// what the broker writes, never the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Attempts, successful or not.
    pub times_sent: u64,
    pub times_failed: u64,
    /// The last attempt.
    pub last_notification: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    /// Unset until the first attempt.
    pub status: Option<DeliveryStatus>,
}

/// `notification`: what to send, in which form, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationParams {
    /// The attributes notified; empty for all of them.
    attributes: Vec<String>,
    format: Format,
    show_changes: bool,
    sys_attrs: bool,
    endpoint: Endpoint,
    delivery: DeliveryRecord,
}

impl NotificationParams {
    pub fn attributes(&self) -> &[String] {
        &self.attributes
    }
    pub fn format(&self) -> Format {
        self.format
    }
    pub fn show_changes(&self) -> bool {
        self.show_changes
    }
    pub fn sys_attrs(&self) -> bool {
        self.sys_attrs
    }
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
    pub fn delivery(&self) -> &DeliveryRecord {
        &self.delivery
    }
}

/// An NGSI-LD subscription, validated: every value it holds obeys the
/// specification's rules and Vigie's bounds (the `MAX_*` constants).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    id: EntityId,
    name: Option<String>,
    description: Option<String>,
    entities: Vec<EntitySelector>,
    watched_attributes: Vec<String>,
    triggers: Triggers,
    q: Option<Query>,
    geo_q: Option<GeoQ>,
    scope_q: Option<ScopeQuery>,
    /// Seconds between periodic notifications.
    time_interval: Option<f64>,
    /// Least seconds between two notifications.
    throttling: Option<f64>,
    expires_at: Option<Timestamp>,
    is_active: bool,
    lang: Option<String>,
    notification: NotificationParams,
    jsonld_context: Option<String>,
    created_at: Option<Timestamp>,
    modified_at: Option<Timestamp>,
}

/// Members a client may not set: the broker computes them. They are ignored
/// in a body, as a client may send back what it read.
const READ_ONLY: [&str; 3] = ["status", "createdAt", "modifiedAt"];
const READ_ONLY_NOTIFICATION: [&str; 6] = [
    "status",
    "timesSent",
    "timesFailed",
    "lastNotification",
    "lastSuccess",
    "lastFailure",
];
/// Members of the specification Vigie does not implement: refused by name
/// rather than silently ignored, so a client knows its filter is not applied.
const UNSUPPORTED: [&str; 7] = ["csf", "temporalQ", "datasetId", "join", "joinLevel", "pick", "omit"];

/// How a body is read.
#[derive(Clone, Copy)]
struct Mode {
    /// `expiresAt` must lie after this instant (creation, or a PATCH setting it).
    expires_after: Option<Timestamp>,
    /// Read the broker-written members too (loading from storage).
    restore: bool,
}

impl Subscription {
    /// Parses and validates the body of `POST /subscriptions`. `generated_id`
    /// is used when the body has no `id`; `now` stamps `createdAt` and must
    /// precede `expiresAt`. `@context` is left to the API layer, which has
    /// resolved the terms before calling this.
    pub fn create(body: &Value, generated_id: EntityId, now: Timestamp) -> Result<Self, SubscriptionError> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("", "a subscription must be a JSON object"))?;
        let mode = Mode {
            expires_after: Some(now),
            restore: false,
        };
        let mut sub = Self::parse(obj, Some(generated_id), mode)?;
        sub.created_at = Some(now);
        sub.modified_at = Some(now);
        Ok(sub)
    }

    /// Applies a `PATCH /subscriptions/{id}` fragment (5.8.2): each member
    /// given replaces the current one; inside `notification`, each member
    /// given replaces the current one (`endpoint` as a whole). A member set
    /// to `null` or to the NGSI-LD Null (`"urn:ngsi-ld:null"`) is removed.
    /// The result is validated as a whole; `id` and `type` cannot change.
    /// Delivery bookkeeping and `createdAt` are kept; `modifiedAt` is `now`.
    pub fn update(&self, fragment: &Value, now: Timestamp) -> Result<Self, SubscriptionError> {
        let patch = fragment
            .as_object()
            .ok_or_else(|| invalid("", "a subscription fragment must be a JSON object"))?;
        if patch.is_empty() {
            return Err(invalid("", "the fragment is empty: nothing to update"));
        }
        if let Some(id) = patch.get("id")
            && id.as_str() != Some(self.id.as_str())
        {
            return Err(invalid("id", "a subscription's id cannot change"));
        }
        let mut merged = match self.representation(false) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (key, value) in patch {
            if READ_ONLY.contains(&key.as_str()) || key == "@context" {
                continue;
            }
            match (key.as_str(), value) {
                ("notification", Value::Object(inner)) => {
                    let target = merged
                        .entry("notification")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(target) = target {
                        for (k, v) in inner {
                            merge_member(target, k, v);
                        }
                    }
                }
                _ => merge_member(&mut merged, key, value),
            }
        }
        let mode = Mode {
            expires_after: patch.contains_key("expiresAt").then_some(now),
            restore: false,
        };
        let mut updated = Self::parse(&merged, None, mode)?;
        updated.notification.delivery = self.notification.delivery.clone();
        updated.created_at = self.created_at;
        updated.modified_at = Some(now);
        Ok(updated)
    }

    /// The representation `GET /subscriptions/{id}` answers, with `status`
    /// as of `now`, and `createdAt` / `modifiedAt` when `sys_attrs`.
    pub fn to_json(&self, now: Timestamp, sys_attrs: bool) -> Value {
        let mut v = self.representation(sys_attrs);
        if let Value::Object(m) = &mut v {
            // `status` reads best next to `isActive`: rebuild in order.
            let mut out = Map::with_capacity(m.len() + 1);
            for (k, val) in std::mem::take(m) {
                let after_active = k == "isActive";
                out.insert(k, val);
                if after_active {
                    out.insert("status".into(), Value::String(self.status(now).as_str().into()));
                }
            }
            *m = out;
        }
        v
    }

    // ------------------------------------------------------------ accessors

    pub fn id(&self) -> &EntityId {
        &self.id
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Empty when the subscription selects by `watchedAttributes` alone.
    pub fn entities(&self) -> &[EntitySelector] {
        &self.entities
    }
    /// Empty when any attribute's change counts.
    pub fn watched_attributes(&self) -> &[String] {
        &self.watched_attributes
    }
    pub fn triggers(&self) -> Triggers {
        self.triggers
    }
    pub fn q(&self) -> Option<&Query> {
        self.q.as_ref()
    }
    pub fn geo_q(&self) -> Option<&GeoQ> {
        self.geo_q.as_ref()
    }
    pub fn scope_q(&self) -> Option<&ScopeQuery> {
        self.scope_q.as_ref()
    }
    /// Seconds between periodic notifications; such a subscription does not
    /// fire on change (see [`Subscription::due`]).
    pub fn time_interval(&self) -> Option<f64> {
        self.time_interval
    }
    /// Least seconds between two notifications (see [`Subscription::throttle_allows`]).
    pub fn throttling(&self) -> Option<f64> {
        self.throttling
    }
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    pub fn is_active(&self) -> bool {
        self.is_active
    }
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }
    pub fn notification_params(&self) -> &NotificationParams {
        &self.notification
    }
    pub fn endpoint(&self) -> &Endpoint {
        &self.notification.endpoint
    }
    pub fn delivery(&self) -> &DeliveryRecord {
        &self.notification.delivery
    }
    pub fn jsonld_context(&self) -> Option<&str> {
        self.jsonld_context.as_deref()
    }
    pub fn created_at(&self) -> Option<Timestamp> {
        self.created_at
    }
    pub fn modified_at(&self) -> Option<Timestamp> {
        self.modified_at
    }

    // ------------------------------------------------------------ status

    /// `expired` once `expiresAt` is reached (whatever `isActive`), else
    /// `paused` when `isActive` is false, else `active`.
    pub fn status(&self, now: Timestamp) -> SubscriptionStatus {
        if self.expires_at.is_some_and(|t| t <= now) {
            SubscriptionStatus::Expired
        } else if !self.is_active {
            SubscriptionStatus::Paused
        } else {
            SubscriptionStatus::Active
        }
    }

    /// Records a delivered notification (5.11: `timesSent`, `lastNotification`,
    /// `lastSuccess`, `status` ok).
    pub fn record_success(&mut self, at: Timestamp) {
        let d = &mut self.notification.delivery;
        d.times_sent = d.times_sent.saturating_add(1);
        d.last_notification = Some(at);
        d.last_success = Some(at);
        d.status = Some(DeliveryStatus::Ok);
    }

    /// Records a failed delivery (5.11: `timesSent`, `timesFailed`,
    /// `lastNotification`, `lastFailure`, `status` failed).
    pub fn record_failure(&mut self, at: Timestamp) {
        let d = &mut self.notification.delivery;
        d.times_sent = d.times_sent.saturating_add(1);
        d.times_failed = d.times_failed.saturating_add(1);
        d.last_notification = Some(at);
        d.last_failure = Some(at);
        d.status = Some(DeliveryStatus::Failed);
    }

    // ------------------------------------------------------------ parsing

    fn parse(obj: &Map<String, Value>, fallback_id: Option<EntityId>, mode: Mode) -> Result<Self, SubscriptionError> {
        for key in obj.keys() {
            let known = matches!(
                key.as_str(),
                "id" | "type"
                    | "subscriptionName"
                    | "description"
                    | "entities"
                    | "watchedAttributes"
                    | "notificationTrigger"
                    | "timeInterval"
                    | "q"
                    | "geoQ"
                    | "scopeQ"
                    | "isActive"
                    | "notification"
                    | "expiresAt"
                    | "throttling"
                    | "lang"
                    | "jsonldContext"
                    | "@context"
            ) || READ_ONLY.contains(&key.as_str());
            if UNSUPPORTED.contains(&key.as_str()) {
                return Err(invalid(key, "is not supported by Vigie"));
            }
            if !known {
                return Err(invalid(key, "is not a member of a Subscription"));
            }
        }
        let id = match obj.get("id") {
            Some(v) => {
                let s = v.as_str().ok_or_else(|| invalid("id", "must be a string (a URI)"))?;
                EntityId::new(s).map_err(|e| invalid("id", e.to_string()))?
            }
            None => fallback_id.ok_or_else(|| invalid("id", "is missing"))?,
        };
        match obj.get("type") {
            None => {}
            Some(Value::String(t)) if t == "Subscription" => {}
            Some(_) => return Err(invalid("type", "must be \"Subscription\"")),
        }
        let name = text(obj, "subscriptionName", "subscriptionName", MAX_NAME_LEN)?;
        let description = text(obj, "description", "description", MAX_DESCRIPTION_LEN)?;
        let entities = match obj.get("entities") {
            None => Vec::new(),
            Some(v) => {
                let items = bounded_array(v, "entities", MAX_ENTITY_SELECTORS)?;
                if items.is_empty() {
                    return Err(invalid(
                        "entities",
                        "must hold at least one entity selector, or be left out",
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| entity_selector(item, &format!("entities[{i}]")))
                    .collect::<Result<_, _>>()?
            }
        };
        let watched_attributes = names(obj, "watchedAttributes", "watchedAttributes")?.unwrap_or_default();
        if entities.is_empty() && watched_attributes.is_empty() {
            return Err(invalid(
                "entities",
                "a subscription needs 'entities', 'watchedAttributes' or both",
            ));
        }
        let triggers = match obj.get("notificationTrigger") {
            None => Triggers::DEFAULT,
            Some(v) => {
                let items = bounded_array(v, "notificationTrigger", Trigger::ALL.len() * 2)?;
                if items.is_empty() {
                    return Err(invalid(
                        "notificationTrigger",
                        "must list at least one trigger, or be left out",
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.as_str().and_then(Trigger::parse).ok_or_else(|| {
                            invalid(
                                format!("notificationTrigger[{i}]"),
                                "must be one of entityCreated, entityUpdated, entityDeleted, attributeCreated, attributeUpdated, attributeDeleted",
                            )
                        })
                    })
                    .collect::<Result<Triggers, _>>()?
            }
        };
        let time_interval = seconds(obj, "timeInterval")?;
        let throttling = seconds(obj, "throttling")?;
        if time_interval.is_some() && !watched_attributes.is_empty() {
            return Err(invalid(
                "timeInterval",
                "a periodic subscription cannot have 'watchedAttributes': it notifies on time, not on change",
            ));
        }
        if time_interval.is_some() && throttling.is_some() {
            return Err(invalid(
                "throttling",
                "a periodic subscription ('timeInterval') cannot also be throttled",
            ));
        }
        let q = match text(obj, "q", "q", usize::MAX)? {
            None => None,
            Some(s) => Some(Query::parse(&s).map_err(|e| invalid("q", e.to_string()))?),
        };
        let geo_q = obj.get("geoQ").map(geo_q).transpose()?;
        let scope_q = match text(obj, "scopeQ", "scopeQ", usize::MAX)? {
            None => None,
            Some(s) => Some(ScopeQuery::parse(&s).map_err(|e| invalid("scopeQ", e.to_string()))?),
        };
        let expires_at = timestamp(obj, "expiresAt", "expiresAt")?;
        if let (Some(at), Some(now)) = (expires_at, mode.expires_after)
            && at <= now
        {
            return Err(invalid("expiresAt", "must lie in the future"));
        }
        let is_active = match obj.get("isActive") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("isActive", "must be true or false")),
        };
        let lang = text(obj, "lang", "lang", MAX_LANG_LEN)?;
        if let Some(l) = &lang
            && !l.split(',').all(|tag| {
                let tag = tag.trim();
                tag == "*" || (!tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            })
        {
            return Err(invalid(
                "lang",
                "must be language tags separated by commas (e.g. \"fr,en\"), or \"*\"",
            ));
        }
        let jsonld_context = text(obj, "jsonldContext", "jsonldContext", endpoint::MAX_URI_LEN)?;
        if let Some(c) = &jsonld_context
            && !endpoint::is_absolute_uri(c)
        {
            return Err(invalid("jsonldContext", "must be an absolute URI"));
        }
        let notification = match obj.get("notification") {
            None => return Err(invalid("notification", "is missing: it says where to notify")),
            Some(v) => notification_params(v, mode)?,
        };
        let (created_at, modified_at) = if mode.restore {
            (
                timestamp(obj, "createdAt", "createdAt")?,
                timestamp(obj, "modifiedAt", "modifiedAt")?,
            )
        } else {
            (None, None)
        };
        Ok(Self {
            id,
            name,
            description,
            entities,
            watched_attributes,
            triggers,
            q,
            geo_q,
            scope_q,
            time_interval,
            throttling,
            expires_at,
            is_active,
            lang,
            notification,
            jsonld_context,
            created_at,
            modified_at,
        })
    }

    // ------------------------------------------------------------ rendering

    /// Every member but the computed `status`: what storage keeps (with
    /// `sys_attrs`) and what [`Subscription::to_json`] starts from.
    fn representation(&self, sys_attrs: bool) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.to_string()));
        m.insert("type".into(), Value::String("Subscription".into()));
        if let Some(n) = &self.name {
            m.insert("subscriptionName".into(), Value::String(n.clone()));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if !self.entities.is_empty() {
            let selectors = self
                .entities
                .iter()
                .map(|s| {
                    let mut e = Map::new();
                    if let Some(id) = &s.id {
                        e.insert("id".into(), Value::String(id.to_string()));
                    }
                    if let Some(p) = &s.id_pattern {
                        e.insert("idPattern".into(), Value::String(p.source.clone()));
                    }
                    e.insert("type".into(), Value::String(s.types.join(",")));
                    Value::Object(e)
                })
                .collect();
            m.insert("entities".into(), Value::Array(selectors));
        }
        if !self.watched_attributes.is_empty() {
            m.insert("watchedAttributes".into(), strings(&self.watched_attributes));
        }
        m.insert(
            "notificationTrigger".into(),
            Value::Array(self.triggers.iter().map(|t| Value::String(t.as_str().into())).collect()),
        );
        if let Some(q) = &self.q {
            m.insert("q".into(), Value::String(q.to_string()));
        }
        if let Some(g) = &self.geo_q {
            let mut geo = Map::new();
            geo.insert("geometry".into(), Value::String(g.geometry.clone()));
            geo.insert("coordinates".into(), g.coordinates.clone());
            geo.insert("georel".into(), Value::String(g.georel.clone()));
            if let Some(p) = &g.geoproperty {
                geo.insert("geoproperty".into(), Value::String(p.clone()));
            }
            m.insert("geoQ".into(), Value::Object(geo));
        }
        if let Some(s) = &self.scope_q {
            m.insert("scopeQ".into(), Value::String(s.to_string()));
        }
        if let Some(t) = self.time_interval {
            m.insert("timeInterval".into(), seconds_json(t));
        }
        if let Some(t) = self.throttling {
            m.insert("throttling".into(), seconds_json(t));
        }
        if let Some(t) = self.expires_at {
            m.insert("expiresAt".into(), Value::String(format_timestamp(t)));
        }
        m.insert("isActive".into(), Value::Bool(self.is_active));
        if let Some(l) = &self.lang {
            m.insert("lang".into(), Value::String(l.clone()));
        }
        m.insert("notification".into(), self.notification.to_json());
        if let Some(c) = &self.jsonld_context {
            m.insert("jsonldContext".into(), Value::String(c.clone()));
        }
        if sys_attrs {
            if let Some(t) = self.created_at {
                m.insert("createdAt".into(), Value::String(format_timestamp(t)));
            }
            if let Some(t) = self.modified_at {
                m.insert("modifiedAt".into(), Value::String(format_timestamp(t)));
            }
        }
        Value::Object(m)
    }
}

impl NotificationParams {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.attributes.is_empty() {
            m.insert("attributes".into(), strings(&self.attributes));
        }
        m.insert("format".into(), Value::String(self.format.as_str().into()));
        m.insert("showChanges".into(), Value::Bool(self.show_changes));
        m.insert("sysAttrs".into(), Value::Bool(self.sys_attrs));
        m.insert("endpoint".into(), self.endpoint.to_json());
        let d = &self.delivery;
        if let Some(s) = d.status {
            m.insert("status".into(), Value::String(s.as_str().into()));
        }
        m.insert("timesSent".into(), Value::from(d.times_sent));
        m.insert("timesFailed".into(), Value::from(d.times_failed));
        for (key, t) in [
            ("lastNotification", d.last_notification),
            ("lastSuccess", d.last_success),
            ("lastFailure", d.last_failure),
        ] {
            if let Some(t) = t {
                m.insert(key.into(), Value::String(format_timestamp(t)));
            }
        }
        Value::Object(m)
    }
}

/// Storage form: every member, delivery bookkeeping and `createdAt` /
/// `modifiedAt` included; the computed `status` left out.
impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.representation(true).serialize(s)
    }
}

/// Loads the storage form. The rules are those of creation, except that
/// `expiresAt` may have passed (the subscription is then `expired`).
impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let obj = v
            .as_object()
            .ok_or_else(|| D::Error::custom("a stored subscription must be a JSON object"))?;
        let mode = Mode {
            expires_after: None,
            restore: true,
        };
        Subscription::parse(obj, None, mode).map_err(D::Error::custom)
    }
}

// ---------------------------------------------------------------- members

/// Sets or, for `null` / the NGSI-LD Null, removes a member.
fn merge_member(target: &mut Map<String, Value>, key: &str, value: &Value) {
    if value.is_null() || value.as_str() == Some(NGSI_LD_NULL) {
        target.remove(key);
    } else {
        target.insert(key.to_owned(), value.clone());
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

/// Whole seconds print as integers (`5`, not `5.0`), as clients wrote them.
fn seconds_json(s: f64) -> Value {
    if s.fract() == 0.0 && s <= MAX_INTERVAL_SECS {
        Value::from(s as u64)
    } else {
        serde_json::Number::from_f64(s).map_or(Value::Null, Value::Number)
    }
}

fn text(obj: &Map<String, Value>, key: &str, path: &str, max: usize) -> Result<Option<String>, SubscriptionError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(invalid(path, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => Err(invalid(path, format!("is longer than {max} bytes"))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(path, "must be a string")),
    }
}

fn timestamp(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Timestamp>, SubscriptionError> {
    obj.get(key)
        .map(|v| {
            v.as_str().and_then(|s| s.parse::<Timestamp>().ok()).ok_or_else(|| {
                invalid(
                    path,
                    "must be an RFC 3339 date-time with an offset, e.g. 2030-01-01T00:00:00Z",
                )
            })
        })
        .transpose()
}

fn seconds(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, SubscriptionError> {
    obj.get(key)
        .map(|v| {
            let s = v.as_f64().ok_or_else(|| invalid(key, "must be a number of seconds"))?;
            // JSON numbers are never NaN.
            if s <= 0.0 {
                return Err(invalid(key, "must be a positive number of seconds"));
            }
            if s > MAX_INTERVAL_SECS {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_INTERVAL_SECS} seconds (a year)"),
                ));
            }
            Ok(s)
        })
        .transpose()
}

fn boolean(obj: &Map<String, Value>, key: &str, path: &str) -> Result<bool, SubscriptionError> {
    match obj.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(path, "must be true or false")),
    }
}

fn bounded_array<'v>(v: &'v Value, path: &str, max: usize) -> Result<&'v Vec<Value>, SubscriptionError> {
    let items = v.as_array().ok_or_else(|| invalid(path, "must be an array"))?;
    if items.len() > max {
        return Err(invalid(
            path,
            format!("holds {} items, more than the {max} allowed", items.len()),
        ));
    }
    Ok(items)
}

/// Whether `s` can name an attribute or an entity type.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A non-empty list of distinct attribute names.
fn names(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>, SubscriptionError> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let items = bounded_array(v, path, MAX_ATTRIBUTES)?;
    if items.is_empty() {
        return Err(invalid(path, "must list at least one attribute name, or be left out"));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = item.as_str().filter(|s| valid_name(s)).ok_or_else(|| {
            invalid(
                format!("{path}[{i}]"),
                format!("must be an attribute name (1 to {MAX_NAME_LEN} bytes, no spaces)"),
            )
        })?;
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Ok(Some(out))
}

fn entity_selector(v: &Value, path: &str) -> Result<EntitySelector, SubscriptionError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path, "must be an object with 'type' and optionally 'id' or 'idPattern'"))?;
    if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "id" | "idPattern" | "type")) {
        return Err(invalid(
            format!("{path}.{key}"),
            "is not a member of an entity selector",
        ));
    }
    let id = match obj.get("id") {
        None => None,
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| invalid(format!("{path}.id"), "must be a string (a URI)"))?;
            Some(EntityId::new(s).map_err(|e| invalid(format!("{path}.id"), e.to_string()))?)
        }
    };
    let id_pattern = match obj.get("idPattern") {
        None => None,
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| invalid(format!("{path}.idPattern"), "must be a string"))?;
            Some(IdPattern::new(s).map_err(|e| invalid(format!("{path}.idPattern"), e))?)
        }
    };
    if id.is_some() && id_pattern.is_some() {
        return Err(invalid(path, "give 'id' or 'idPattern', not both"));
    }
    let type_path = format!("{path}.type");
    let text = obj
        .get("type")
        .ok_or_else(|| invalid(&type_path, "is missing: an entity selector names the entity type"))?
        .as_str()
        .ok_or_else(|| invalid(&type_path, "must be a string"))?;
    // A type selection (4.17) reduced to what a single-typed entity can meet:
    // alternatives separated by ',' or '|'.
    if text.contains([';', '(', ')']) {
        return Err(invalid(
            &type_path,
            "only alternatives ('A,B' or 'A|B') are supported in a type selection",
        ));
    }
    let types: Vec<String> = text.split([',', '|']).map(|t| t.trim().to_owned()).collect();
    if types.len() > MAX_ATTRIBUTES {
        return Err(invalid(&type_path, format!("names more than {MAX_ATTRIBUTES} types")));
    }
    if !types.iter().all(|t| valid_name(t)) {
        return Err(invalid(
            &type_path,
            format!("must be entity type names (1 to {MAX_NAME_LEN} bytes, no spaces)"),
        ));
    }
    Ok(EntitySelector { id, id_pattern, types })
}

fn geo_q(v: &Value) -> Result<GeoQ, SubscriptionError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("geoQ", "must be an object with geometry, coordinates and georel"))?;
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "geometry" | "coordinates" | "georel" | "geoproperty"))
    {
        return Err(invalid(format!("geoQ.{key}"), "is not a member of a geo-query"));
    }
    let required = |key: &str| -> Result<String, SubscriptionError> {
        text(obj, key, &format!("geoQ.{key}"), 256)?.ok_or_else(|| invalid(format!("geoQ.{key}"), "is missing"))
    };
    let geometry = required("geometry")?;
    let georel = required("georel")?;
    let geoproperty = text(obj, "geoproperty", "geoQ.geoproperty", MAX_NAME_LEN)?;
    // Coordinates come as a JSON array, or as that array's text (as in a URL).
    let coordinates = match obj.get("coordinates") {
        None => return Err(invalid("geoQ.coordinates", "is missing")),
        Some(Value::String(s)) => {
            if s.len() > super::geo::MAX_COORDINATES_LEN {
                return Err(invalid("geoQ.coordinates", "is too long"));
            }
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_array)
                .ok_or_else(|| invalid("geoQ.coordinates", "must be a JSON array of positions"))?
        }
        Some(v @ Value::Array(_)) => v.clone(),
        Some(_) => return Err(invalid("geoQ.coordinates", "must be an array of positions")),
    };
    let query = GeoQuery::parse(&georel, &geometry, &coordinates.to_string(), geoproperty.as_deref())
        .map_err(|e| invalid("geoQ", e.to_string()))?;
    Ok(GeoQ {
        geometry,
        coordinates,
        georel: query.georel.to_string(),
        geoproperty,
        query,
    })
}

fn notification_params(v: &Value, mode: Mode) -> Result<NotificationParams, SubscriptionError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("notification", "must be an object holding at least 'endpoint'"))?;
    for key in obj.keys() {
        if UNSUPPORTED.contains(&key.as_str()) {
            return Err(invalid(format!("notification.{key}"), "is not supported by Vigie"));
        }
        let known = matches!(
            key.as_str(),
            "attributes" | "format" | "showChanges" | "sysAttrs" | "endpoint"
        ) || READ_ONLY_NOTIFICATION.contains(&key.as_str());
        if !known {
            return Err(invalid(
                format!("notification.{key}"),
                "is not a member of notification",
            ));
        }
    }
    let attributes = names(obj, "attributes", "notification.attributes")?.unwrap_or_default();
    let format = match obj.get("format") {
        None => Format::Normalized,
        Some(Value::String(s)) => match s.as_str() {
            "normalized" => Format::Normalized,
            "keyValues" | "simplified" => Format::KeyValues,
            "concise" => Format::Concise,
            _ => {
                return Err(invalid(
                    "notification.format",
                    "must be normalized, keyValues (or simplified) or concise",
                ));
            }
        },
        Some(_) => return Err(invalid("notification.format", "must be a string")),
    };
    let show_changes = boolean(obj, "showChanges", "notification.showChanges")?;
    if show_changes && format == Format::KeyValues {
        return Err(invalid(
            "notification.showChanges",
            "cannot be true with the keyValues format, which has no room for previous values",
        ));
    }
    let sys_attrs = boolean(obj, "sysAttrs", "notification.sysAttrs")?;
    let endpoint = Endpoint::parse(
        obj.get("endpoint")
            .ok_or_else(|| invalid("notification.endpoint", "is missing: it says where to notify"))?,
    )?;
    let delivery = if mode.restore {
        delivery_record(obj)?
    } else {
        DeliveryRecord::default()
    };
    Ok(NotificationParams {
        attributes,
        format,
        show_changes,
        sys_attrs,
        endpoint,
        delivery,
    })
}

fn delivery_record(obj: &Map<String, Value>) -> Result<DeliveryRecord, SubscriptionError> {
    let count = |key: &str| -> Result<u64, SubscriptionError> {
        obj.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| invalid(format!("notification.{key}"), "must be a non-negative integer"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let status = match obj.get("status") {
        None => None,
        Some(v) => Some(match v.as_str() {
            Some("ok") => DeliveryStatus::Ok,
            Some("failed") => DeliveryStatus::Failed,
            _ => return Err(invalid("notification.status", "must be ok or failed")),
        }),
    };
    Ok(DeliveryRecord {
        times_sent: count("timesSent")?,
        times_failed: count("timesFailed")?,
        last_notification: timestamp(obj, "lastNotification", "notification.lastNotification")?,
        last_success: timestamp(obj, "lastSuccess", "notification.lastSuccess")?,
        last_failure: timestamp(obj, "lastFailure", "notification.lastFailure")?,
        status,
    })
}
