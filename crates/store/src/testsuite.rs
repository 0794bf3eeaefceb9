//! The storage test story: one set of checks that every engine must pass, so
//! SQLite and PostgreSQL behave the same for the server.

use std::sync::Arc;

use serde_json::json;
use vigie_core::access::Role;
use vigie_core::audit::{AuditEvent, AuditRecord, Head, Outcome};
use vigie_core::{Attribute, Device, Entity, EntityId, Scope, Timestamp, Transport};

use vigie_core::ngsi::temporal::{AggrMethod, PeriodDuration, Periods, aggregate};

use crate::{
    AuditQuery, DeadLetter, HistoryPoint, HistoryQuery, HistorySelection, Retention, Store, StoreError, Truncation,
    WriteBatch,
};

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn light(n: u32, power: f64, at: &str) -> Entity {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:06}")).expect("test id");
    let mut e = Entity::new(
        id,
        "Streetlight",
        Some(Scope::from_ngsi("/dijon/lighting").expect("scope")),
    )
    .with("location", Attribute::point(5.04, 47.32))
    .with(
        "powerConsumption",
        Attribute::property(power).observed(ts(at)).with_unit("WTT"),
    );
    e.modified_at = Some(ts(at));
    e
}

fn point(e: &Entity, attribute: &str, value: serde_json::Value, at: &str) -> HistoryPoint {
    HistoryPoint {
        entity_id: e.id.clone(),
        attribute: attribute.into(),
        observed_at: ts(at),
        value,
        unit_code: None,
    }
}

/// Runs every check against a freshly migrated, empty store.
pub async fn run_all(store: &dyn Store) {
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate is idempotent");
    entities_round_trip_and_page_in_id_order(store).await;
    history_keeps_every_type_and_replaces_redeliveries(store).await;
    retention_prunes_per_attribute(store).await;
    temporal_range_reads_are_bounded_and_ordered(store).await;
    temporal_aggregates_match_the_core_aggregator(store).await;
    devices_and_dead_letters(store).await;
    accounts_credentials_and_sessions(store).await;
    audit_trail_appends_pages_and_queries(store).await;
    subscriptions_and_their_outbox(store).await;
    commands_keep_their_state_and_order(store).await;
    alarms_stay_open_until_closed(store).await;
    rules_keep_every_version(store).await;
}

async fn rules_keep_every_version(store: &dyn Store) {
    use crate::RuleRecord;
    let set = vigie_core::rules::RuleSet::parse_toml(
        r#"
        [[rule]]
        id = "frost"
        name = "Frost on roads"
        applies_to = { types = ["WeatherObserved"] }
        trigger = { type = "threshold", value = "temperature", below = 0.5, hysteresis = 1.0, min_duration = "15m" }
        actions = [{ action = "raise-alarm", alarm_type = "frost", severity = "major" }]
        "#,
    )
    .expect("valid");
    let mut rule = set.rules().next().cloned().expect("one rule");
    let record = |rule: &vigie_core::rules::Rule, retired: bool| RuleRecord {
        rule: rule.clone(),
        saved_at: ts("2026-12-01T09:00:00Z"),
        saved_by: "alice".into(),
        retired,
    };
    store.put_rule_version(&record(&rule, false)).await.expect("v1");
    rule.version = 2;
    rule.condition = "temperature < 3.0".into();
    store.put_rule_version(&record(&rule, false)).await.expect("v2");
    assert!(
        store.put_rule_version(&record(&rule, false)).await.is_err(),
        "a version is never rewritten"
    );
    let current = store.rules().await.expect("rules");
    assert_eq!(current, vec![record(&rule, false)], "the latest version, round-tripped");
    rule.version = 3;
    store.put_rule_version(&record(&rule, true)).await.expect("retire");
    assert!(store.rules().await.expect("rules").is_empty(), "retired");
    let versions: Vec<(u32, bool)> = store
        .rule_versions("frost")
        .await
        .expect("versions")
        .iter()
        .map(|r| (r.rule.version, r.retired))
        .collect();
    assert_eq!(versions, [(1, false), (2, false), (3, true)]);
}

