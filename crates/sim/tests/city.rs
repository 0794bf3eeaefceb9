//! The simulated city and its telemetry, end to end through vigie-core's decoders.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use vigie_core::decode::{Topic, decode_chirpstack, decode_iot_agent, parse_topic};
use vigie_core::{Device, Observation, Transport};
use vigie_sim::{City, CityConfig, EquipmentKind, Fault, FaultKind, FaultRequest, Message, Simulator};

fn night() -> Timestamp {
    "2026-01-15T20:00:00Z".parse().unwrap()
}

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// Decodes a message as the server would, returning the observations.
fn decode(devices: &HashMap<String, Device>, by_eui: &HashMap<String, Device>, m: &Message) -> Vec<Observation> {
    match parse_topic(&m.topic).unwrap_or_else(|e| panic!("{}: {e}", m.topic)) {
        Topic::IotAgentAttrs { apikey, device_id } => {
            let d = &devices[device_id];
            assert_eq!(d.transport, Transport::IotAgentJson { apikey: apikey.into() });
            decode_iot_agent(d, &m.payload, night()).unwrap()
        }
        Topic::ChirpStackEvent { dev_eui, event, .. } => {
            let d = &by_eui[dev_eui];
            decode_chirpstack(d, dev_eui, event, &m.payload, night()).unwrap()
        }
        other => panic!("unexpected topic {other:?}"),
    }
}

fn index(city: &City) -> (HashMap<String, Device>, HashMap<String, Device>) {
    let mut by_id = HashMap::new();
    let mut by_eui = HashMap::new();
    for d in city.devices() {
        let d = d.validate().unwrap();
        if let Transport::Lorawan { dev_eui } = &d.transport {
            by_eui.insert(dev_eui.clone(), d.clone());
        }
        assert!(by_id.insert(d.device_id.clone(), d).is_none(), "duplicate device id");
    }
    (by_id, by_eui)
}

