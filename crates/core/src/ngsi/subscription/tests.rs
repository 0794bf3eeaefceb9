use serde_json::{Value, json};

use super::*;
use crate::{Attribute, AttributeKind, Entity, Scope};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    t("2026-11-22T18:00:00Z")
}

fn sub_id() -> EntityId {
    EntityId::new("urn:ngsi-ld:Subscription:generated").unwrap()
}

fn create(body: Value) -> Result<Subscription, SubscriptionError> {
    Subscription::create(&body, sub_id(), now())
}

fn sub(body: Value) -> Subscription {
    create(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// The member an invalid body is refused for, checking the reason mentions `needle`.
fn refused(body: Value, member: &str, needle: &str) {
    match create(body.clone()) {
        Err(e) => {
            assert_eq!(e.member, member, "{body}: {e}");
            assert!(e.reason.contains(needle), "{body}: {e}");
        }
        Ok(_) => panic!("{body}: accepted"),
    }
}

fn endpoint() -> Value {
    json!({"uri": "http://receiver.example/notify"})
}

fn light(power: f64) -> Entity {
    Entity::new(
        EntityId::new("urn:ngsi-ld:Streetlight:dijon:1").unwrap(),
        "Streetlight",
        Some(Scope::from_ngsi("/dijon/lighting").unwrap()),
    )
    .with("powerConsumption", Attribute::property(power).with_unit("WTT"))
    .with("status", Attribute::property("ok"))
    .with("location", Attribute::point(5.0415, 47.3220))
}

fn by_type() -> Value {
    json!({"entities": [{"type": "Streetlight"}], "notification": {"endpoint": endpoint()}})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn verdict(s: &Subscription, before: Option<&Entity>, after: Option<&Entity>) -> Verdict {
    s.evaluate(&Change::new(before, after).unwrap(), now())
}

// ------------------------------------------------------------------ parsing

#[test]
fn a_full_body_parses_and_renders_back() {
    let body = json!({
        "id": "urn:ngsi-ld:Subscription:lights",
        "type": "Subscription",
        "subscriptionName": "defective lights",
        "description": "lamps reported broken in Dijon",
        "entities": [
            {"type": "Streetlight", "idPattern": "^urn:ngsi-ld:Streetlight:dijon:"},
            {"id": "urn:ngsi-ld:Streetlight:chenove:7", "type": "Streetlight"}
        ],
        "watchedAttributes": ["status"],
        "notificationTrigger": ["attributeUpdated", "entityDeleted"],
        "q": "status==\"defectiveLamp\"",
        "geoQ": {"geometry": "Point", "coordinates": [5.04, 47.32], "georel": "near;maxDistance==2000"},
        "scopeQ": "/dijon/#",
        "throttling": 5,
        "expiresAt": "2030-01-01T00:00:00.000Z",
        "isActive": true,
        "lang": "fr,en",
        "notification": {
            "attributes": ["status", "location"],
            "format": "concise",
            "showChanges": true,
            "sysAttrs": true,
            "endpoint": {
                "uri": "https://receiver.example/notify",
                "accept": "application/ld+json",
                "timeout": 2000,
                "receiverInfo": [{"key": "X-Token", "value": "abc"}]
            }
        },
        "jsonldContext": "https://schema.example/context.jsonld"
    });
    let s = sub(body);
    assert_eq!(s.id().as_str(), "urn:ngsi-ld:Subscription:lights");
    assert_eq!(s.created_at(), Some(now()));
    assert_eq!(s.status(now()), SubscriptionStatus::Active);
    assert!(s.triggers().contains(Trigger::EntityDeleted) && !s.triggers().contains(Trigger::AttributeCreated));
    let v = s.to_json(now(), true);
    assert_eq!(v["status"], "active");
    assert_eq!(v["q"], "status==\"defectiveLamp\"");
    assert_eq!(v["geoQ"]["georel"], "near;maxDistance==2000");
    assert_eq!(v["geoQ"]["coordinates"], json!([5.04, 47.32]));
    assert_eq!(v["throttling"], json!(5));
    assert_eq!(v["notification"]["format"], "concise");
    assert_eq!(v["notification"]["timesSent"], 0);
    assert_eq!(v["notification"]["endpoint"]["receiverInfo"][0]["key"], "X-Token");
    assert_eq!(v["createdAt"], "2026-11-22T18:00:00.000Z");
    assert!(
        s.to_json(now(), false).get("createdAt").is_none(),
        "sysAttrs adds createdAt"
    );
    // What the API returns is itself a valid body describing the same subscription.
    let again = Subscription::create(&v, sub_id(), now()).unwrap();
    assert_eq!(again.to_json(now(), false), s.to_json(now(), false));
}

#[test]
fn defaults_apply_and_the_generated_id_is_used() {
    let s = sub(by_type());
    assert_eq!(s.id(), &sub_id());
    assert_eq!(s.triggers(), Triggers::DEFAULT);
    assert!(s.is_active());
    assert_eq!(s.notification_params().format(), Format::Normalized);
    assert_eq!(s.endpoint().accept(), Accept::Json);
    assert_eq!(s.endpoint().target(), &Target::Http { tls: false });
    let v = s.to_json(now(), false);
    assert_eq!(
        v["notificationTrigger"],
        json!(["attributeCreated", "attributeUpdated"])
    );
    assert_eq!(v["type"], "Subscription");
}

#[test]
fn storage_round_trip_keeps_everything() {
    let mut s = sub(with(by_type(), "throttling", json!(0.5)));
    s.record_failure(t("2026-11-22T18:01:00Z"));
    s.record_success(t("2026-11-22T18:02:00Z"));
    let stored = serde_json::to_string(&s).unwrap();
    assert!(
        !stored.contains("\"status\":\"active\""),
        "the computed status is not stored"
    );
    let loaded: Subscription = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, s);
    assert_eq!(loaded.delivery().times_sent, 2);
}

#[test]
fn stored_subscriptions_load_after_they_expire() {
    let s = sub(with(by_type(), "expiresAt", json!("2026-11-23T00:00:00Z")));
    let loaded: Subscription = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(loaded.status(t("2027-01-01T00:00:00Z")), SubscriptionStatus::Expired);
}

#[test]
fn read_only_members_in_a_body_are_ignored() {
    let mut body = by_type();
    body["status"] = json!("expired");
    body["createdAt"] = json!("2000-01-01T00:00:00Z");
    body["notification"]["timesSent"] = json!(99);
    let s = sub(body);
    assert_eq!(s.delivery().times_sent, 0);
    assert_eq!(s.created_at(), Some(now()));
}

#[test]
fn entities_or_watched_attributes_is_required() {
    refused(
        json!({"notification": {"endpoint": endpoint()}}),
        "entities",
        "'watchedAttributes'",
    );
    refused(
        json!({"entities": [], "notification": {"endpoint": endpoint()}}),
        "entities",
        "at least one",
    );
    let only_watched = sub(json!({"watchedAttributes": ["status"], "notification": {"endpoint": endpoint()}}));
    assert!(only_watched.entities().is_empty());
}

#[test]
fn bad_members_are_named() {
    let cases = [
        (with(by_type(), "id", json!("not a uri")), "id", "URI"),
        (with(by_type(), "type", json!("Sub")), "type", "Subscription"),
        (
            with(by_type(), "watchedAttribute", json!(["a"])),
            "watchedAttribute",
            "not a member",
        ),
        (with(by_type(), "csf", json!("x")), "csf", "not supported"),
        (
            with(by_type(), "watchedAttributes", json!([])),
            "watchedAttributes",
            "at least one",
        ),
        (
            with(by_type(), "watchedAttributes", json!(["a b"])),
            "watchedAttributes[0]",
            "attribute name",
        ),
        (
            with(by_type(), "notificationTrigger", json!(["onChange"])),
            "notificationTrigger[0]",
            "entityCreated",
        ),
        (
            with(by_type(), "notificationTrigger", json!([])),
            "notificationTrigger",
            "at least one",
        ),
        (with(by_type(), "q", json!("status==")), "q", "expected a value"),
        (with(by_type(), "scopeQ", json!("dijon")), "scopeQ", "'/'"),
        (
            with(
                by_type(),
                "geoQ",
                json!({"geometry": "Point", "coordinates": [5.0, 47.0], "georel": "nearby"}),
            ),
            "geoQ",
            "georel",
        ),
        (
            with(by_type(), "geoQ", json!({"geometry": "Point", "georel": "intersects"})),
            "geoQ.coordinates",
            "missing",
        ),
        (
            with(
                by_type(),
                "geoQ",
                json!({"geometry": "Point", "coordinates": "[5.0, 47.0", "georel": "intersects"}),
            ),
            "geoQ.coordinates",
            "JSON array",
        ),
        (with(by_type(), "isActive", json!("yes")), "isActive", "true or false"),
        (with(by_type(), "lang", json!("fr en")), "lang", "language tags"),
        (
            with(by_type(), "jsonldContext", json!("context.jsonld")),
            "jsonldContext",
            "absolute URI",
        ),
        (with(by_type(), "expiresAt", json!("tomorrow")), "expiresAt", "RFC 3339"),
        (
            with(by_type(), "subscriptionName", json!("")),
            "subscriptionName",
            "empty",
        ),
        (
            with(by_type(), "description", json!("x".repeat(MAX_DESCRIPTION_LEN + 1))),
            "description",
            "longer",
        ),
        (json!({"entities": [{"type": "T"}]}), "notification", "missing"),
        (json!([]), "", "JSON object"),
    ];
    for (body, member, needle) in cases {
        refused(body, member, needle);
    }
}

#[test]
fn entity_selectors_are_checked() {
    let selector = |s: Value| json!({"entities": [s], "notification": {"endpoint": endpoint()}});
    refused(selector(json!({"id": "urn:x:1"})), "entities[0].type", "missing");
    refused(selector(json!({"type": "A;B"})), "entities[0].type", "alternatives");
    refused(selector(json!({"type": "A,"})), "entities[0].type", "type names");
    refused(
        selector(json!({"type": "T", "idPattern": "("})),
        "entities[0].idPattern",
        "regular expression",
    );
    refused(
        selector(json!({"type": "T", "idPattern": ""})),
        "entities[0].idPattern",
        "non-empty",
    );
    refused(
        selector(json!({"type": "T", "idPattern": "x".repeat(MAX_ID_PATTERN_LEN + 1)})),
        "entities[0].idPattern",
        "longer",
    );
    refused(selector(json!({"type": "T", "id": "x"})), "entities[0].id", "URI");
    refused(
        selector(json!({"type": "T", "id": "urn:x:1", "idPattern": ".*"})),
        "entities[0]",
        "not both",
    );
    refused(
        selector(json!({"type": "T", "ids": "x"})),
        "entities[0].ids",
        "not a member",
    );
    refused(selector(json!("Streetlight")), "entities[0]", "object");
}

#[test]
fn sizes_are_bounded() {
    let many = |n: usize| Value::Array((0..n).map(|i| json!({"type": format!("T{i}")})).collect());
    assert!(create(with(by_type(), "entities", many(MAX_ENTITY_SELECTORS))).is_ok());
    refused(
        with(by_type(), "entities", many(MAX_ENTITY_SELECTORS + 1)),
        "entities",
        "more than",
    );
    let names = |n: usize| Value::Array((0..n).map(|i| json!(format!("a{i}"))).collect());
    assert!(create(with(by_type(), "watchedAttributes", names(MAX_ATTRIBUTES))).is_ok());
    refused(
        with(by_type(), "watchedAttributes", names(MAX_ATTRIBUTES + 1)),
        "watchedAttributes",
        "more than",
    );
    let long = "a".repeat(MAX_NAME_LEN + 1);
    refused(
        with(by_type(), "watchedAttributes", json!([long])),
        "watchedAttributes[0]",
        "256",
    );
    let mut body = by_type();
    body["notification"]["endpoint"]["receiverInfo"] =
        Value::Array((0..17).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect());
    refused(body, "notification.endpoint.receiverInfo", "more than 16");
}

#[test]
fn time_interval_and_throttling_rules() {
    refused(with(by_type(), "throttling", json!(0)), "throttling", "positive");
    refused(with(by_type(), "throttling", json!(-3)), "throttling", "positive");
    refused(with(by_type(), "throttling", json!("5")), "throttling", "number");
    refused(with(by_type(), "timeInterval", json!(0)), "timeInterval", "positive");
    refused(with(by_type(), "timeInterval", json!(1e12)), "timeInterval", "a year");
    refused(
        with(with(by_type(), "timeInterval", json!(60)), "throttling", json!(5)),
        "throttling",
        "periodic",
    );
    refused(
        with(
            with(by_type(), "timeInterval", json!(60)),
            "watchedAttributes",
            json!(["status"]),
        ),
        "timeInterval",
        "watchedAttributes",
    );
    assert_eq!(
        sub(with(by_type(), "timeInterval", json!(60))).time_interval(),
        Some(60.0)
    );
}

#[test]
fn expires_at_must_be_in_the_future_at_creation() {
    refused(
        with(by_type(), "expiresAt", json!("2026-11-22T18:00:00Z")),
        "expiresAt",
        "future",
    );
    refused(
        with(by_type(), "expiresAt", json!("2020-01-01T00:00:00Z")),
        "expiresAt",
        "future",
    );
    assert!(create(with(by_type(), "expiresAt", json!("2026-11-22T18:00:01Z"))).is_ok());
}

#[test]
fn notification_params_are_checked() {
    let notif = |n: Value| json!({"entities": [{"type": "T"}], "notification": n});
    refused(notif(json!({})), "notification.endpoint", "missing");
    refused(
        notif(json!({"endpoint": endpoint(), "format": "flat"})),
        "notification.format",
        "keyValues",
    );
    refused(
        notif(json!({"endpoint": endpoint(), "format": "keyValues", "showChanges": true})),
        "notification.showChanges",
        "keyValues",
    );
    refused(
        notif(json!({"endpoint": endpoint(), "attributes": []})),
        "notification.attributes",
        "at least one",
    );
    refused(
        notif(json!({"endpoint": endpoint(), "join": "flat"})),
        "notification.join",
        "not supported",
    );
    refused(
        notif(json!({"endpoint": endpoint(), "sysAttrs": 1})),
        "notification.sysAttrs",
        "true or false",
    );
    let simplified = sub(notif(json!({"endpoint": endpoint(), "format": "simplified"})));
    assert_eq!(simplified.notification_params().format(), Format::KeyValues);
}

#[test]
fn endpoint_uris_must_be_absolute_http_or_mqtt() {
    let uri = |u: &str| json!({"entities": [{"type": "T"}], "notification": {"endpoint": {"uri": u}}});
    for bad in [
        "receiver.example/notify",
        "/notify",
        "ftp://receiver.example/x",
        "http://",
        "http:///path",
        "http://host:99999/",
        "http://host:0/",
        "http://ho st/",
        "mqtt://broker.example",
        "mqtt://broker.example/",
        "mqtt://broker.example/alerts/#",
        "mqtt://broker.example/alerts/+/x",
        "mqtt://broker.example/alerts?retain=1",
        "mqtt://broker.example/bad%zz",
    ] {
        assert_eq!(
            create(uri(bad)).unwrap_err().member,
            "notification.endpoint.uri",
            "{bad}"
        );
    }
    for good in [
        "http://receiver.example/notify",
        "HTTPS://receiver.example:8443/notify?x=1",
        "http://[::1]:8080/n",
        "http://10.0.0.1/n",
    ] {
        assert!(
            matches!(create(uri(good)).unwrap().endpoint().target(), Target::Http { .. }),
            "{good}"
        );
    }
    let long = format!("http://h/{}", "x".repeat(endpoint::MAX_URI_LEN));
    assert!(create(uri(&long)).unwrap_err().reason.contains("longer"));
    let bad_accept =
        json!({"entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "http://h/", "accept": "text/csv"}}});
    refused(bad_accept, "notification.endpoint.accept", "application/json");
}

#[test]
fn mqtt_endpoints_publish_to_the_uri_path() {
    let s = sub(json!({"entities": [{"type": "T"}], "notification": {"endpoint": {
        "uri": "mqtts://vigie:s%40cret@broker.example/city/alerts%20now",
        "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}, {"key": "MQTT-Version", "value": "mqtt5.0"}]
    }}}));
    let Target::Mqtt(m) = s.endpoint().target() else {
        panic!("an MQTT target");
    };
    assert_eq!(
        m,
        &MqttTarget {
            tls: true,
            host: "broker.example".into(),
            port: 8883,
            username: Some("vigie".into()),
            password: Some("s@cret".into()),
            topic: "city/alerts now".into(),
            version: MqttVersion::V5,
            qos: 1,
        }
    );
    let plain = sub(json!({"entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "mqtt://b:1884/t"}}}));
    let Target::Mqtt(p) = plain.endpoint().target() else {
        panic!("an MQTT target");
    };
    assert_eq!((p.port, p.qos, p.version, p.tls), (1884, 0, MqttVersion::V311, false));
    let qos = |v: &str| json!({"entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "mqtt://b/t", "notifierInfo": [{"key": "MQTT-QoS", "value": v}]}}});
    refused(qos("3"), "notification.endpoint.notifierInfo", "0, 1 or 2");
}

#[test]
fn receiver_info_cannot_inject_headers() {
    let info = |k: &str, v: &str| json!({"entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "http://h/", "receiverInfo": [{"key": k, "value": v}]}}});
    refused(
        info("X-A", "v\r\nX-Evil: 1"),
        "notification.endpoint.receiverInfo[0].value",
        "control",
    );
    refused(
        info("X A", "v"),
        "notification.endpoint.receiverInfo[0].key",
        "header-like",
    );
    refused(
        info("", "v"),
        "notification.endpoint.receiverInfo[0].key",
        "header-like",
    );
}

// ------------------------------------------------------------------ update

#[test]
fn update_replaces_members_and_keeps_bookkeeping() {
    let mut s = sub(with(by_type(), "q", json!("status==ok")));
    s.record_success(t("2026-11-22T18:05:00Z"));
    let later = t("2026-11-22T19:00:00Z");
    let u = s
        .update(
            &json!({"q": "status==defectiveLamp", "notification": {"format": "keyValues"}, "isActive": false}),
            later,
        )
        .unwrap();
    assert_eq!(u.q().unwrap().to_string(), "status==\"defectiveLamp\"");
    assert_eq!(u.notification_params().format(), Format::KeyValues);
    assert_eq!(u.endpoint(), s.endpoint(), "notification members not given are kept");
    assert_eq!(u.status(later), SubscriptionStatus::Paused);
    assert_eq!(u.delivery(), s.delivery());
    assert_eq!((u.created_at(), u.modified_at()), (Some(now()), Some(later)));
    assert_eq!(u.id(), s.id());
}

#[test]
fn update_removes_members_set_to_null() {
    let s = sub(with(with(by_type(), "q", json!("status==ok")), "throttling", json!(10)));
    let u = s
        .update(&json!({"q": "urn:ngsi-ld:null", "throttling": null}), now())
        .unwrap();
    assert!(u.q().is_none() && u.throttling().is_none());
}

#[test]
fn update_validates_the_result() {
    let s = sub(with(by_type(), "throttling", json!(10)));
    let err = s.update(&json!({"timeInterval": 60}), now()).unwrap_err();
    assert_eq!(err.member, "throttling");
    let err = s
        .update(&json!({"id": "urn:ngsi-ld:Subscription:other"}), now())
        .unwrap_err();
    assert_eq!(err.member, "id");
    assert!(s.update(&json!({"id": s.id().as_str()}), now()).is_ok());
    assert_eq!(s.update(&json!({"type": "Entity"}), now()).unwrap_err().member, "type");
    assert_eq!(
        s.update(&json!({"entities": null}), now()).unwrap_err().member,
        "entities"
    );
    assert_eq!(s.update(&json!({}), now()).unwrap_err().member, "");
    assert_eq!(s.update(&json!([1]), now()).unwrap_err().member, "");
    let past = s
        .update(&json!({"expiresAt": "2020-01-01T00:00:00Z"}), now())
        .unwrap_err();
    assert_eq!(past.member, "expiresAt");
    let err = s
        .update(&json!({"notification": {"endpoint": {"uri": "gopher://h/"}}}), now())
        .unwrap_err();
    assert_eq!(err.member, "notification.endpoint.uri");
}

#[test]
fn an_expiry_kept_by_an_update_is_not_rechecked() {
    let s = sub(with(by_type(), "expiresAt", json!("2026-11-23T00:00:00Z")));
    // Once expired, the subscription can still be edited (e.g. to extend it later).
    let u = s
        .update(&json!({"description": "kept"}), t("2026-12-01T00:00:00Z"))
        .unwrap();
    assert_eq!(u.expires_at(), s.expires_at());
}

// ------------------------------------------------------------------ status

#[test]
fn status_follows_is_active_and_expires_at() {
    let s = sub(with(by_type(), "expiresAt", json!("2026-11-23T00:00:00Z")));
    assert_eq!(s.status(now()), SubscriptionStatus::Active);
    assert_eq!(s.status(t("2026-11-23T00:00:00Z")), SubscriptionStatus::Expired);
    let paused = sub(with(
        with(by_type(), "isActive", json!(false)),
        "expiresAt",
        json!("2026-11-23T00:00:00Z"),
    ));
    assert_eq!(paused.status(now()), SubscriptionStatus::Paused);
    assert_eq!(paused.status(t("2026-11-24T00:00:00Z")), SubscriptionStatus::Expired);
}

#[test]
fn deliveries_are_recorded() {
    let mut s = sub(by_type());
    let (t1, t2, t3) = (
        t("2026-11-22T18:01:00Z"),
        t("2026-11-22T18:02:00Z"),
        t("2026-11-22T18:03:00Z"),
    );
    s.record_success(t1);
    s.record_failure(t2);
    assert_eq!(
        s.delivery(),
        &DeliveryRecord {
            times_sent: 2,
            times_failed: 1,
            last_notification: Some(t2),
            last_success: Some(t1),
            last_failure: Some(t2),
            status: Some(DeliveryStatus::Failed),
        }
    );
    s.record_success(t3);
    let v = s.to_json(now(), false);
    assert_eq!(v["notification"]["status"], "ok");
    assert_eq!(v["notification"]["timesSent"], 3);
    assert_eq!(v["notification"]["lastFailure"], "2026-11-22T18:02:00.000Z");
    assert_eq!(v["notification"]["lastSuccess"], "2026-11-22T18:03:00.000Z");
}

// ------------------------------------------------------------------ matching

#[test]
fn changes_list_what_actually_changed() {
    let before = light(38.5);
    let mut after = light(40.0);
    after.attributes.remove("status");
    after
        .attributes
        .insert("illuminanceLevel".into(), Attribute::property(0.8));
    let change = Change::new(Some(&before), Some(&after)).unwrap();
    let listed: Vec<_> = change.attributes().iter().map(|a| (a.name, a.kind)).collect();
    assert_eq!(
        listed,
        [
            ("illuminanceLevel", ChangeKind::Created),
            ("powerConsumption", ChangeKind::Updated),
            ("status", ChangeKind::Deleted)
        ]
    );
    let same = light(38.5);
    assert!(Change::new(Some(&before), Some(&same)).unwrap().is_empty());
    // Metadata counts as a change.
    let mut observed = light(38.5);
    observed
        .attributes
        .insert("status".into(), Attribute::property("ok").observed(now()));
    let c = Change::new(Some(&before), Some(&observed)).unwrap();
    assert_eq!(
        c.attributes(),
        [AttributeChange {
            name: "status",
            kind: ChangeKind::Updated
        }]
    );
    assert!(Change::new(None, None).is_none());
    let other = Entity::new(EntityId::new("urn:x:other").unwrap(), "Streetlight", None);
    assert!(
        Change::new(Some(&before), Some(&other)).is_none(),
        "two different entities"
    );
}

#[test]
fn default_triggers_fire_on_creation_and_update_not_deletion() {
    let s = sub(by_type());
    let (b, a) = (light(38.5), light(40.0));
    assert_eq!(verdict(&s, None, Some(&a)), Verdict::Fire(Trigger::AttributeCreated));
    assert_eq!(
        verdict(&s, Some(&b), Some(&a)),
        Verdict::Fire(Trigger::AttributeUpdated)
    );
    assert_eq!(verdict(&s, Some(&b), None), Verdict::Skip(Skip::NotTriggered));
    assert_eq!(verdict(&s, Some(&b), Some(&b.clone())), Verdict::Skip(Skip::NotWatched));
}

#[test]
fn entity_triggers() {
    let s = sub(with(
        by_type(),
        "notificationTrigger",
        json!(["entityCreated", "entityUpdated", "entityDeleted"]),
    ));
    let (b, a) = (light(38.5), light(40.0));
    assert_eq!(verdict(&s, None, Some(&a)), Verdict::Fire(Trigger::EntityCreated));
    assert_eq!(verdict(&s, Some(&b), Some(&a)), Verdict::Fire(Trigger::EntityUpdated));
    assert_eq!(verdict(&s, Some(&b), None), Verdict::Fire(Trigger::EntityDeleted));
    // A scope move alone is an entity update.
    let mut moved = light(38.5);
    moved.scope = Some(Scope::from_ngsi("/chenove/lighting").unwrap());
    assert_eq!(
        verdict(&s, Some(&b), Some(&moved)),
        Verdict::Fire(Trigger::EntityUpdated)
    );
}

#[test]
fn attribute_triggers_follow_the_kind_of_change() {
    let only = |t: &str| sub(with(by_type(), "notificationTrigger", json!([t])));
    let before = light(38.5);
    let mut deleted = light(38.5);
    deleted.attributes.remove("status");
    let mut created = light(38.5);
    created
        .attributes
        .insert("illuminanceLevel".into(), Attribute::property(1));
    let updated = light(40.0);
    let d = only("attributeDeleted");
    assert_eq!(
        verdict(&d, Some(&before), Some(&deleted)),
        Verdict::Fire(Trigger::AttributeDeleted)
    );
    assert_eq!(
        verdict(&d, Some(&before), Some(&updated)),
        Verdict::Skip(Skip::NotTriggered)
    );
    let c = only("attributeCreated");
    assert_eq!(
        verdict(&c, Some(&before), Some(&created)),
        Verdict::Fire(Trigger::AttributeCreated)
    );
    assert_eq!(
        verdict(&c, Some(&before), Some(&deleted)),
        Verdict::Skip(Skip::NotTriggered)
    );
    let u = only("attributeUpdated");
    assert_eq!(
        verdict(&u, Some(&before), Some(&updated)),
        Verdict::Fire(Trigger::AttributeUpdated)
    );
    assert_eq!(verdict(&u, None, Some(&updated)), Verdict::Skip(Skip::NotTriggered));
    let e = only("entityDeleted");
    assert_eq!(verdict(&e, None, Some(&updated)), Verdict::Skip(Skip::NotTriggered));
}

#[test]
fn watched_attributes_must_intersect_the_change() {
    let s = sub(with(by_type(), "watchedAttributes", json!(["status"])));
    let before = light(38.5);
    let power = light(40.0);
    assert_eq!(
        verdict(&s, Some(&before), Some(&power)),
        Verdict::Skip(Skip::NotWatched)
    );
    let mut broken = light(38.5);
    broken
        .attributes
        .insert("status".into(), Attribute::property("defectiveLamp"));
    assert_eq!(
        verdict(&s, Some(&before), Some(&broken)),
        Verdict::Fire(Trigger::AttributeUpdated)
    );
    // Created without a watched attribute: nothing watched was created.
    let bare = Entity::new(before.id.clone(), "Streetlight", None).with("powerConsumption", Attribute::property(1));
    assert_eq!(verdict(&s, None, Some(&bare)), Verdict::Skip(Skip::NotWatched));
    assert_eq!(
        verdict(&s, None, Some(&before)),
        Verdict::Fire(Trigger::AttributeCreated)
    );
    // A scope move is not a watched attribute's change.
    let mut moved = light(38.5);
    moved.scope = None;
    assert_eq!(
        verdict(&s, Some(&before), Some(&moved)),
        Verdict::Skip(Skip::NotWatched)
    );
}

#[test]
fn entity_selectors_select_by_type_id_and_pattern() {
    let selectors = |e: Value| sub(json!({"entities": e, "notification": {"endpoint": endpoint()}}));
    let e = light(1.0);
    let fires = |s: &Subscription| matches!(verdict(s, None, Some(&e)), Verdict::Fire(_));
    assert!(fires(&selectors(json!([{"type": "Streetlight"}]))));
    assert!(fires(&selectors(json!([{"type": "Camera,Streetlight"}]))));
    assert!(fires(&selectors(json!([{"type": "Camera|Streetlight"}]))));
    assert!(!fires(&selectors(json!([{"type": "Camera"}]))));
    assert!(fires(&selectors(
        json!([{"type": "Streetlight", "id": "urn:ngsi-ld:Streetlight:dijon:1"}])
    )));
    assert!(!fires(&selectors(
        json!([{"type": "Streetlight", "id": "urn:ngsi-ld:Streetlight:dijon:2"}])
    )));
    assert!(fires(&selectors(
        json!([{"type": "Streetlight", "idPattern": "^urn:ngsi-ld:Streetlight:dijon:"}])
    )));
    assert!(!fires(&selectors(
        json!([{"type": "Streetlight", "idPattern": ":chenove:"}])
    )));
    assert!(fires(&selectors(
        json!([{"type": "Camera"}, {"type": "Streetlight", "idPattern": "dijon"}])
    )));
    assert_eq!(
        verdict(&selectors(json!([{"type": "Camera"}])), None, Some(&e)),
        Verdict::Skip(Skip::NotSelected)
    );
    // Selection by watched attributes alone reaches every type.
    let any = sub(json!({"watchedAttributes": ["status"], "notification": {"endpoint": endpoint()}}));
    assert!(fires(&any));
}

#[test]
fn queries_read_the_new_state_and_the_old_one_on_deletion() {
    let q = sub(with(
        with(by_type(), "q", json!("powerConsumption>39")),
        "notificationTrigger",
        json!(["attributeUpdated", "entityDeleted"]),
    ));
    let (low, high) = (light(38.5), light(40.0));
    assert_eq!(
        verdict(&q, Some(&low), Some(&high)),
        Verdict::Fire(Trigger::AttributeUpdated)
    );
    assert_eq!(verdict(&q, Some(&high), Some(&low)), Verdict::Skip(Skip::Query));
    assert_eq!(verdict(&q, Some(&high), None), Verdict::Fire(Trigger::EntityDeleted));
    assert_eq!(verdict(&q, Some(&low), None), Verdict::Skip(Skip::Query));

    let near = |m: u32| {
        sub(with(
            by_type(),
            "geoQ",
            json!({"geometry": "Point", "coordinates": "[5.0415, 47.3230]", "georel": format!("near;maxDistance=={m}")}),
        ))
    };
    assert!(matches!(verdict(&near(200), Some(&low), Some(&high)), Verdict::Fire(_)));
    assert_eq!(
        verdict(&near(50), Some(&low), Some(&high)),
        Verdict::Skip(Skip::GeoQuery)
    );

    let scoped = |s: &str| sub(with(by_type(), "scopeQ", json!(s)));
    assert!(matches!(
        verdict(&scoped("/dijon/#"), Some(&low), Some(&high)),
        Verdict::Fire(_)
    ));
    assert_eq!(
        verdict(&scoped("/chenove/#"), Some(&low), Some(&high)),
        Verdict::Skip(Skip::ScopeQuery)
    );
    assert!(scoped("/dijon/#").selects(&high) && !scoped("/chenove/#").selects(&high));
}

#[test]
fn paused_expired_and_periodic_subscriptions_do_not_fire_on_change() {
    let (b, a) = (light(38.5), light(40.0));
    let paused = sub(with(by_type(), "isActive", json!(false)));
    assert_eq!(verdict(&paused, Some(&b), Some(&a)), Verdict::Skip(Skip::Paused));
    let expiring = sub(with(by_type(), "expiresAt", json!("2026-11-22T18:00:01Z")));
    let change = Change::new(Some(&b), Some(&a)).unwrap();
    assert_eq!(
        expiring.evaluate(&change, t("2026-11-22T18:00:02Z")),
        Verdict::Skip(Skip::Expired)
    );
    let periodic = sub(with(by_type(), "timeInterval", json!(60)));
    assert_eq!(verdict(&periodic, Some(&b), Some(&a)), Verdict::Skip(Skip::Periodic));
}

#[test]
fn throttling_spaces_notifications() {
    let s = sub(with(by_type(), "throttling", json!(5)));
    let last = now();
    assert!(s.throttle_allows(None, last));
    assert!(!s.throttle_allows(Some(last), t("2026-11-22T18:00:04.999Z")));
    assert!(s.throttle_allows(Some(last), t("2026-11-22T18:00:05Z")));
    assert!(
        sub(by_type()).throttle_allows(Some(last), last),
        "no throttling, no wait"
    );
}

#[test]
fn cooldown_waits_after_a_failure() {
    let mut body = by_type();
    body["notification"]["endpoint"]["cooldown"] = json!(1000);
    let s = sub(body);
    assert!(s.cooldown_allows(None, now()));
    assert!(!s.cooldown_allows(Some(now()), t("2026-11-22T18:00:00.999Z")));
    assert!(s.cooldown_allows(Some(now()), t("2026-11-22T18:00:01Z")));
}

#[test]
fn periodic_subscriptions_are_due_every_interval() {
    let s = sub(with(by_type(), "timeInterval", json!(60)));
    assert!(s.due(now(), None));
    assert!(!s.due(t("2026-11-22T18:00:59Z"), Some(now())));
    assert!(s.due(t("2026-11-22T18:01:00Z"), Some(now())));
    assert_eq!(s.next_due(Some(now()), now()), Some(t("2026-11-22T18:01:00Z")));
    assert_eq!(s.next_due(None, now()), Some(now()));
    assert!(
        !sub(by_type()).due(now(), None),
        "change-driven subscriptions are never due"
    );
    assert_eq!(sub(by_type()).next_due(None, now()), None);
    let paused = sub(with(
        with(by_type(), "timeInterval", json!(60)),
        "isActive",
        json!(false),
    ));
    assert!(!paused.due(now(), None));
}

// ------------------------------------------------------------------ notifications

fn notif(params: Value) -> Subscription {
    let mut n = params;
    n["endpoint"] = endpoint();
    sub(json!({"entities": [{"type": "Streetlight"}], "notification": n}))
}

fn render(s: &Subscription, before: Option<&Entity>, after: Option<&Entity>) -> Value {
    s.render_change(&Change::new(before, after).unwrap(), now())
}

#[test]
fn the_notification_body_wraps_the_entities() {
    let s = notif(json!({}));
    let id = EntityId::new("urn:ngsi-ld:Notification:1").unwrap();
    let data = vec![render(&s, None, Some(&light(1.0)))];
    let body = s.notification(&id, now(), data);
    assert_eq!(body["id"], "urn:ngsi-ld:Notification:1");
    assert_eq!(body["type"], "Notification");
    assert_eq!(body["subscriptionId"], sub_id().as_str());
    assert_eq!(body["notifiedAt"], "2026-11-22T18:00:00.000Z");
    assert_eq!(
        body["data"][0]["powerConsumption"],
        json!({"type": "Property", "value": 1.0, "unitCode": "WTT"})
    );
    assert!(body.get("@context").is_none(), "plain JSON links its context");
    let headers = s.notification_headers();
    assert_eq!(headers[0], ("Content-Type".into(), "application/json".into()));
    assert!(headers[1].1.contains(CORE_CONTEXT));
}

#[test]
fn normalized_with_an_attribute_filter_and_sys_attrs() {
    let mut e = light(1.0);
    e.created_at = Some(t("2026-01-01T00:00:00Z"));
    let s = notif(json!({"attributes": ["status", "missing"], "sysAttrs": true}));
    let v = s.render_entity(&e);
    assert_eq!(
        v,
        json!({
            "id": "urn:ngsi-ld:Streetlight:dijon:1", "type": "Streetlight", "scope": "/dijon/lighting",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "status": {"type": "Property", "value": "ok"}
        })
    );
    assert!(notif(json!({})).render_entity(&e).get("createdAt").is_none());
}

#[test]
fn key_values_and_concise_formats() {
    let e = light(1.0).with(
        "refCabinet",
        Attribute::relationship(&EntityId::new("urn:ngsi-ld:Cabinet:1").unwrap()),
    );
    let kv = notif(json!({"format": "keyValues"})).render_entity(&e);
    assert_eq!(kv["powerConsumption"], json!(1.0));
    assert_eq!(kv["refCabinet"], json!("urn:ngsi-ld:Cabinet:1"));
    assert_eq!(kv["location"]["type"], "Point");
    let c = notif(json!({"format": "concise"})).render_entity(&e);
    assert_eq!(c["status"], json!("ok"), "a bare value");
    assert_eq!(c["powerConsumption"], json!({"value": 1.0, "unitCode": "WTT"}));
    assert_eq!(c["refCabinet"], json!({"object": "urn:ngsi-ld:Cabinet:1"}));
    assert_eq!(
        c["location"],
        json!({"type": "Point", "coordinates": [5.0415, 47.3220]})
    );
}

#[test]
fn show_changes_adds_previous_values() {
    let cabinet = |n: u8| Attribute::relationship(&EntityId::new(format!("urn:ngsi-ld:Cabinet:{n}")).unwrap());
    let before = light(38.5).with("refCabinet", cabinet(1));
    let mut after = light(40.0).with("refCabinet", cabinet(2));
    after.attributes.remove("location");
    let s = notif(json!({"showChanges": true}));
    let v = render(&s, Some(&before), Some(&after));
    assert_eq!(v["powerConsumption"]["previousValue"], json!(38.5));
    assert_eq!(v["powerConsumption"]["value"], json!(40.0));
    assert_eq!(v["refCabinet"]["previousObject"], "urn:ngsi-ld:Cabinet:1");
    assert!(
        v["status"].get("previousValue").is_none(),
        "unchanged attributes carry no previous value"
    );
    assert_eq!(
        v["location"]["value"], NGSI_LD_NULL,
        "a deleted attribute reads as the NGSI-LD Null"
    );
    assert_eq!(v["location"]["type"], "GeoProperty");
    assert_eq!(v["location"]["previousValue"]["type"], "Point");
    // Without showChanges: no previous values, deletions still shown.
    let plain = render(&notif(json!({})), Some(&before), Some(&after));
    assert!(plain["powerConsumption"].get("previousValue").is_none());
    assert_eq!(plain["location"], json!({"type": "GeoProperty", "value": NGSI_LD_NULL}));
    let concise = render(
        &notif(json!({"format": "concise", "showChanges": true})),
        Some(&before),
        Some(&after),
    );
    assert_eq!(
        concise["powerConsumption"],
        json!({"value": 40.0, "unitCode": "WTT", "previousValue": 38.5})
    );
    let kv = render(&notif(json!({"format": "keyValues"})), Some(&before), Some(&after));
    assert_eq!(kv["location"], NGSI_LD_NULL);
}

#[test]
fn a_deleted_entity_reads_id_type_and_deleted_at() {
    let v = render(&notif(json!({})), Some(&light(1.0)), None);
    assert_eq!(
        v,
        json!({"id": "urn:ngsi-ld:Streetlight:dijon:1", "type": "Streetlight", "deletedAt": "2026-11-22T18:00:00.000Z"})
    );
}

#[test]
fn lang_picks_one_language() {
    let e = light(1.0).with(
        "name",
        Attribute::of_kind(
            AttributeKind::LanguageProperty,
            json!({"en": "Liberty street", "fr": "Rue de la Liberté"}),
        ),
    );
    let with_lang = |lang: &str, format: &str| {
        sub(json!({"entities": [{"type": "Streetlight"}], "lang": lang,
            "notification": {"format": format, "endpoint": endpoint()}}))
        .render_entity(&e)
    };
    assert_eq!(
        with_lang("fr", "normalized")["name"],
        json!({"type": "Property", "value": "Rue de la Liberté", "lang": "fr"})
    );
    assert_eq!(with_lang("de,en", "keyValues")["name"], json!("Liberty street"));
    assert_eq!(
        with_lang("de", "keyValues")["name"],
        json!("Liberty street"),
        "falls back on the first"
    );
    let all = notif(json!({})).render_entity(&e);
    assert_eq!(all["name"]["type"], "LanguageProperty", "without lang, the whole map");
}

#[test]
fn json_ld_notifications_carry_their_context() {
    let s = sub(
        json!({"entities": [{"type": "T"}], "jsonldContext": "https://ctx.example/c.jsonld",
        "notification": {"endpoint": {"uri": "http://h/", "accept": "application/ld+json",
            "receiverInfo": [{"key": "Authorization", "value": "Bearer x"}]}}}),
    );
    let body = s.notification(&EntityId::new("urn:n:1").unwrap(), now(), Vec::new());
    assert_eq!(body["@context"], "https://ctx.example/c.jsonld");
    assert_eq!(
        s.notification_headers(),
        [
            ("Content-Type".to_owned(), "application/ld+json".to_owned()),
            ("Authorization".to_owned(), "Bearer x".to_owned())
        ]
    );
    assert!(s.mqtt_message(body).is_none(), "an HTTP endpoint has no MQTT message");
}

#[test]
fn mqtt_notifications_are_wrapped_in_metadata_and_body() {
    let s = sub(json!({"entities": [{"type": "T"}], "notification": {"endpoint": {
        "uri": "mqtt://broker.example/vigie/alerts",
        "receiverInfo": [{"key": "X-City", "value": "dijon"}],
        "notifierInfo": [{"key": "MQTT-QoS", "value": "2"}]
    }}}));
    let body = s.notification(&EntityId::new("urn:n:1").unwrap(), now(), Vec::new());
    let m = s.mqtt_message(body.clone()).unwrap();
    assert_eq!(m.topic, "vigie/alerts");
    assert_eq!(m.qos, 2);
    assert_eq!(m.payload["body"], body);
    assert_eq!(m.payload["metadata"]["Content-Type"], "application/json");
    assert_eq!(m.payload["metadata"]["X-City"], "dijon");
    assert!(m.payload["metadata"]["Link"].as_str().unwrap().contains(CORE_CONTEXT));
}

#[test]
fn id_patterns_answer_as_the_regex_engine_does() {
    let ids = [
        "urn:ngsi-ld:Streetlight:dijon:000142",
        "urn:ngsi-ld:Streetlight:chenove:000042",
        "urn:ngsi-ld:TrafficLight:dijon:42",
        "42",
        "urn:ngsi-ld:Streetlight:dijon:0001.42",
        "urn:ngsi-ld:Streetlight:dijon:x$",
    ];
    let patterns = [
        "42$",
        "^urn:ngsi-ld:Streetlight:",
        "^urn:ngsi-ld:Streetlight:dijon:000142$",
        "dijon",
        ".*dijon.*",
        "^42$",
        "^urn:ngsi-ld:Streetlight:.*",
        "urn:ngsi-ld:Streetlight:dijon:.*42",
        "1.42",
        "1\\.42$",
        "x\\$",
        "x$",
        "\\d{2}$",
        "(?i)STREETLIGHT",
        "^$|42",
        ".*",
    ];
    for source in patterns {
        let pattern = IdPattern::new(source).expect("a valid pattern");
        let regex = regex::Regex::new(source).expect("a valid regex");
        for id in ids {
            assert_eq!(pattern.is_match(id), regex.is_match(id), "{source} on {id}");
        }
    }
}