async fn alarms_stay_open_until_closed(store: &dyn Store) {
    use vigie_core::alarm::{Alarm, AlarmAction, Condition, Severity};

    let cabinet = vigie_core::Entity::new(
        EntityId::new("urn:ngsi-ld:StreetlightControlCabinet:dijon:001").expect("id"),
        "StreetlightControlCabinet",
        None,
    );
    let cut = Condition {
        alarm_type: "power-cut".into(),
        severity: Severity::Critical,
        detail: "voltageR = 0 V".into(),
    };
    let mut first = Alarm::raise("alarm-1".into(), &cabinet, &cut, ts("2026-11-30T18:00:00Z"));
    first
        .children
        .push(EntityId::new("urn:ngsi-ld:Streetlight:dijon:000042").expect("id"));
    let second = Alarm::raise("alarm-2".into(), &cabinet, &cut, ts("2026-11-30T19:00:00Z"));
    store.put_alarms(&[second.clone(), first.clone()]).await.expect("put");
    assert_eq!(store.alarm("alarm-1").await.expect("get"), Some(first.clone()));
    let open: Vec<String> = store
        .open_alarms()
        .await
        .expect("open")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(open, ["alarm-1", "alarm-2"], "oldest first");
    first.clear(ts("2026-11-30T18:30:00Z"));
    first
        .apply(&AlarmAction::Close, "ops", ts("2026-11-30T18:31:00Z"))
        .expect("close");
    store.put_alarms(std::slice::from_ref(&first)).await.expect("close");
    let open: Vec<String> = store
        .open_alarms()
        .await
        .expect("open")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(open, ["alarm-2"]);
    assert_eq!(
        store.alarm("alarm-1").await.expect("get").map(|a| a.state),
        Some(first.state)
    );
}

async fn commands_keep_their_state_and_order(store: &dyn Store) {
    use vigie_core::command::{Command, CommandState};

    let light = EntityId::new("urn:ngsi-ld:Streetlight:dijon:000042").expect("id");
    let command = |n: u32, minute: u32| Command {
        id: format!("cmd-{n}"),
        entity_id: light.clone(),
        device_id: "sl-dijon-000042".into(),
        name: "dim".into(),
        value: json!(n * 10),
        state: CommandState::Sent,
        issued_by: "alice".into(),
        issued_at: ts(&format!("2026-11-30T18:{minute:02}:00Z")),
        updated_at: ts(&format!("2026-11-30T18:{minute:02}:00Z")),
        detail: None,
    };
    for (n, minute) in [(1, 1), (2, 2), (3, 3)] {
        store.put_command(&command(n, minute)).await.expect("put command");
    }
    let mut done = command(2, 2);
    done.state = CommandState::Acknowledged;
    done.detail = Some("OK".into());
    store.put_command(&done).await.expect("update command");
    assert_eq!(store.command("cmd-2").await.expect("get"), Some(done));
    assert_eq!(store.command("cmd-9").await.expect("get"), None);
    let latest: Vec<String> = store
        .commands_of(light.as_str(), 2)
        .await
        .expect("of entity")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(latest, ["cmd-3", "cmd-2"], "newest first, bounded");
    let open: Vec<String> = store
        .open_commands()
        .await
        .expect("open")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(open, ["cmd-1", "cmd-3"], "unanswered ones, oldest first");
}