#[test]
fn same_seed_same_city_other_seed_other_city() {
    let a = City::generate(&CityConfig::small(7));
    let b = City::generate(&CityConfig::small(7));
    assert_eq!(a, b);
    let json = |c: &City| {
        c.entities()
            .map(|e| serde_json::to_string(&e).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(json(&a), json(&b));
    let c = City::generate(&CityConfig::small(8));
    assert_ne!(json(&a), json(&c));
}

#[test]
fn default_city_is_dijon_scale() {
    let started = std::time::Instant::now();
    let city = City::generate(&CityConfig::default());
    eprintln!("generated in {:?}", started.elapsed());
    assert_eq!(city.communes().len(), 24);
    let n = |k| city.count(k);
    assert_eq!(n(EquipmentKind::Streetlight), 34_000);
    assert!(
        (690..=760).contains(&n(EquipmentKind::StreetlightControlCabinet)),
        "{}",
        n(EquipmentKind::StreetlightControlCabinet)
    );
    assert_eq!(n(EquipmentKind::TrafficLightController), 250);
    assert_eq!(n(EquipmentKind::TrafficFlowObserved), 250);
    assert_eq!(n(EquipmentKind::Camera), 150);
    assert_eq!(n(EquipmentKind::AccessBollard), 100);
    assert_eq!(n(EquipmentKind::Vehicle), 205);
    assert_eq!(n(EquipmentKind::WeatherObserved), 20);
    assert_eq!(n(EquipmentKind::ParkingSpot), 400);
    assert_eq!(n(EquipmentKind::WasteContainer), 600);
    for kind in EquipmentKind::ALL {
        eprintln!("{:>28}: {}", kind.entity_type(), n(kind));
    }
    // Dijon has the most lights; every light hangs on a cabinet of ≤ 48.
    let dijon = city
        .entities()
        .filter(|e| e.entity_type == "Streetlight" && e.id.as_str().contains(":dijon:"))
        .count();
    assert!(dijon > 15_000, "{dijon}");
    for c in 0..n(EquipmentKind::StreetlightControlCabinet) {
        assert!(city.cabinet_lights(c).len() <= 48);
    }
    // Every id resolves back to its entity.
    for e in city.entities().step_by(97) {
        let (kind, ix) = city.locate(&e.id).unwrap();
        assert_eq!(city.entity_id(kind, ix).as_ref(), Some(&e.id));
        assert!(e.scope.is_some() && e.point().is_some() || e.entity_type == "Vehicle");
    }
}

#[test]
fn every_message_decodes_onto_its_entity() {
    let city = City::generate(&CityConfig::small(3));
    let (devices, by_eui) = index(&city);
    let entity_types: HashMap<String, String> = city
        .entities()
        .map(|e| (e.id.to_string(), e.entity_type.clone()))
        .collect();
    let mut sim = Simulator::new(city, 1, night());
    let mut out = Vec::new();
    sim.advance(night() + SignedDuration::from_hours(25), &mut out);
    let mut seen_kinds = std::collections::BTreeSet::new();
    for m in &out {
        let obs = decode(&devices, &by_eui, m);
        assert!(!obs.is_empty(), "{}", m.topic);
        for o in obs {
            let t = &entity_types[o.entity_id.as_str()];
            seen_kinds.insert(t.clone());
        }
    }
    assert_eq!(seen_kinds.len(), 10, "{seen_kinds:?}");
}

#[test]
fn each_light_reports_once_per_ten_minutes() {
    let city = City::generate(&CityConfig::small(3));
    let lights = city.count(EquipmentKind::Streetlight);
    let mut sim = Simulator::new(city, 1, night());
    let mut out = Vec::new();
    sim.advance(night() + minutes(3), &mut out);
    out.clear();
    sim.advance(night() + minutes(13), &mut out);
    let light_msgs: Vec<&Message> = out.iter().filter(|m| m.topic.starts_with("/lighting/sl-")).collect();
    assert_eq!(light_msgs.len(), lights);
    let distinct: std::collections::HashSet<&str> = light_msgs.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(distinct.len(), lights);
    // At night, lit; the payload says so.
    let v: serde_json::Value = serde_json::from_slice(&light_msgs[0].payload).unwrap();
    assert_eq!(v["ps"], "on");
}

#[test]
fn a_cabinet_power_cut_silences_its_lights_and_restore_bursts() {
    let city = City::generate(&CityConfig::small(3));
    let cabinet = city.entity_id(EquipmentKind::StreetlightControlCabinet, 5).unwrap();
    let its_lights: std::collections::HashSet<String> = city
        .cabinet_lights(5)
        .map(|l| {
            format!(
                "/lighting/{}/attrs",
                city.device_id(EquipmentKind::Streetlight, l).unwrap()
            )
        })
        .collect();
    let total_lights = city.count(EquipmentKind::Streetlight);
    let mut sim = Simulator::new(city, 1, night());
    sim.inject(Fault::CabinetPowerCut {
        cabinet: cabinet.clone(),
    })
    .unwrap();
    let mut out = Vec::new();
    sim.advance(night() + minutes(10), &mut out);
    let lights: Vec<&Message> = out.iter().filter(|m| m.topic.starts_with("/lighting/sl-")).collect();
    assert_eq!(lights.len(), total_lights - its_lights.len());
    assert!(lights.iter().all(|m| !its_lights.contains(&m.topic)));
    out.clear();
    sim.inject(Fault::CabinetRestore { cabinet }).unwrap();
    sim.advance(night() + minutes(10) + SignedDuration::from_millis(1), &mut out);
    let burst: std::collections::HashSet<&str> = out
        .iter()
        .filter(|m| m.topic.starts_with("/lighting/sl-"))
        .map(|m| m.topic.as_str())
        .collect();
    assert_eq!(burst.len(), its_lights.len());
    assert!(its_lights.iter().all(|t| burst.contains(t.as_str())));
}

#[test]
fn faults_target_the_right_kind_and_parse_from_the_cli() {
    let city = City::generate(&CityConfig::small(3));
    let mut sim = Simulator::new(city, 1, night());
    for kind in [
        FaultKind::LampFailure,
        FaultKind::ControllerFault,
        FaultKind::CameraOffline,
        FaultKind::SilentDevice,
    ] {
        let fault = sim.random_fault_target(kind).unwrap();
        sim.inject(fault).unwrap();
    }
    let camera = sim.city().entity_id(EquipmentKind::Camera, 0).unwrap();
    assert!(sim.inject(Fault::LampFailure { light: camera }).is_err());
    assert!(matches!(
        "repair".parse::<FaultRequest>(),
        Ok(FaultRequest::Random(FaultKind::Repair))
    ));
    assert!(sim.random_fault_target(FaultKind::Repair).is_some());
}

#[test]
fn the_all_lights_burst_has_one_message_per_light() {
    let city = City::generate(&CityConfig::small(3));
    let (devices, by_eui) = index(&city);
    let burst = city.all_lights_messages(night());
    assert_eq!(burst.len(), city.count(EquipmentKind::Streetlight));
    assert!(
        decode(&devices, &by_eui, &burst[0])
            .iter()
            .any(|o| o.attribute == "powerState")
    );
}
