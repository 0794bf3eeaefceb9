//! Crash safety and clean shutdown of the real `vigie` binary.
//!
//! 1. `kill -9` in the middle of ingestion, through Debian's mosquitto: after a
//!    restart on the same data directory, every message the broker
//!    acknowledged to the devices is in the history, exactly once, with its
//!    value. (Vigie acknowledges the broker only after its commit, so what it
//!    had not committed is still with the broker, in Vigie's persistent
//!    session, and comes back.)
//! 2. SIGTERM in the middle of ingestion (embedded broker): exit status 0
//!    within 10 s, a log that says so, and every message Vigie counted as
//!    acknowledged in the store.
//!
//! Run: `cargo test -p vigie --test crash` (needs `mosquitto`; ./scripts/test installs it).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Mosquitto, Publisher, Vigie, db_path, entity_of, message, provisioning, write_config};
use vigie_store::{HistoryQuery, Store};
use vigie_store_sqlite::{Durability, SqliteStore};

const DEVICES: usize = 50;

/// Publishes messages `from..from + count` at about `per_tick` every 25 ms.
async fn publish_paced(mut p: Publisher, from: usize, count: usize, per_tick: usize) -> Publisher {
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let mut i = from;
    while i < from + count {
        tick.tick().await;
        for _ in 0..per_tick.min(from + count - i) {
            if !p.publish(i, &message(i, DEVICES)).await {
                return p; // the broker is gone (the embedded one stops with Vigie)
            }
            i += 1;
        }
    }
    p
}

async fn open_store(data: &Path) -> SqliteStore {
    SqliteStore::open(&db_path(data), Durability::Full)
        .await
        .expect("open the store")
}

/// Every history point, keyed by (entity, observedAt in ms), after checking
/// the database file's integrity. Reading decodes every row: a corrupt one
/// fails here.
async fn read_history(store: &SqliteStore) -> HashMap<(String, i64), f64> {
    let check = store.integrity_check().await.expect("integrity_check");
    assert_eq!(check, "ok", "the database file is damaged");
    let points = store
        .history(&HistoryQuery {
            limit: usize::MAX,
            ..Default::default()
        })
        .await
        .expect("every history row decodes");
    let mut out = HashMap::new();
    for p in points {
        assert_eq!(p.attribute, "powerConsumption", "{p:?}");
        let value = p.value.as_f64().unwrap_or_else(|| panic!("not a number: {p:?}"));
        let key = (p.entity_id.as_str().to_owned(), p.observed_at.as_millisecond());
        assert!(out.insert(key, value).is_none(), "a duplicate history row: {p:?}");
    }
    out
}