async fn subscriptions_and_their_outbox(store: &dyn Store) {
    use crate::{PendingNotification, SubscriptionRecord};
    use vigie_core::access::{Credential, Principal, ScopeGrant};
    use vigie_core::ngsi::Subscription;

    let now = ts("2026-11-22T18:00:00Z");
    let body = json!({
        "type": "Subscription",
        "entities": [{"type": "Streetlight"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    });
    let id = |n: u32| EntityId::new(format!("urn:ngsi-ld:Subscription:{n}")).expect("id");
    let owner = Principal {
        subject: "ops".into(),
        credential: Credential::Session,
        role: Role::Operator,
        scope: ScopeGrant::parse("dijon", "*").expect("grant"),
    };
    let record = |subscription| SubscriptionRecord {
        subscription,
        owner: owner.clone(),
    };
    let mut sub = Subscription::create(&body, id(1), now).expect("subscription");
    store.put_subscription(&record(sub.clone())).await.expect("put");
    sub.record_success(now);
    store.put_subscription(&record(sub.clone())).await.expect("replace");
    let other = Subscription::create(&body, id(2), now).expect("subscription");
    store.put_subscription(&record(other)).await.expect("put");
    let stored = store.subscriptions().await.expect("list");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], record(sub));
    assert_eq!(
        stored[0].subscription.delivery().times_sent,
        1,
        "delivery counters are kept"
    );

    let queued = |seq: u64, sub: u32| PendingNotification {
        seq,
        subscription_id: id(sub).to_string(),
        created_at: now,
        data: json!({"id": format!("urn:ngsi-ld:Streetlight:{seq}"), "type": "Streetlight"}),
    };
    // One committed with a change, two queued on their own.
    store
        .write(&WriteBatch {
            notifications: vec![queued(1, 1), queued(2, 2)],
            ..Default::default()
        })
        .await
        .expect("write");
    store
        .put_notifications(&[queued(3, 1), queued(4, 1)])
        .await
        .expect("queue");
    assert_eq!(store.last_notification_seq().await.expect("seq"), 4);
    let pending = store
        .pending_notifications(id(1).as_str(), 0, 10)
        .await
        .expect("pending");
    assert_eq!(pending.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 3, 4]);
    assert_eq!(pending[0], queued(1, 1));
    let after = store
        .pending_notifications(id(1).as_str(), 1, 1)
        .await
        .expect("pending");
    assert_eq!(after.iter().map(|p| p.seq).collect::<Vec<_>>(), [3]);

    store.delete_notifications(&[1, 3]).await.expect("delivered");
    assert_eq!(store.count_pending_notifications().await.expect("count"), 2);
    assert!(store.delete_subscription(id(2).as_str()).await.expect("delete"));
    assert!(!store.delete_subscription(id(2).as_str()).await.expect("delete again"));
    assert_eq!(
        store.count_pending_notifications().await.expect("count"),
        1,
        "a deleted subscription's notifications go with it"
    );
    store.delete_notifications(&[4]).await.expect("delivered");
    assert!(store.delete_subscription(id(1).as_str()).await.expect("delete"));
}

async fn entities_round_trip_and_page_in_id_order(store: &dyn Store) {
    let lights: Vec<Entity> = (0..600).rev().map(|n| light(n, 30.0, "2026-11-22T18:00:00Z")).collect();
    store
        .write(&WriteBatch {
            upserts: lights.iter().cloned().map(Arc::new).collect(),
            ..Default::default()
        })
        .await
        .expect("write");
    assert_eq!(store.count_entities().await.expect("count"), 600);

    let mut seen = Vec::new();
    let mut after: Option<EntityId> = None;
    loop {
        let page = store.entities_page(after.as_ref(), 250).await.expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page);
    }
    assert_eq!(seen.len(), 600, "paging returns every entity once");
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "pages are in id order");
    let original = lights.iter().find(|e| e.id == seen[0].id).expect("present");
    assert_eq!(&seen[0], original, "an entity reads back as written");

    // Upsert replaces, delete removes.
    let changed = light(0, 12.5, "2026-11-22T19:00:00Z");
    store
        .write(&WriteBatch {
            upserts: vec![Arc::new(changed.clone())],
            deletes: vec![lights[0].id.clone()], // light 599
            ..Default::default()
        })
        .await
        .expect("write");
    assert_eq!(store.count_entities().await.expect("count"), 599);
    let first = store.entities_page(None, 1).await.expect("page");
    assert_eq!(first[0], changed);
}

