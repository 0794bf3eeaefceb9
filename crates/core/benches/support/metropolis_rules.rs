//! A metropolis' 1,000 rules, as a city would write them: 40 per commune
//! (24 communes) for its lights, cabinets, traffic, cameras, bollards,
//! weather stations, waste and parking sensors, and 40 for the whole
//! metropolis (the fleet, metropolis-wide limits, silent equipment). Each
//! change therefore sees only the rules of its type in its commune plus the
//! metropolis-wide ones of its type: 12 for a street light.
//!
//! Shared by the rules engine's criterion bench (`vigie-core`) and the
//! end-to-end alarm latency bench (`vigie bench --only alarms`), so both
//! figures describe the same rule set.

/// One rule template: the equipment type, its business line, a slug, the
/// trigger (inline TOML), the CEL condition, the alarm type and severity.
/// `{k}` in the trigger is replaced by a per-commune variation (0 to 3):
/// communes tune some limits to their own network.
type Template = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const ON_CHANGE: &str = r#"{ type = "on-change" }"#;

/// Rules every commune writes for its own equipment (40).
#[rustfmt::skip]
const PER_COMMUNE: [Template; 40] = [
    // Street lights (8). Over-voltage is what the latency bench triggers.
    ("Streetlight", "lighting", "light-over-voltage", r#"{ type = "threshold", value = "voltage", above = 253.0, hysteresis = 5.0 }"#, "true", "over-voltage", "major"),
    ("Streetlight", "lighting", "light-under-voltage", r#"{ type = "threshold", value = "voltage", below = 207.0, hysteresis = 5.0, min_duration = "1m" }"#, "true", "under-voltage", "minor"),
    ("Streetlight", "lighting", "light-overconsumption", r#"{ type = "threshold", value = "powerConsumption", above = 15{k}.0, min_duration = "5m" }"#, "true", "overconsumption", "minor"),
    ("Streetlight", "lighting", "light-on-without-draw", ON_CHANGE, "powerState == 'on' && powerConsumption < 1.0", "no-draw", "major"),
    ("Streetlight", "lighting", "light-off-at-night", ON_CHANGE, "powerState == 'off' && night", "lamp-off-at-night", "major"),
    ("Streetlight", "lighting", "light-dim-out-of-range", ON_CHANGE, "illuminanceLevel > 100 || illuminanceLevel < 0", "bad-dim-level", "warning"),
    ("Streetlight", "lighting", "light-out-at-night", ON_CHANGE, "status == 'defectiveLamp' && night", "lamp-out-at-night", "major"),
    ("Streetlight", "lighting", "light-brownout", ON_CHANGE, "powerState == 'on' && voltage < 190.0", "brownout", "major"),
    // Lighting cabinets (6).
    ("StreetlightControlCabinet", "lighting", "cabinet-over-voltage", r#"{ type = "threshold", value = "voltageR", above = 253.0, hysteresis = 5.0 }"#, "true", "over-voltage", "major"),
    ("StreetlightControlCabinet", "lighting", "cabinet-under-voltage", r#"{ type = "threshold", value = "voltageR", below = 207.0, hysteresis = 5.0, min_duration = "1m" }"#, "true", "under-voltage", "minor"),
    ("StreetlightControlCabinet", "lighting", "cabinet-overload", r#"{ type = "threshold", value = "totalActivePower", above = 2{k}.0, min_duration = "10m" }"#, "true", "overload", "major"),
    ("StreetlightControlCabinet", "lighting", "cabinet-manual-mode", ON_CHANGE, "workingMode == 'manual'", "manual-mode", "minor"),
    ("StreetlightControlCabinet", "lighting", "cabinet-off-at-night", ON_CHANGE, "workingMode == 'off' && night", "cabinet-off-at-night", "major"),
    ("StreetlightControlCabinet", "lighting", "cabinet-no-load-at-night", ON_CHANGE, "night && totalActivePower < 0.1 && voltageR > 200.0", "no-load", "major"),
    // Traffic light controllers (5).
    ("TrafficLightController", "traffic", "controller-fault", ON_CHANGE, "deviceState.contains('fault')", "controller-fault", "critical"),
    ("TrafficLightController", "traffic", "controller-flashing", ON_CHANGE, "operatingMode == 'flashingAmber'", "flashing-amber", "major"),
    ("TrafficLightController", "traffic", "controller-long-cycle", r#"{ type = "threshold", value = "cycleTime", above = 12{k}.0, min_duration = "10m" }"#, "true", "long-cycle", "minor"),
    ("TrafficLightController", "traffic", "controller-bus-priority-storm", r#"{ type = "threshold", value = "busPriorityRequests", above = 50.0 }"#, "true", "bus-priority-storm", "minor"),
    ("TrafficLightController", "traffic", "controller-manual", ON_CHANGE, "operatingMode == 'manual'", "controller-manual", "minor"),
    // Counting loops (4).
    ("TrafficFlowObserved", "traffic", "loop-congestion", ON_CHANGE, "congested == true && hour >= 7 && hour <= 19", "congestion", "minor"),
    ("TrafficFlowObserved", "traffic", "loop-slow-traffic", r#"{ type = "threshold", value = "averageVehicleSpeed", below = 1{k}.0, min_duration = "10m" }"#, "true", "slow-traffic", "minor"),
    ("TrafficFlowObserved", "traffic", "loop-high-occupancy", r#"{ type = "threshold", value = "occupancy", above = 0.85, min_duration = "5m" }"#, "true", "high-occupancy", "minor"),
    ("TrafficFlowObserved", "traffic", "loop-no-count-by-day", ON_CHANGE, "intensity < 1 && hour >= 8 && hour <= 20", "loop-fault", "major"),
    // Cameras (3).
    ("Camera", "cctv", "camera-off", ON_CHANGE, "on == false", "camera-off", "major"),
    ("Camera", "cctv", "camera-fault", ON_CHANGE, "deviceState.contains('fault')", "camera-fault", "major"),
    ("Camera", "cctv", "camera-tampered", ON_CHANGE, "deviceState == 'tampered'", "tamper", "critical"),
    // Access bollards (3).
    ("AccessBollard", "access", "bollard-fault", ON_CHANGE, "deviceState.contains('fault')", "bollard-fault", "major"),
    ("AccessBollard", "access", "bollard-down-in-pedestrian-hours", ON_CHANGE, "position == 'lowered' && operatingMode == 'automatic' && hour >= 11 && hour < 19", "bollard-open", "major"),
    ("AccessBollard", "access", "bollard-manual", ON_CHANGE, "operatingMode == 'manual'", "bollard-manual", "minor"),
    // Weather stations (5).
    ("WeatherObserved", "environment", "weather-frost", r#"{ type = "threshold", value = "temperature", below = 0.5, hysteresis = 1.0, min_duration = "15m" }"#, "true", "frost", "major"),
    ("WeatherObserved", "environment", "weather-heat", r#"{ type = "threshold", value = "temperature", above = 3{k}.0, min_duration = "1h" }"#, "true", "heat-wave", "major"),
    ("WeatherObserved", "environment", "weather-high-wind", r#"{ type = "threshold", value = "windSpeed", above = 20.0, min_duration = "10m" }"#, "true", "high-wind", "major"),
    ("WeatherObserved", "environment", "weather-heavy-rain", r#"{ type = "threshold", value = "precipitation", above = 10.0 }"#, "true", "heavy-rain", "minor"),
    ("WeatherObserved", "environment", "weather-freezing-fog", ON_CHANGE, "relativeHumidity > 0.95 && temperature < 2.0", "freezing-fog", "minor"),
    // Waste containers (4).
    ("WasteContainer", "waste", "waste-full", r#"{ type = "threshold", value = "fillingLevel", above = 0.9, hysteresis = 0.1 }"#, "true", "container-full", "minor"),
    ("WasteContainer", "waste", "waste-nearly-full", r#"{ type = "threshold", value = "fillingLevel", above = 0.7{k}, min_duration = "6h" }"#, "true", "container-nearly-full", "warning"),
    ("WasteContainer", "waste", "waste-fire", r#"{ type = "threshold", value = "temperature", above = 60.0 }"#, "true", "container-fire", "critical"),
    ("WasteContainer", "waste", "waste-hot", r#"{ type = "threshold", value = "temperature", above = 45.0, min_duration = "10m" }"#, "true", "container-hot", "major"),
    // Parking sensors (2).
    ("ParkingSpot", "parking", "parking-sensor-unknown", ON_CHANGE, "status == 'unknown'", "sensor-unknown", "minor"),
    ("ParkingSpot", "parking", "parking-sensor-silent", r#"{ type = "absence", max_silence = "24h" }"#, "true", "parking-silent", "minor"),
];

/// Rules the metropolis writes once for all its communes (40).
#[rustfmt::skip]
const METROPOLIS_WIDE: [Template; 40] = [
    ("Streetlight", "lighting", "light-fault", ON_CHANGE, "status.startsWith('fault') || status == 'defectiveLamp'", "lamp-fault", "minor"),
    ("Streetlight", "lighting", "light-extreme-voltage", r#"{ type = "threshold", value = "voltage", above = 264.0, hysteresis = 5.0 }"#, "true", "extreme-voltage", "critical"),
    ("Streetlight", "lighting", "light-drawing-while-off", ON_CHANGE, "powerState == 'off' && powerConsumption > 5.0", "drawing-while-off", "major"),
    ("Streetlight", "lighting", "light-silent", r#"{ type = "absence", max_silence = "2h" }"#, "true", "silent-light", "minor"),
    ("StreetlightControlCabinet", "lighting", "cabinet-maintenance", ON_CHANGE, "workingMode == 'maintenance'", "cabinet-maintenance", "warning"),
    ("StreetlightControlCabinet", "lighting", "cabinet-extreme-voltage", r#"{ type = "threshold", value = "voltageR", above = 264.0, hysteresis = 5.0 }"#, "true", "extreme-voltage", "critical"),
    ("StreetlightControlCabinet", "lighting", "cabinet-phase-loss", ON_CHANGE, "voltageR < 100.0 && voltageR > 0.0", "phase-loss", "critical"),
    ("StreetlightControlCabinet", "lighting", "cabinet-silent", r#"{ type = "absence", max_silence = "1h" }"#, "true", "silent-cabinet", "major"),
    ("TrafficLightController", "traffic", "controller-silent", r#"{ type = "absence", max_silence = "15m" }"#, "true", "silent-controller", "major"),
    ("TrafficLightController", "traffic", "controller-off-in-service", ON_CHANGE, "operatingMode == 'off' && hour >= 6 && hour < 22", "controller-off", "critical"),
    ("TrafficLightController", "traffic", "controller-maintenance", ON_CHANGE, "deviceState == 'maintenance'", "controller-maintenance", "warning"),
    ("TrafficLightController", "traffic", "controller-very-long-cycle", r#"{ type = "threshold", value = "cycleTime", above = 180.0 }"#, "true", "very-long-cycle", "major"),
    ("TrafficFlowObserved", "traffic", "loop-silent", r#"{ type = "absence", max_silence = "1h" }"#, "true", "silent-loop", "minor"),
    ("TrafficFlowObserved", "traffic", "loop-saturation", r#"{ type = "threshold", value = "intensity", above = 3000.0, min_duration = "15m" }"#, "true", "saturation", "major"),
    ("TrafficFlowObserved", "traffic", "loop-night-congestion", ON_CHANGE, "congested == true && (hour >= 22 || hour < 5)", "night-congestion", "minor"),
    ("Camera", "cctv", "camera-silent", r#"{ type = "absence", max_silence = "10m" }"#, "true", "silent-camera", "major"),
    ("Camera", "cctv", "camera-recording-failure", ON_CHANGE, "deviceState == 'recordingFailure'", "recording-failure", "major"),
    ("Camera", "cctv", "camera-off-at-night", ON_CHANGE, "on == false && night", "camera-off-at-night", "critical"),
    ("AccessBollard", "access", "bollard-silent", r#"{ type = "absence", max_silence = "30m" }"#, "true", "silent-bollard", "major"),
    ("AccessBollard", "access", "bollard-blocked", ON_CHANGE, "deviceState == 'blocked'", "bollard-blocked", "major"),
    ("Vehicle", "fleet", "vehicle-speeding", r#"{ type = "threshold", value = "speed", above = 50.0, min_duration = "1m" }"#, "true", "speeding", "minor"),
    ("Vehicle", "fleet", "vehicle-excessive-speed", r#"{ type = "threshold", value = "speed", above = 90.0 }"#, "true", "excessive-speed", "critical"),
    ("Vehicle", "fleet", "vehicle-breakdown", ON_CHANGE, "serviceStatus == 'breakdown'", "breakdown", "critical"),
    ("Vehicle", "fleet", "vehicle-emergency", ON_CHANGE, "serviceStatus == 'emergency'", "vehicle-emergency", "critical"),
    ("Vehicle", "fleet", "vehicle-maintenance-due", r#"{ type = "threshold", value = "mileageFromOdometer", above = 300000.0 }"#, "true", "maintenance-due", "warning"),
    ("Vehicle", "fleet", "vehicle-silent", r#"{ type = "absence", max_silence = "15m" }"#, "true", "silent-vehicle", "minor"),
    ("Vehicle", "fleet", "vehicle-idle-by-day", ON_CHANGE, "serviceStatus == 'outOfService' && hour >= 6 && hour < 20", "vehicle-idle", "minor"),
    ("Vehicle", "fleet", "vehicle-stuck-on-route", r#"{ type = "threshold", value = "speed", below = 2.0, min_duration = "20m" }"#, "serviceStatus == 'onRoute'", "vehicle-stuck", "minor"),
    ("Vehicle", "fleet", "vehicle-bad-heading", ON_CHANGE, "heading < 0.0 || heading > 360.0", "bad-heading", "warning"),
    ("Vehicle", "fleet", "vehicle-moving-out-of-service", ON_CHANGE, "serviceStatus == 'outOfService' && speed > 10.0", "vehicle-moving", "major"),
    ("WeatherObserved", "environment", "weather-silent", r#"{ type = "absence", max_silence = "30m" }"#, "true", "silent-station", "minor"),
    ("WeatherObserved", "environment", "weather-storm", r#"{ type = "threshold", value = "windSpeed", above = 28.0 }"#, "true", "storm", "critical"),
    ("WeatherObserved", "environment", "weather-extreme-cold", r#"{ type = "threshold", value = "temperature", below = -10.0, hysteresis = 1.0 }"#, "true", "extreme-cold", "major"),
    ("WeatherObserved", "environment", "weather-flood-risk", r#"{ type = "threshold", value = "precipitation", above = 30.0 }"#, "true", "flood-risk", "critical"),
    ("WeatherObserved", "environment", "weather-low-pressure", r#"{ type = "threshold", value = "atmosphericPressure", below = 970.0, min_duration = "1h" }"#, "true", "low-pressure", "minor"),
    ("WasteContainer", "waste", "waste-silent", r#"{ type = "absence", max_silence = "48h" }"#, "true", "silent-container", "minor"),
    ("WasteContainer", "waste", "waste-overflowing", r#"{ type = "threshold", value = "fillingLevel", above = 0.98 }"#, "true", "overflowing", "major"),
    ("WasteContainer", "waste", "waste-extreme-heat", r#"{ type = "threshold", value = "temperature", above = 80.0 }"#, "true", "container-fire", "critical"),
    ("ParkingSpot", "parking", "parking-sensor-fault", ON_CHANGE, "status == 'faulty'", "sensor-fault", "minor"),
    ("ParkingSpot", "parking", "parking-metro-silent", r#"{ type = "absence", max_silence = "72h" }"#, "true", "parking-silent-long", "warning"),
];

/// The rules applying to a change of an `entity_type` in one commune.
pub fn applicable(entity_type: &str) -> usize {
    PER_COMMUNE
        .iter()
        .chain(&METROPOLIS_WIDE)
        .filter(|t| t.0 == entity_type)
        .count()
}

/// The rule file (TOML) for `communes`: 40 rules per commune and 40 for all.
pub fn metropolis_rules(communes: &[&str]) -> String {
    let mut text = String::new();
    let mut push = |id: String, communes: String, k: usize, t: &Template| {
        let (kind, line, _, trigger, condition, alarm_type, severity) = *t;
        let trigger = trigger.replace("{k}", &k.to_string());
        text.push_str(&format!(
            "[[rule]]\nid = \"{id}\"\nname = \"{id}\"\ncommunes = {communes}\n\
             applies_to = {{ types = [\"{kind}\"], lines = [\"{line}\"] }}\ntrigger = {trigger}\n\
             condition = \"{condition}\"\n\
             actions = [{{ action = \"raise-alarm\", alarm_type = \"{alarm_type}\", severity = \"{severity}\", \
             detail = \"{alarm_type} at {{id}}\" }}]\n\n"
        ));
    };
    for (c, commune) in communes.iter().enumerate() {
        for t in &PER_COMMUNE {
            push(format!("{commune}-{}", t.2), format!("[\"{commune}\"]"), c % 4, t);
        }
    }
    for t in &METROPOLIS_WIDE {
        push(format!("metropolis-{}", t.2), "\"all\"".into(), 0, t);
    }
    text
}
