//! The simulated city end to end: the simulator publishes over the embedded
//! broker, the twin follows, and injected faults show in the entities' state.

mod common;

use std::time::Duration;

use common::{TestServer, add_gateway};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigie_sim::{City, CityConfig, EquipmentKind, Fault, PublishOptions, Qos, Simulator};

#[tokio::test]
async fn the_twin_follows_the_simulated_city_and_shows_faults() {
    let mut password = String::new();
    let s = TestServer::with_embedded_broker_and(|config| {
        password = add_gateway(config, "test-city", &["/+/+/attrs", "application/+/device/+/event/+"]);
    })
    .await;
    let config = CityConfig::small(7);
    let city = City::generate(&config);
    let light = city.entity_id(EquipmentKind::Streetlight, 3).expect("a light");
    let controller = city
        .entity_id(EquipmentKind::TrafficLightController, 0)
        .expect("a controller");
    let vehicle = city.entity_id(EquipmentKind::Vehicle, 0).expect("a vehicle");
    let entities = city.entities().count();
    s.running.provision(city.devices()).await.expect("provision");
    s.running.upsert(city.entities().collect()).await.expect("upsert");
    assert_eq!(s.running.twin.len(), entities);

    let port = s.running.mqtt_addr.expect("embedded broker").port();
    let (faults, fault_rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(vigie_sim::publish(
        Simulator::new(city, 7, jiff::Timestamp::now()),
        PublishOptions {
            broker_url: format!("mqtt://127.0.0.1:{port}"),
            client_id: "test-city".into(),
            speed: 60.0,
            qos: Qos::AtLeastOnce,
            credentials: Some((
                "test-city".into(),
                vigie_core::credentials::Secret::from_configured(password),
            )),
        },
        fault_rx,
        stop.clone().cancelled_owned(),
    ));

    // Vehicles report every 5 simulated seconds: their observations arrive.
    s.wait_for_entity(vehicle.as_str(), |e| {
        e["location"]["observedAt"]
            .as_str()
            .is_some_and(|t| !t.starts_with("2026-01-01"))
    })
    .await;

    faults
        .send(Fault::LampFailure { light: light.clone() })
        .await
        .expect("inject");
    faults
        .send(Fault::ControllerFault {
            controller: controller.clone(),
        })
        .await
        .expect("inject");
    s.wait_for_entity(light.as_str(), |e| e["status"]["value"] == "defectiveLamp")
        .await;
    let c = s
        .wait_for_entity(controller.as_str(), |e| e.to_string().contains("fault"))
        .await;
    assert!(c["scope"].as_str().is_some_and(|sc| sc.ends_with("/traffic")), "{c}");

    let (_, letters) = s.get_json("/api/v1/dead-letters").await;
    assert_eq!(letters["total"], 0, "every simulated message is understood: {letters}");

    stop.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(10), publisher)
        .await
        .expect("the publisher stops")
        .expect("task")
        .expect("publish");
    assert!(stats.messages > 0);
    s.running.shutdown().await;
}