/// Checks that `history` holds exactly the messages `expected`, with their values.
fn assert_history_is(history: &HashMap<(String, i64), f64>, expected: &[usize]) {
    for &i in expected {
        let m = message(i, DEVICES);
        match history.get(&(entity_of(m.device), m.observed_ms)) {
            Some(v) => assert_eq!(*v, m.value, "message {i} has the wrong value"),
            None => panic!("message {i} was acknowledged but is not in the history"),
        }
    }
    assert_eq!(
        history.len(),
        expected.len(),
        "the history holds messages nobody acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_message() {
    let started = Instant::now();
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        data.path(),
        &format!(
            "embedded = false\nurl = \"{}\"\nclient_id = \"vigie-crash-{}\"",
            broker.url(),
            std::process::id()
        ),
    );

    // First life: provision, then ingest until SIGKILL.
    let vigie = Vigie::start(&config).await;
    let (status, body) = vigie.post_json("/iot/devices", &provisioning(DEVICES)).await;
    assert_eq!(status, 201, "{body}");
    let mut publisher = Publisher::connect(broker.port, "crash-devices").await;
    // Until Vigie has subscribed, mosquitto answers NoMatchingSubscribers and drops the message.
    let first = publisher.until_routed(DEVICES).await;
    let acks = std::sync::Arc::clone(&publisher.acks);
    // Bursts of 400 every 25 ms (up to 16,000 messages/s) for ~2 s: faster
    // than Vigie commits, so the kill finds messages received but not committed.
    const BULK: usize = 24_000;
    let sending = tokio::spawn(publish_paced(publisher, first, BULK, 400));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let sent_at_kill = acks.lock().unwrap().sent;
    vigie.kill9();
    assert!(
        !sending.is_finished(),
        "the kill must come while the devices are still publishing"
    );

    // What the first life had committed when it died.
    let store = open_store(data.path()).await;
    let committed_before = read_history(&store).await.len();
    store.close().await;
    assert!(committed_before > 0, "nothing was ingested before the kill");

    // The devices go on publishing to mosquitto, which queues for Vigie's session.
    let publisher = sending.await.expect("publisher task");
    assert!(
        publisher.settle(Duration::from_secs(15)).await,
        "the broker did not acknowledge every message: {:?}",
        publisher.acks.lock().unwrap().error
    );
    let (acked, refused) = {
        let a = publisher.acks.lock().unwrap();
        assert!(a.error.is_none(), "publisher: {:?}", a.error);
        let mut acked: Vec<usize> = a.acknowledged().collect();
        acked.sort_unstable();
        let refused: Vec<usize> = (0..publisher.published()).filter(|i| !acked.contains(i)).collect();
        (acked, refused)
    };
    // Only the probes sent before Vigie subscribed may have been refused.
    assert!(refused.iter().all(|&i| i < first), "refused after routing: {refused:?}");
    assert_eq!(acked.len(), publisher.published() - refused.len());
    assert!(
        committed_before < acked.len(),
        "the kill came after everything was ingested ({committed_before} of {})",
        acked.len()
    );

    // Second life: same binary, data directory and broker.
    let vigie = Vigie::start(&config).await;
    let store = open_store(data.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = store.count_history().await.expect("count") as usize;
        if n >= acked.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart only {n} of {} acknowledged messages arrived: {}",
            acked.len(),
            vigie.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Quiescent: nothing more arrives.
    let mut received = vigie.metric("vigie_mqtt_messages_total").await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = vigie.metric("vigie_mqtt_messages_total").await;
        if now == received && vigie.metric("vigie_ingest_queue_depth").await == 0 {
            break;
        }
        received = now;
        assert!(Instant::now() < deadline, "ingestion never settled");
    }
    let restart_log = vigie.log();
    let (status, took, log) = vigie.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status:?} after SIGTERM: {log}");

    // Every acknowledged message, exactly once, with its value; nothing corrupt.
    let history = read_history(&store).await;
    assert_history_is(&history, &acked);
    assert_eq!(store.count_dead_letters().await.expect("dead letters"), 0);
    assert_eq!(store.count_entities().await.expect("entities") as usize, DEVICES);
    store.close().await;

    // A clean restart: the twin came back from the file, the broker kept the session.
    assert!(restart_log.contains("twin loaded entities=50"), "{restart_log}");
    assert!(restart_log.contains("session_present=true"), "{restart_log}");
    assert!(!restart_log.contains("ERROR"), "{restart_log}");
    assert!(log.contains(" stopped mqtt_messages="), "{log}");

    // Redelivered: committed before the kill but not yet acknowledged, so the broker sent them again.
    let redelivered = received as usize + committed_before - acked.len();
    eprintln!(
        "kill -9: {} published, {} acknowledged by the broker ({} probes refused before Vigie subscribed), \
         {sent_at_kill} sent when killed, {committed_before} committed before the kill, \
         {received} received after the restart ({redelivered} of them redelivered duplicates), \
         {} in the history; SIGTERM exit in {took:?}; {:?} in all",
        publisher.published(),
        acked.len(),
        refused.len(),
        history.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_ingest_exits_cleanly_with_everything_acknowledged_stored() {
    let started = Instant::now();
    let data = tempfile::tempdir().expect("tempdir");
    let mqtt_port = common::free_port();
    // The publisher speaks for every device: on the embedded broker, which
    // checks credentials, it is a gateway.
    let password = "term-devices-password-0123456789";
    let hash = vigie_core::credentials::PasswordHash::new(
        &vigie_core::credentials::Secret::new(password.into()).expect("secret"),
        [7; 16],
    );
    let config = write_config(
        data.path(),
        &format!(
            "embedded = true\nembedded_listen = \"127.0.0.1:{mqtt_port}\"\n\
             gateways = {{ term-devices = {{ password_hash = \"{hash}\", publish = [\"/+/+/attrs\"] }} }}"
        ),
    );
    let vigie = Vigie::start(&config).await;
    let (status, body) = vigie.post_json("/iot/devices", &provisioning(DEVICES)).await;
    assert_eq!(status, 201, "{body}");
    let mut publisher = Publisher::connect_as(mqtt_port, "term-devices", Some(("term-devices", password))).await;
    // Wait until Vigie has subscribed: its twin shows the first device.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        assert!(publisher.publish(i, &message(i, DEVICES)).await);
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if vigie.metric("vigie_mqtt_messages_total").await > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Vigie never received a message: {}",
            vigie.log()
        );
    }
    let first = i;

    // Phase 1: 2,000 messages, all ingested before the stop.
    let publisher = publish_paced(publisher, first, 2_000, 100).await;
    let settled = first + 2_000;
    // Ingested: at least that many messages counted, and the count has settled.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    loop {
        let n = vigie.metric("vigie_mqtt_messages_total").await;
        if n as usize >= settled - first && n == last {
            break;
        }
        last = n;
        assert!(Instant::now() < deadline, "phase 1 was not ingested: {}", vigie.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Phase 2: SIGTERM while ~4,000 messages/s keep arriving.
    let sending = tokio::spawn(publish_paced(publisher, settled, 20_000, 100));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen_before_stop = vigie.metric("vigie_mqtt_messages_total").await;
    let (status, took, log) = vigie.terminate(Duration::from_secs(10)).await;
    let published = tokio::time::timeout(Duration::from_secs(10), sending)
        .await
        .expect("the publisher stops when the broker goes")
        .expect("publisher task")
        .published();
    assert!(status.success(), "exit {status:?} after SIGTERM: {log}");
    assert!(took < Duration::from_secs(10));
    for line in [
        "shutdown requested",
        "ingest writer drained and stopped",
        "MQTT consumer stopped",
    ] {
        assert!(log.contains(line), "the log lacks '{line}': {log}");
    }
    assert!(!log.contains("ERROR"), "{log}");
    // The last line: how many messages this run committed, each acknowledged after its commit.
    let acknowledged: usize = log
        .lines()
        .find_map(|l| l.split(" stopped mqtt_messages=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no final 'stopped' line: {log}"));
    assert!(acknowledged as u64 >= seen_before_stop);

    let store = open_store(data.path()).await;
    let history = read_history(&store).await;
    store.close().await;
    assert_eq!(
        history.len(),
        acknowledged,
        "the store must hold exactly what Vigie acknowledged"
    );
    // Every stored point is a message that was published, with its value; phase 1 is all there.
    let by_key: HashMap<(String, i64), usize> = (0..published)
        .map(|i| {
            let m = message(i, DEVICES);
            ((entity_of(m.device), m.observed_ms), i)
        })
        .collect();
    for (key, value) in &history {
        let i = by_key
            .get(key)
            .unwrap_or_else(|| panic!("a point nobody published: {key:?}"));
        assert_eq!(*value, message(*i, DEVICES).value);
    }
    for i in first..settled {
        let m = message(i, DEVICES);
        assert!(
            history.contains_key(&(entity_of(m.device), m.observed_ms)),
            "message {i} was lost"
        );
    }
    eprintln!(
        "SIGTERM: exit 0 in {took:?}; {seen_before_stop} messages ingested when signalled, \
         {acknowledged} acknowledged by the end, {} in the history; {:?} in all",
        history.len(),
        started.elapsed()
    );
}

