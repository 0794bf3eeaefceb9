//! Scenarios run both against the embedded broker and an external one
//! (`tests/external.rs`, mosquitto). `prefix` keeps client ids and topics of
//! concurrent runs on a shared external broker apart.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;

use super::{connect, options, text};

/// Two members of one share group split 100 messages; none is delivered
/// twice; a plain subscriber beside them sees all 100.
pub async fn shared_subscription_splits(addr: SocketAddr, prefix: &str) {
    let filter = format!("$share/vigie/{prefix}application/+/device/+/event/+");
    let mut a = connect(options(addr, &format!("{prefix}vigie-a"))).await;
    let mut b = connect(options(addr, &format!("{prefix}vigie-b"))).await;
    a.subscribe(&filter, QoS::AtLeastOnce).await;
    b.subscribe(&filter, QoS::AtLeastOnce).await;
    // A plain subscriber beside the group still sees everything.
    let mut watcher = connect(options(addr, &format!("{prefix}watcher"))).await;
    watcher
        .subscribe(&format!("{prefix}application/#"), QoS::AtLeastOnce)
        .await;

    let publisher = connect(options(addr, &format!("{prefix}chirpstack"))).await;
    const N: usize = 100;
    for i in 0..N {
        let topic = format!("{prefix}application/app-1/device/dev-{}/event/up", i % 7);
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("publish");
    }

    let mut seen = HashSet::new();
    let (mut got_a, mut got_b) = (0, 0);
    // Collect until both members are quiet; the union must be exactly N.
    for (client, count) in [(&mut a, &mut got_a), (&mut b, &mut got_b)] {
        while let Some(p) = client.next_publish_within(Duration::from_secs(2)).await {
            assert!(seen.insert(text(&p)), "message {} delivered twice", text(&p));
            *count += 1;
        }
    }
    assert_eq!(seen.len(), N, "every message reaches exactly one member");
    assert!(got_a > 0 && got_b > 0, "both members get a share: a={got_a} b={got_b}");

    let mut watched = 0;
    while watcher.next_publish_within(Duration::from_secs(2)).await.is_some() {
        watched += 1;
    }
    assert_eq!(watched, N);
}

/// A manual-ack subscriber with a persistent session crashes with three
/// messages unacknowledged; three more are published while it is away; on
/// reconnect it gets all six, once each.
pub async fn persistent_session_redelivery(addr: SocketAddr, prefix: &str) {
    let persistent = |addr| {
        let mut o = options(addr, &format!("{prefix}vigie-ingest"));
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(300));
        o.set_manual_acks(true);
        o
    };

    let mut sub = connect(persistent(addr)).await;
    sub.subscribe(&format!("{prefix}/key/+/attrs"), QoS::AtLeastOnce).await;
    let publisher = connect(options(addr, &format!("{prefix}agent"))).await;
    for i in 0..5 {
        publisher
            .client
            .publish(
                format!("{prefix}/key/d1/attrs"),
                QoS::AtLeastOnce,
                false,
                format!("a{i}"),
            )
            .await
            .expect("publish");
    }
    // Receive the first five but acknowledge only the first two, then crash.
    for i in 0..5 {
        let p = sub.next_publish().await.expect("delivered");
        assert_eq!(text(&p), format!("a{i}"));
        if i < 2 {
            sub.client.ack(&p).await.expect("ack");
        }
    }
    // Give the two PUBACKs time to leave before the socket is dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.crash().await;

    // Published while the subscriber is away: queued in its session.
    for i in 0..3 {
        publisher
            .client
            .publish(
                format!("{prefix}/key/d1/attrs"),
                QoS::AtLeastOnce,
                false,
                format!("b{i}"),
            )
            .await
            .expect("publish");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sub = connect(persistent(addr)).await;
    assert!(sub.connack.session_present, "session resumed");
    let mut got = Vec::new();
    while let Some(p) = sub.next_publish_within(Duration::from_secs(3)).await {
        sub.client.ack(&p).await.expect("ack");
        got.push(text(&p));
    }
    // Each message exactly once: the three unacked ones first, then the
    // three queued while offline, in publish order. rmqtt 0.24 resends the
    // unacked in-flight messages in *reverse* order (`transfer_session_state`
    // pops them off the end of a Vec), against MQTT's ordering rule for
    // resent PUBLISHes, so only their set is checked.
    println!("after reconnect: {got:?}");
    assert_eq!(got.len(), 6, "{got:?}");
    let mut unacked = got[..3].to_vec();
    unacked.sort();
    assert_eq!(unacked, ["a2", "a3", "a4"], "{got:?}");
    assert_eq!(got[3..], ["b0", "b1", "b2"], "{got:?}");
}

/// One publisher sends `n` QoS 1 messages as fast as it can; one subscriber
/// (through a share group, as Vigie does) must get them all.
pub async fn burst(addr: SocketAddr, prefix: &str, n: usize) {
    let mut sub = connect(options(addr, &format!("{prefix}vigie"))).await;
    sub.subscribe(
        &format!("$share/vigie/{prefix}application/+/device/+/event/+"),
        QoS::AtLeastOnce,
    )
    .await;
    let publisher = connect(options(addr, &format!("{prefix}chirpstack"))).await;

    let started = std::time::Instant::now();
    let client = publisher.client.clone();
    let prefix = prefix.to_owned();
    let publishing = tokio::spawn(async move {
        for i in 0..n {
            let topic = format!("{prefix}application/a/device/{}/event/up", i % 500);
            let payload = format!(r#"{{"n":{i},"object":{{"temperature":21.5,"humidity":40}}}}"#);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
        }
    });
    let mut received = 0;
    while received < n {
        match sub.next_publish_within(Duration::from_secs(30)).await {
            Some(_) => received += 1,
            None => break,
        }
    }
    let elapsed = started.elapsed();
    publishing.await.expect("publisher task");
    println!(
        "burst: {received}/{n} QoS 1 messages in {elapsed:.2?} ({:.0} msg/s)",
        received as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(received, n, "no message lost");
}

/// IoT Agent JSON topics start with `/`: their first level is empty, so the
/// share-group filter is `$share/vigie//+/+/attrs` (note the `//`).
pub async fn iot_agent_topics_through_a_share_group(addr: SocketAddr, prefix: &str) {
    // The prefix goes into the api key so the topic keeps its leading `/`.
    let apikey = format!("{}key", prefix.trim_end_matches('/'));
    let mut vigie = connect(options(addr, &format!("{prefix}vigie-iota"))).await;
    vigie.subscribe("$share/vigie//+/+/attrs", QoS::AtLeastOnce).await;
    let agent = connect(options(addr, &format!("{prefix}iot-agent"))).await;
    let topic = format!("/{apikey}/lamp-7/attrs");
    agent
        .client
        .publish(topic.clone(), QoS::AtLeastOnce, false, r#"{"on":true}"#)
        .await
        .expect("publish");
    let p = vigie.next_publish().await.expect("delivered through the share group");
    assert_eq!(p.topic.as_ref(), topic.as_bytes());
}