async fn history_keeps_every_type_and_replaces_redeliveries(store: &dyn Store) {
    let e = light(1, 30.0, "2026-11-22T18:00:00Z");
    let points = vec![
        point(&e, "powerConsumption", json!(31.5), "2026-11-22T18:00:00Z"),
        point(&e, "powerConsumption", json!(32.25), "2026-11-22T18:10:00Z"),
        // Integers come back as integers (a JSON number has no float/int kind,
        // but clients print 40 and 40.0 differently).
        point(&e, "dimmingLevel", json!(40), "2026-11-22T18:10:00Z"),
        point(&e, "powerState", json!("on"), "2026-11-22T18:00:00Z"),
        point(&e, "fault", json!({"code": 3, "lamp": true}), "2026-11-22T18:00:00Z"),
        point(&e, "dimmed", json!(false), "2026-11-22T18:00:00Z"),
    ];
    let batch = WriteBatch {
        upserts: vec![Arc::new(e.clone())],
        history: points.clone(),
        ..Default::default()
    };
    store.write(&batch).await.expect("write");
    store.write(&batch).await.expect("a redelivered batch is accepted");
    let all = store
        .history(&HistoryQuery {
            entity_id: Some(e.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(all.len(), points.len(), "a redelivered point replaces itself");
    for p in &points {
        assert!(all.contains(p), "{p:?} reads back unchanged");
    }
    let ranged = store
        .history(&HistoryQuery {
            entity_id: Some(e.id.clone()),
            attribute: Some("powerConsumption".into()),
            from: Some(ts("2026-11-22T18:05:00Z")),
            to: None,
            limit: 10,
        })
        .await
        .expect("history");
    assert_eq!(ranged.len(), 1);
    assert_eq!(ranged[0].value, json!(32.25));
}

async fn retention_prunes_per_attribute(store: &dyn Store) {
    let e = light(2, 30.0, "2026-01-01T00:00:00Z");
    store
        .write(&WriteBatch {
            upserts: vec![Arc::new(e.clone())],
            history: vec![
                point(
                    &e,
                    "location",
                    json!({"type": "Point", "coordinates": [5.0, 47.3]}),
                    "2026-01-01T00:00:00Z",
                ),
                point(&e, "powerConsumption", json!(1.0), "2026-01-01T00:00:00Z"),
                point(&e, "powerConsumption", json!(2.0), "2026-11-21T00:00:00Z"),
            ],
            ..Default::default()
        })
        .await
        .expect("write");
    let retention = Retention {
        default_days: 365,
        per_attribute_days: [("location".to_owned(), 60)].into(),
    };
    let removed = store
        .prune_history(ts("2026-11-22T00:00:00Z"), &retention)
        .await
        .expect("prune");
    assert_eq!(removed, 1, "only the location point is past its 60 days");
    let left = store
        .history(&HistoryQuery {
            entity_id: Some(e.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|p| p.attribute == "powerConsumption"));
}

async fn devices_and_dead_letters(store: &dyn Store) {
    let device = Device {
        device_id: "SL-000001".into(),
        transport: Transport::IotAgentJson {
            apikey: "lighting".into(),
        },
        entity_name: EntityId::new("urn:ngsi-ld:Streetlight:dijon:000001").expect("id"),
        entity_type: "Streetlight".into(),
        scope: None,
        attributes: vec![],
        mqtt_password_hash: Some(
            "sha256$000102030405060708090a0b0c0d0e0f$000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
                .parse()
                .expect("hash"),
        ),
    };
    store.put_devices(std::slice::from_ref(&device)).await.expect("put");
    store
        .put_devices(std::slice::from_ref(&device))
        .await
        .expect("put again replaces");
    assert_eq!(store.devices().await.expect("devices"), vec![device.clone()]);
    assert!(store.delete_device("SL-000001").await.expect("delete"));
    assert!(!store.delete_device("SL-000001").await.expect("delete twice"));

    let letters: Vec<DeadLetter> = (0..3)
        .map(|i| DeadLetter {
            received_at: ts("2026-11-22T18:00:00Z"),
            source: "mqtt".into(),
            topic: format!("/k/d{i}/attrs"),
            reason: "unknown-device".into(),
            detail: format!("no device d{i}"),
            payload: vec![0xff, i],
        })
        .collect();
    store
        .write(&WriteBatch {
            dead_letters: letters.clone(),
            ..Default::default()
        })
        .await
        .expect("write");
    assert_eq!(store.count_dead_letters().await.expect("count"), 3);
    let newest = store.dead_letters(2, 0).await.expect("list");
    assert_eq!(
        newest,
        vec![letters[2].clone(), letters[1].clone()],
        "newest first, binary payload intact"
    );
}

async fn accounts_credentials_and_sessions(store: &dyn Store) {
    use vigie_core::access::{Role, ScopeGrant};
    use vigie_core::account::{Account, AccountOrigin, ApiCredential, CredentialKind, Session};

    let now = ts("2026-11-25T10:00:00Z");
    let mut alice = Account {
        name: "alice".into(),
        display_name: "Alice Martin".into(),
        role: Role::Operator,
        scope: ScopeGrant::parse("dijon,chenove", "lighting").expect("grant"),
        origin: AccountOrigin::Local,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
        password_changed_at: Some(now),
        last_login_at: None,
        language: None,
    };
    store.put_account(&alice).await.expect("put account");
    alice.failed_logins = 3;
    store.put_account(&alice).await.expect("replace account");
    assert_eq!(store.account("alice").await.expect("get"), Some(alice.clone()));
    assert_eq!(store.account("bob").await.expect("get"), None);
    assert_eq!(store.accounts().await.expect("list"), vec![alice.clone()]);

    let key = ApiCredential {
        id: "k0123456789abcdef".into(),
        kind: CredentialKind::ApiKey,
        name: "Open data portal".into(),
        role: Role::Auditor,
        scope: ScopeGrant::everywhere(),
        secret_hash: "00".repeat(32),
        requests_per_minute: Some(60),
        created_by: "alice".into(),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    store.put_api_credential(&key).await.expect("put key");
    assert_eq!(store.api_credentials().await.expect("keys"), vec![key]);

    let session = |token: &str, end: &str| Session {
        token_hash: token.into(),
        account: "alice".into(),
        csrf_token: "csrf".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: ts(end),
        source: Some("127.0.0.1".into()),
        single_sign_on: false,
    };
    store
        .put_session(&session("s1", "2026-11-25T11:00:00Z"))
        .await
        .expect("session");
    store
        .put_session(&session("s2", "2026-11-25T20:00:00Z"))
        .await
        .expect("session");
    assert_eq!(
        store.session("s1").await.expect("get").map(|s| s.account),
        Some("alice".into())
    );
    assert_eq!(
        store.prune_sessions(ts("2026-11-25T12:00:00Z")).await.expect("prune"),
        1
    );
    assert_eq!(store.session("s1").await.expect("get"), None);
    store.delete_session("s2").await.expect("delete");
    assert_eq!(store.session("s2").await.expect("get"), None);
    store
        .put_session(&session("s3", "2026-11-25T20:00:00Z"))
        .await
        .expect("session");
    assert!(store.delete_account("alice").await.expect("delete account"));
    assert_eq!(
        store.session("s3").await.expect("get"),
        None,
        "an account's sessions go with it"
    );
    assert!(!store.delete_account("alice").await.expect("delete again"));
}

fn audit_event(n: u64, actor: &str, action: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        at: Timestamp::from_second(1_795_000_000 + i64::try_from(n).expect("small")).expect("time")
            + jiff::SignedDuration::from_micros(123_456),
        actor: actor.into(),
        role: Some(Role::Operator),
        credential: "session".into(),
        source: Some("192.0.2.7".into()),
        action: action.into(),
        target: Some(format!("urn:ngsi-ld:Streetlight:dijon:{n:06}")),
        outcome,
        detail: (outcome != Outcome::Ok).then(|| "refused".to_owned()),
        before: Some(json!({"powerState": {"type": "Property", "value": "off"}, "n": 1.5})),
        after: n
            .is_multiple_of(2)
            .then(|| json!({"b": [1, "é", null], "a": {"z": true, "y": -3}})),
    }
}

async fn audit_trail_appends_pages_and_queries(store: &dyn Store) {
    assert_eq!(store.audit_head().await.expect("head"), None);
    let mut head = Head::genesis();
    let mut all = Vec::new();
    // 1..=30: ann's updates, bob's denied deletes every third.
    for batch in [1..=10u64, 11..=25, 26..=30] {
        let mut records = Vec::new();
        for n in batch {
            let (actor, action, outcome) = if n.is_multiple_of(3) {
                ("bob", "entity.delete", Outcome::Denied)
            } else {
                ("ann", "entity.update", Outcome::Ok)
            };
            let r = AuditRecord::seal(&head, audit_event(n, actor, action, outcome));
            head = Head::of(&r);
            records.push(r);
        }
        store.audit_append(&records).await.expect("append");
        all.extend(records);
    }
    assert_eq!(store.audit_head().await.expect("head").as_ref(), all.last());
    assert_eq!(store.audit_get(7).await.expect("get").as_ref(), Some(&all[6]));
    assert_eq!(store.audit_get(31).await.expect("get"), None);

    // Paging in seq order returns every record exactly as sealed.
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_after(after, 7).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.seq;
        read.extend(page);
    }
    assert_eq!(read, all, "records read back exactly (JSON, times, options)");
    assert!(vigie_core::audit::verify(&read, Some(&head)).is_ok());

    // A stale or non-contiguous append is refused and writes nothing.
    let stale = AuditRecord::seal(
        &Head::of(&all[10]),
        audit_event(99, "eve", "entity.update", Outcome::Ok),
    );
    assert!(matches!(
        store.audit_append(&[stale]).await,
        Err(StoreError::AuditConflict(_))
    ));
    let next = AuditRecord::seal(&head, audit_event(31, "ann", "entity.update", Outcome::Ok));
    let mut gap = AuditRecord::seal(&Head::of(&next), audit_event(32, "ann", "entity.update", Outcome::Ok));
    gap.seq = 33;
    assert!(matches!(
        store.audit_append(&[next, gap]).await,
        Err(StoreError::AuditConflict(_))
    ));
    assert_eq!(store.audit_head().await.expect("head").map(|r| r.seq), Some(30));

    // Filters.
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let seqs = |rs: Vec<AuditRecord>| rs.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    let bob = q(&|q| q.actor = Some("bob".into()));
    assert_eq!(store.audit_count(&bob).await.expect("count"), 10);
    assert_eq!(seqs(store.audit_query(&bob).await.expect("query"))[..3], [3, 6, 9]);
    let denied = q(&|q| q.outcome = Some(Outcome::Denied));
    assert_eq!(store.audit_count(&denied).await.expect("count"), 10);
    let prefix = q(&|q| q.action = Some("entity.*".into()));
    assert_eq!(store.audit_count(&prefix).await.expect("count"), 30);
    let exact = q(&|q| q.action = Some("entity.update".into()));
    assert_eq!(store.audit_count(&exact).await.expect("count"), 20);
    let wildcard_is_literal = q(&|q| q.action = Some("entity%".into()));
    assert_eq!(store.audit_count(&wildcard_is_literal).await.expect("count"), 0);
    let target = q(&|q| q.target_prefix = Some("urn:ngsi-ld:Streetlight:dijon:00001".into()));
    assert_eq!(
        seqs(store.audit_query(&target).await.expect("query")),
        (10..=19).collect::<Vec<_>>()
    );
    let window = q(&|q| {
        q.from = Some(all[4].event.at);
        q.to = Some(all[8].event.at);
    });
    assert_eq!(seqs(store.audit_query(&window).await.expect("query")), [5, 6, 7, 8]);
    let newest = q(&|q| {
        q.newest_first = true;
        q.limit = 2;
        q.offset = 1;
    });
    assert_eq!(seqs(store.audit_query(&newest).await.expect("query")), [29, 28]);
    assert_eq!(store.audit_count(&newest).await.expect("count"), 30);
    let keyset = q(&|q| {
        q.actor = Some("bob".into());
        q.after_seq = Some(20);
    });
    assert_eq!(seqs(store.audit_query(&keyset).await.expect("query")), [21, 24, 27, 30]);
}

/// Lights 700 and 701: one reading a minute over three hours from 18:00, of
/// several JSON types; light 701 only the first hour.
async fn temporal_fixture(store: &dyn Store) -> (Entity, Entity) {
    let (a, b) = (
        light(700, 30.0, "2026-11-22T18:00:00Z"),
        light(701, 30.0, "2026-11-22T18:00:00Z"),
    );
    let start = ts("2026-11-22T18:00:00Z");
    let mut history = Vec::new();
    for m in 0..180i64 {
        let at = start + jiff::SignedDuration::from_mins(m);
        let p = |e: &Entity, attribute: &str, value: serde_json::Value| HistoryPoint {
            entity_id: e.id.clone(),
            attribute: attribute.into(),
            observed_at: at,
            value,
            unit_code: (attribute == "powerConsumption").then(|| "WTT".to_owned()),
        };
        history.push(p(&a, "powerConsumption", json!((m % 7) as f64 * 1.5 + 20.0)));
        history.push(p(&a, "powerState", json!(["on", "off", "dimmed"][(m % 3) as usize])));
        history.push(p(&a, "lit", json!(m % 4 != 0)));
        history.push(p(&a, "tags", json!(vec![1; (m % 5) as usize])));
        history.push(p(&a, "fault", json!({"code": m % 2})));
        if m < 60 {
            history.push(p(&b, "powerConsumption", json!(m)));
        }
    }
    store
        .write(&WriteBatch {
            upserts: vec![Arc::new(a.clone()), Arc::new(b.clone())],
            history,
            ..Default::default()
        })
        .await
        .expect("write");
    (a, b)
}

async fn temporal_range_reads_are_bounded_and_ordered(store: &dyn Store) {
    let (a, b) = temporal_fixture(store).await;
    let select = |attributes: Option<&[&str]>, from: Option<&str>, to: Option<&str>| HistorySelection {
        entity_ids: vec![b.id.clone(), a.id.clone()],
        attributes: attributes.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        from: from.map(ts),
        to: to.map(ts),
    };
    let power = Some(&["powerConsumption"][..]);

    let all = store
        .history_range(&select(power, None, None), None, 1000)
        .await
        .expect("range");
    assert_eq!(all.truncation, None);
    let ids: Vec<&EntityId> = all.entities.iter().map(|e| &e.entity_id).collect();
    assert_eq!(ids, [&a.id, &b.id], "entities by id");
    let a_power = &all.entities[0].attributes[0];
    assert_eq!(
        (a_power.name.as_str(), a_power.instances.len()),
        ("powerConsumption", 180)
    );
    assert!(
        a_power
            .instances
            .windows(2)
            .all(|w| w[0].observed_at < w[1].observed_at),
        "oldest first"
    );
    assert_eq!(a_power.instances[0].unit_code.as_deref(), Some("WTT"));

    // before excludes timeAt, after includes it, between is half-open.
    let before = store
        .history_range(&select(power, None, Some("2026-11-22T18:10:00Z")), None, 1000)
        .await
        .expect("range");
    assert_eq!(before.entities[0].attributes[0].instances.len(), 10);
    let between = store
        .history_range(
            &select(power, Some("2026-11-22T18:10:00Z"), Some("2026-11-22T18:20:00Z")),
            None,
            1000,
        )
        .await
        .expect("range");
    let first = &between.entities[0].attributes[0].instances;
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].observed_at, ts("2026-11-22T18:10:00Z"));

    // Every attribute when none is named; entities outside the selection are not read.
    let every = store
        .history_range(&select(None, None, Some("2026-11-22T18:01:00Z")), None, 10)
        .await
        .expect("range");
    let names: Vec<&str> = every.entities[0].attributes.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["fault", "lit", "powerConsumption", "powerState", "tags"]);
    assert_eq!(every.entities[0].attributes[1].instances[0].value, json!(false));
    assert_eq!(every.entities[0].attributes[4].instances[0].value, json!([]));

    // A page cut at a common instant: b has 60 instances, a 180, limit 50.
    let page = store
        .history_range(&select(power, None, None), None, 50)
        .await
        .expect("range");
    assert_eq!(
        page.truncation,
        Some(Truncation::CompleteUntil(ts("2026-11-22T18:49:00Z")))
    );
    assert!(page.entities.iter().all(|e| e.attributes[0].instances.len() == 50));

    // lastN: the N most recent, oldest first.
    let last = store
        .history_range(&select(power, None, None), Some(3), 1000)
        .await
        .expect("range");
    assert_eq!(last.truncation, None);
    let times: Vec<Timestamp> = last.entities[1].attributes[0]
        .instances
        .iter()
        .map(|i| i.observed_at)
        .collect();
    assert_eq!(
        times,
        [
            ts("2026-11-22T18:57:00Z"),
            ts("2026-11-22T18:58:00Z"),
            ts("2026-11-22T18:59:00Z")
        ]
    );
    // lastN beyond the page: the most recent page, complete from a common instant.
    let cut = store
        .history_range(&select(power, None, None), Some(100), 20)
        .await
        .expect("range");
    assert_eq!(
        cut.truncation,
        Some(Truncation::CompleteFrom(ts("2026-11-22T20:40:00Z")))
    );
    assert_eq!(cut.entities.len(), 1, "b has nothing that recent");
    assert_eq!(cut.entities[0].attributes[0].instances.len(), 20);

    let nothing = HistorySelection::default();
    assert_eq!(
        store.history_range(&nothing, None, 10).await.expect("range").entities,
        []
    );
    assert_eq!(store.history_extent(&nothing).await.expect("extent"), None);
    assert_eq!(
        store
            .history_extent(&select(power, Some("2026-11-22T18:30:00Z"), None))
            .await
            .expect("extent"),
        Some((ts("2026-11-22T18:30:00Z"), ts("2026-11-22T20:59:00Z")))
    );
}