/// SIGTERM waits for the subscriptions' delivery workers: a failure counted
/// just before (counters are otherwise saved every 5 s) is in the store
/// after the process has exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_the_delivery_counters_of_subscriptions() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        data.path(),
        &format!(
            "embedded = true\nembedded_listen = \"127.0.0.1:{}\"",
            common::free_port()
        ),
    );
    let vigie = Vigie::start(&config).await;
    let light = serde_json::json!({
        "id": "urn:ngsi-ld:Streetlight:dijon:000001",
        "type": "Streetlight",
        "powerState": {"type": "Property", "value": "on"},
    });
    let (status, body) = vigie.post_json("/ngsi-ld/v1/entities", &light).await;
    assert_eq!(status, 201, "{body}");
    // An endpoint that refuses connections: the failure is counted at once.
    let refused = format!("127.0.0.1:{}", common::free_port());
    let subscription = serde_json::json!({
        "type": "Subscription",
        "entities": [{"type": "Streetlight"}],
        "watchedAttributes": ["powerState"],
        "notification": {"endpoint": {"uri": format!("http://{refused}/notify")}},
    });
    let (status, body) = vigie.post_json("/ngsi-ld/v1/subscriptions", &subscription).await;
    assert_eq!(status, 201, "{body}");
    let res = vigie
        .http
        .patch(vigie.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs"))
        .json(&serde_json::json!({"powerState": {"type": "Property", "value": "off"}}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(res.status().as_u16(), 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took, log) = vigie.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status:?} after SIGTERM: {log}");
    assert!(took < Duration::from_secs(10));

    let store = open_store(data.path()).await;
    let records = store.subscriptions().await.expect("subscriptions");
    store.close().await;
    assert_eq!(records.len(), 1);
    let delivery = records[0].subscription.delivery();
    assert!(delivery.times_failed >= 1, "{delivery:?}\n{log}");
}
