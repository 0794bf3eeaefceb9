//! The embedded broker seen from real MQTT clients (rumqttc, plain TCP).
//! Every test runs its own broker on port 0, in parallel with the others.

mod common;

use std::time::Duration;

use common::{TIMEOUT, connect, options, scenarios, start_broker, text};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
use vigie_broker::{BrokerConfig, BrokerError, EmbeddedBroker};

#[tokio::test]
async fn port_zero_reports_the_real_port_and_qos1_flows_end_to_end() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    assert_ne!(addr.port(), 0);

    let mut sub = connect(options(addr, "sub")).await;
    assert_eq!(sub.connack.code, ConnectReturnCode::Success);
    let props = sub.connack.properties.clone().expect("v5 CONNACK has properties");
    // Absent means "available" in MQTT 5; 0 would mean unsupported.
    assert_ne!(props.shared_subscription_available, Some(0), "{props:?}");
    assert_ne!(props.retain_available, Some(0), "{props:?}");
    sub.subscribe("city/+/attrs", QoS::AtLeastOnce).await;

    let publisher = connect(options(addr, "pub")).await;
    publisher
        .client
        .publish("city/lamp-1/attrs", QoS::AtLeastOnce, false, "on")
        .await
        .expect("publish");

    let p = sub.next_publish().await.expect("message delivered");
    assert_eq!(p.topic.as_ref(), b"city/lamp-1/attrs");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(text(&p), "on");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_1_and_5_share_the_listener() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let mut sub = connect(options(addr, "v5-sub")).await;
    sub.subscribe("/key/dev/attrs", QoS::AtLeastOnce).await;

    let mut v3_options = rumqttc::MqttOptions::new("v3-pub", addr.ip().to_string(), addr.port());
    v3_options.set_keep_alive(Duration::from_secs(30));
    let (v3, mut v3_loop) = rumqttc::AsyncClient::new(v3_options, 10);
    v3.publish("/key/dev/attrs", rumqttc::QoS::AtLeastOnce, false, "t|21")
        .await
        .expect("publish");
    let acked = tokio::time::timeout(TIMEOUT, async {
        loop {
            match v3_loop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(acked, Ok(true), "MQTT 3.1.1 publish acknowledged");

    let p = sub.next_publish().await.expect("v3 publish reaches v5 subscriber");
    assert_eq!(text(&p), "t|21");
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_splits_messages_without_duplicates() {
    let broker = start_broker().await;
    scenarios::shared_subscription_splits(broker.local_addr(), "").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn iot_agent_topics_through_a_share_group() {
    let broker = start_broker().await;
    scenarios::iot_agent_topics_through_a_share_group(broker.local_addr(), "").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_skips_a_disconnected_member() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let filter = "$share/vigie/sensors/#";
    let mut alive = connect(options(addr, "alive")).await;
    alive.subscribe(filter, QoS::AtLeastOnce).await;
    let mut gone = connect(options(addr, "gone")).await;
    gone.subscribe(filter, QoS::AtLeastOnce).await;
    gone.disconnect().await;
    // Let the broker notice the closed socket and drop the clean session.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let publisher = connect(options(addr, "pub")).await;
    for i in 0..10 {
        publisher
            .client
            .publish("sensors/t", QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("publish");
    }
    for i in 0..10 {
        let p = alive.next_publish().await.unwrap_or_else(|| panic!("message {i} lost"));
        assert_eq!(text(&p), i.to_string());
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_message_reaches_a_late_subscriber() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let publisher = connect(options(addr, "pub")).await;
    publisher
        .client
        .publish("city/lamp-2/state", QoS::AtLeastOnce, true, "off")
        .await
        .expect("publish");
    // Let the broker store it before anybody subscribes.
    let mut probe = connect(options(addr, "probe")).await;
    let mut stored = false;
    for _ in 0..50 {
        probe.subscribe("city/+/state", QoS::AtLeastOnce).await;
        if let Some(p) = probe.next_publish_within(Duration::from_millis(200)).await {
            assert!(p.retain);
            assert_eq!(text(&p), "off");
            stored = true;
            break;
        }
    }
    assert!(stored, "retained message delivered on subscribe");
    broker.shutdown().await;
}

#[tokio::test]
async fn unacked_qos1_is_redelivered_to_a_persistent_session() {
    let broker = start_broker().await;
    scenarios::persistent_session_redelivery(broker.local_addr(), "").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn brokers_in_one_process_are_isolated() {
    let one = start_broker().await;
    let two = start_broker().await;
    assert_ne!(one.local_addr(), two.local_addr());

    // Same client id and topic on both: neither sees the other's traffic.
    let mut sub_one = connect(options(one.local_addr(), "same-id")).await;
    let mut sub_two = connect(options(two.local_addr(), "same-id")).await;
    sub_one.subscribe("t", QoS::AtLeastOnce).await;
    sub_two.subscribe("t", QoS::AtLeastOnce).await;
    let pub_two = connect(options(two.local_addr(), "pub")).await;
    pub_two
        .client
        .publish("t", QoS::AtLeastOnce, true, "for two")
        .await
        .expect("publish");

    assert_eq!(
        sub_two.next_publish().await.map(|p| text(&p)).as_deref(),
        Some("for two")
    );
    assert!(sub_one.next_publish_within(Duration::from_millis(500)).await.is_none());

    // Retained state is per broker too.
    let mut late_one = connect(options(one.local_addr(), "late")).await;
    late_one.subscribe("t", QoS::AtLeastOnce).await;
    assert!(late_one.next_publish_within(Duration::from_millis(500)).await.is_none());

    one.shutdown().await;
    // The other broker keeps working after its neighbour stopped.
    pub_two
        .client
        .publish("t", QoS::AtLeastOnce, false, "still here")
        .await
        .expect("publish");
    assert_eq!(
        sub_two.next_publish().await.map(|p| text(&p)).as_deref(),
        Some("still here")
    );
    two.shutdown().await;
}

#[tokio::test]
async fn binding_a_used_port_is_a_typed_error() {
    let first = start_broker().await;
    let addr = first.local_addr();
    let err = EmbeddedBroker::start(BrokerConfig {
        listen: addr,
        ..BrokerConfig::default()
    })
    .await
    .expect_err("port already taken");
    match &err {
        BrokerError::Bind { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.starts_with(&format!("cannot bind {addr}: ")), "{message}");
    first.shutdown().await;
}

#[tokio::test]
async fn invalid_settings_are_rejected() {
    let err = EmbeddedBroker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        max_inflight: 0,
        ..BrokerConfig::default()
    })
    .await
    .expect_err("max_inflight 0 is invalid");
    assert!(
        matches!(
            err,
            BrokerError::InvalidConfig {
                setting: "max_inflight",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_disconnects_clients_and_releases_the_port() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let mut client = connect(options(addr, "c1")).await;
    client.subscribe("t", QoS::AtLeastOnce).await;
    let mut persistent = options(addr, "c2");
    persistent.set_clean_start(false).set_session_expiry_interval(Some(300));
    let offline = connect(persistent).await;
    offline.crash().await; // leaves an offline session behind

    tokio::time::timeout(TIMEOUT, broker.shutdown())
        .await
        .expect("shutdown returns promptly");
    assert!(client.closed().await.is_some(), "client told or cut off");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens any more"
    );

    // The same port can be bound again right away.
    let restarted = EmbeddedBroker::start(BrokerConfig {
        listen: addr,
        ..BrokerConfig::default()
    })
    .await
    .expect("old port reusable after shutdown");
    assert_eq!(restarted.local_addr(), addr);
    restarted.shutdown().await;
}

#[tokio::test]
async fn shutdown_leaves_no_connection_task_behind() {
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    let broker = start_broker().await;
    let mut client = connect(options(broker.local_addr(), "c")).await;
    client.subscribe("t", QoS::AtLeastOnce).await;
    broker.shutdown().await;
    assert!(client.closed().await.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // rmqtt's handshake task-queue runner cannot be stopped through its API:
    // one idle task per stopped broker is expected, nothing more.
    assert!(
        tasks.num_alive_tasks() <= before + 1,
        "{} tasks left",
        tasks.num_alive_tasks() - before
    );
}

/// `cargo test --release -p vigie-broker -- --ignored --nocapture burst`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test; run in release to measure"]
async fn burst_of_34000_qos1_messages_is_not_lost() {
    let broker = start_broker().await;
    scenarios::burst(broker.local_addr(), "", 34_000).await;
    broker.shutdown().await;
}