/// The engine's per-period statistics give what the core's aggregator gives
/// from the same instances, for every method and JSON type, with equal and
/// with calendar periods.
async fn temporal_aggregates_match_the_core_aggregator(store: &dyn Store) {
    let (a, b) = temporal_fixture(store).await;
    let selection = HistorySelection {
        entity_ids: vec![a.id.clone(), b.id.clone()],
        attributes: None,
        from: Some(ts("2026-11-22T18:05:00Z")),
        to: None,
    };
    let range = store.history_range(&selection, None, 10_000).await.expect("range");
    let extent = store.history_extent(&selection).await.expect("extent").expect("data");
    for (duration, start) in [
        ("PT1H", "2026-11-22T18:05:00Z"),
        ("PT7M", "2026-11-22T18:05:00Z"),
        ("PT0S", "2026-11-22T18:05:00Z"),
        ("P1M", "2026-10-31T00:00:00Z"),
    ] {
        let periods = Periods::new(
            ts(start),
            extent.1 + jiff::SignedDuration::from_micros(1),
            PeriodDuration::parse(duration).expect("duration"),
        )
        .expect("periods");
        let stored = store
            .history_aggregate(&selection, &periods, &AggrMethod::ALL)
            .await
            .expect("aggregate");
        assert_eq!(stored.len(), range.entities.len(), "{duration}");
        for (entity, expected) in stored.iter().zip(&range.entities) {
            assert_eq!(entity.entity_id, expected.entity_id);
            assert_eq!(entity.attributes.len(), expected.attributes.len());
            for (got, history) in entity.attributes.iter().zip(&expected.attributes) {
                assert_eq!(got.name, history.name);
                let want = aggregate(history.instances.iter().map(|i| (i.observed_at, &i.value)), &periods);
                assert_eq!(got.periods.len(), want.len());
                for (p, (g, w)) in got.periods.iter().zip(&want).enumerate() {
                    for method in AggrMethod::ALL {
                        let kind = vigie_core::AttributeKind::Property;
                        let (g, w) = (g.value(method, kind), w.value(method, kind));
                        let close = match (g.as_f64(), w.as_f64()) {
                            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                            _ => g == w,
                        };
                        assert!(
                            close,
                            "{duration} {} {} period {p} {method}: store {g}, core {w}",
                            entity.entity_id, history.name
                        );
                    }
                }
            }
        }
    }

    // Without distinctCount the engine may skip it, and says so.
    let periods = Periods::new(
        ts("2026-11-22T18:00:00Z"),
        ts("2026-11-22T21:00:00Z"),
        PeriodDuration::parse("PT1H").expect("duration"),
    )
    .expect("periods");
    let lean = store
        .history_aggregate(&selection, &periods, &[AggrMethod::Avg])
        .await
        .expect("aggregate");
    let power = lean[0]
        .attributes
        .iter()
        .find(|x| x.name == "powerConsumption")
        .expect("power");
    assert_eq!(power.periods[0].distinct_count, None);
    assert_eq!(power.periods[0].total_count, 55, "from 18:05, the selection's start");
    assert_eq!(power.periods[1].total_count, 60);
}
