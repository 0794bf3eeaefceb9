//! The same scenarios against an external broker (mosquitto 2 in Vigie's
//! deployments). Ignored by default; `scripts/mosquitto-check.sh` starts a
//! mosquitto on a free port and runs them with `VIGIE_TEST_MQTT_ADDR` set.

mod common;

use std::net::SocketAddr;

use common::scenarios;

fn external_broker() -> (SocketAddr, String) {
    let addr = std::env::var("VIGIE_TEST_MQTT_ADDR")
        .expect("VIGIE_TEST_MQTT_ADDR=host:port of the external broker")
        .parse()
        .expect("VIGIE_TEST_MQTT_ADDR is an ip:port");
    // Unique ids and topics: the external broker outlives a test run.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (addr, format!("t{nanos}/"))
}

#[tokio::test]
#[ignore = "needs an external broker: scripts/mosquitto-check.sh"]
async fn external_shared_subscription_splits() {
    let (addr, prefix) = external_broker();
    scenarios::shared_subscription_splits(addr, &prefix).await;
}

#[tokio::test]
#[ignore = "needs an external broker: scripts/mosquitto-check.sh"]
async fn external_persistent_session_redelivery() {
    let (addr, prefix) = external_broker();
    scenarios::persistent_session_redelivery(addr, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an external broker: scripts/mosquitto-check.sh"]
async fn external_burst_of_34000_qos1_messages() {
    let (addr, prefix) = external_broker();
    scenarios::burst(addr, &prefix, 34_000).await;
}

#[tokio::test]
#[ignore = "needs an external broker: scripts/mosquitto-check.sh"]
async fn external_iot_agent_topics_through_a_share_group() {
    let (addr, prefix) = external_broker();
    scenarios::iot_agent_topics_through_a_share_group(addr, &prefix).await;
}
