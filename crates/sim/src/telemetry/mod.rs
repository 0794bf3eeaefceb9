//! Telemetry: the messages the city's devices send, on a simulated clock.
//! Pure: [`Simulator::advance`] fills a buffer; [`crate::publish`] does the I/O.

mod lorawan;
mod schedule;

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use vigie_core::entity::format_timestamp;

use crate::city::{City, EquipmentKind, FLEET, NodeIx};
use crate::faults::{Fault, FaultError, FaultKind};
use crate::solar;
pub use schedule::for_each_due;
use schedule::noise;

const MINUTE: i64 = 60_000;
const LIGHT_PERIOD: i64 = 10 * MINUTE;
const VEHICLE_PERIOD: i64 = 5_000;
const WASTE_PERIOD: i64 = 6 * 60 * MINUTE;
const LORAWAN_STATUS_PERIOD: i64 = 24 * 60 * MINUTE;
const PARKING_HEARTBEAT: i64 = 60 * MINUTE;

/// The delivery guarantee a message deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    /// Periodic telemetry: the next report supersedes a lost one.
    AtMostOnce,
    /// State changes and alarms: losing one hides a fault.
    AtLeastOnce,
}

/// One MQTT message a device publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos_hint: Qos,
}

#[derive(Debug, Clone)]
struct VehicleState {
    from: NodeIx,
    to: NodeIx,
    /// Metres driven from `from` towards `to`.
    progress_m: f64,
    speed_kmh: f64,
    odometer_km: f64,
    last_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct LorawanState {
    pub fcnt: u32,
    pub battery_pct: f64,
}

#[derive(Debug, Clone)]
struct ParkingState {
    occupied: bool,
    next_change_ms: i64,
    last_uplink_ms: i64,
    radio: LorawanState,
}

#[derive(Debug, Clone)]
struct WasteState {
    fill: f64,
    radio: LorawanState,
}

/// The city's devices in motion. Deterministic: same city, seed and calls,
/// same messages.
#[derive(Debug, Clone)]
pub struct Simulator {
    city: City,
    seed: u64,
    rng: ChaCha8Rng,
    now_ms: i64,
    failed_lamps: HashSet<usize>,
    /// Light levels set by command (0 to 1), overriding the clock.
    commanded_levels: HashMap<usize, f64>,
    cut_cabinets: HashSet<usize>,
    faulty_controllers: HashSet<usize>,
    offline_cameras: HashSet<usize>,
    silent: HashSet<(EquipmentKind, usize)>,
    cabinet_energy_kwh: Vec<f64>,
    vehicles: Vec<VehicleState>,
    parking: Vec<ParkingState>,
    waste: Vec<WasteState>,
    /// Event messages (fault reactions, bursts) to emit at the next advance.
    pending: Vec<(i64, Message)>,
}

impl Simulator {
    pub fn new(city: City, seed: u64, start: Timestamp) -> Self {
        let now_ms = start.as_millisecond();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let vehicles = city
            .vehicles
            .iter()
            .map(|v| {
                let grid = &city.communes[usize::from(v.commune)].streets;
                let to = grid.neighbours(v.home).next().unwrap_or(v.home);
                VehicleState {
                    from: v.home,
                    to,
                    progress_m: 0.0,
                    speed_kmh: 0.0,
                    odometer_km: rng.random_range(5_000.0..120_000.0),
                    last_ms: now_ms,
                }
            })
            .collect();
        let parking = (0..city.parking_spots.len())
            .map(|_| {
                let occupied = rng.random_bool(0.6);
                ParkingState {
                    occupied,
                    next_change_ms: now_ms + rng.random_range(0..90 * MINUTE),
                    last_uplink_ms: now_ms - rng.random_range(0..PARKING_HEARTBEAT),
                    radio: LorawanState {
                        fcnt: rng.random_range(0..5_000),
                        battery_pct: rng.random_range(60.0..100.0),
                    },
                }
            })
            .collect();
        let waste = city
            .waste
            .iter()
            .map(|_| WasteState {
                fill: rng.random_range(0.0..0.7),
                radio: LorawanState {
                    fcnt: rng.random_range(0..2_000),
                    battery_pct: rng.random_range(60.0..100.0),
                },
            })
            .collect();
        Self {
            cabinet_energy_kwh: vec![0.0; city.cabinets.len()],
            city,
            seed,
            rng,
            now_ms,
            failed_lamps: HashSet::new(),
            commanded_levels: HashMap::new(),
            cut_cabinets: HashSet::new(),
            faulty_controllers: HashSet::new(),
            offline_cameras: HashSet::new(),
            silent: HashSet::new(),
            vehicles,
            parking,
            waste,
            pending: Vec::new(),
        }
    }

    pub fn city(&self) -> &City {
        &self.city
    }

    /// The simulated clock.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.now_ms).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Moves the clock to `to`, appending the messages due in between, in time order.
    pub fn advance(&mut self, to: Timestamp, out: &mut Vec<Message>) {
        let (from, to) = (self.now_ms, to.as_millisecond());
        let mut due: Vec<(i64, Message)> = std::mem::take(&mut self.pending);
        if to > from {
            self.collect(from, to, &mut due);
            self.now_ms = to;
        }
        // Stable: within one instant, messages keep their production order.
        due.sort_by_key(|(t, _)| *t);
        out.extend(due.into_iter().map(|(_, m)| m));
    }

    fn collect(&mut self, from: i64, to: i64, due: &mut Vec<(i64, Message)>) {
        let counts: Vec<usize> = EquipmentKind::ALL.iter().map(|&k| self.city.count(k)).collect();
        let n = |k: EquipmentKind| counts[k as usize];
        for_each_due(LIGHT_PERIOD, n(EquipmentKind::Streetlight), from, to, |i, t| {
            if let Some(m) = self.light_message(i, t) {
                due.push((t, m));
            }
        });
        let mut cabinet_reports = Vec::new();
        for_each_due(
            LIGHT_PERIOD,
            n(EquipmentKind::StreetlightControlCabinet),
            from,
            to,
            |i, t| {
                cabinet_reports.push((i, t));
            },
        );
        for (i, t) in cabinet_reports {
            if let Some(m) = self.cabinet_message(i, t) {
                due.push((t, m));
            }
        }
        for_each_due(MINUTE, n(EquipmentKind::TrafficLightController), from, to, |i, t| {
            if let Some(m) = self.controller_message(i, t) {
                due.push((t, m));
            }
        });
        for_each_due(MINUTE, n(EquipmentKind::TrafficFlowObserved), from, to, |i, t| {
            if let Some(m) = self.loop_message(i, t) {
                due.push((t, m));
            }
        });
        for_each_due(MINUTE, n(EquipmentKind::Camera), from, to, |i, t| {
            if let Some(m) = self.camera_message(i, t) {
                due.push((t, m));
            }
        });
        for_each_due(MINUTE, n(EquipmentKind::AccessBollard), from, to, |i, t| {
            if let Some(m) = self.bollard_message(i, t) {
                due.push((t, m));
            }
        });
        for_each_due(LIGHT_PERIOD, n(EquipmentKind::WeatherObserved), from, to, |i, t| {
            if let Some(m) = self.weather_message(i, t) {
                due.push((t, m));
            }
        });
        let mut vehicle_reports = Vec::new();
        for_each_due(VEHICLE_PERIOD, n(EquipmentKind::Vehicle), from, to, |i, t| {
            vehicle_reports.push((i, t))
        });
        for (i, t) in vehicle_reports {
            if let Some(m) = self.vehicle_message(i, t) {
                due.push((t, m));
            }
        }
        let mut waste_reports = Vec::new();
        for_each_due(WASTE_PERIOD, n(EquipmentKind::WasteContainer), from, to, |i, t| {
            waste_reports.push((i, t))
        });
        for (i, t) in waste_reports {
            if let Some(m) = self.waste_uplink(i, t) {
                due.push((t, m));
            }
        }
        self.parking_events(from, to, due);
        let (spots, bins) = (n(EquipmentKind::ParkingSpot), n(EquipmentKind::WasteContainer));
        let mut status_reports = Vec::new();
        for_each_due(LORAWAN_STATUS_PERIOD, spots + bins, from, to, |i, t| {
            status_reports.push((i, t))
        });
        for (i, t) in status_reports {
            let m = if i < spots {
                self.lorawan_status(EquipmentKind::ParkingSpot, i, t)
            } else {
                self.lorawan_status(EquipmentKind::WasteContainer, i - spots, t)
            };
            if let Some(m) = m {
                due.push((t, m));
            }
        }
    }

    fn is_silent(&self, kind: EquipmentKind, ix: usize) -> bool {
        self.silent.contains(&(kind, ix))
    }

    // ---- IoT Agent JSON devices --------------------------------------------------

    fn iot_agent(&self, kind: EquipmentKind, ix: usize, t: i64, mut measures: Value, qos_hint: Qos) -> Option<Message> {
        let device_id = self.city.device_id(kind, ix)?;
        if let Value::Object(m) = &mut measures {
            m.insert("TimeInstant".into(), Value::String(timestamp(t)));
        }
        Some(Message {
            topic: format!("/{}/{device_id}/attrs", kind.business_line()),
            payload: serde_json::to_vec(&measures).ok()?,
            qos_hint,
        })
    }

    fn light_message(&self, ix: usize, t: i64) -> Option<Message> {
        let light = self.city.lights.get(ix)?;
        if self.is_silent(EquipmentKind::Streetlight, ix) || self.cut_cabinets.contains(&(light.cabinet as usize)) {
            return None;
        }
        let measures = self.city.light_measures(
            ix,
            t,
            self.failed_lamps.contains(&ix),
            self.seed,
            self.commanded_levels.get(&ix).copied(),
        );
        self.iot_agent(EquipmentKind::Streetlight, ix, t, measures, Qos::AtMostOnce)
    }

    fn cabinet_message(&mut self, ix: usize, t: i64) -> Option<Message> {
        if self.is_silent(EquipmentKind::StreetlightControlCabinet, ix) {
            return None;
        }
        let cut = self.cut_cabinets.contains(&ix);
        let power_kw = if cut {
            0.0
        } else {
            self.city
                .cabinet_lights(ix)
                .filter(|l| !self.failed_lamps.contains(l))
                .filter_map(|l| self.city.lights.get(l).map(|light| f64::from(light.rating_w)))
                .sum::<f64>()
                * light_level(t)
                / 1000.0
        };
        let energy = self.cabinet_energy_kwh.get_mut(ix)?;
        *energy += power_kw * LIGHT_PERIOD as f64 / 3_600_000.0;
        let measures = json!({
            "P": round(power_kw, 3),
            "E": round(*energy, 3),
            "U": if cut { 0.0 } else { round(230.0 + 3.0 * noise(self.seed, ix, t, 2), 1) },
            "wm": "automatic",
        });
        let qos = if cut { Qos::AtLeastOnce } else { Qos::AtMostOnce };
        self.iot_agent(EquipmentKind::StreetlightControlCabinet, ix, t, measures, qos)
    }

    fn controller_message(&self, ix: usize, t: i64) -> Option<Message> {
        let c = self.city.controllers.get(ix)?;
        if self.is_silent(EquipmentKind::TrafficLightController, ix) {
            return None;
        }
        let faulty = self.faulty_controllers.contains(&ix);
        let hour = solar::local_hour(t);
        let mode = if faulty || (c.night_flashing && hour < 5.0) {
            "flashingAmber"
        } else {
            "actuated"
        };
        let requests = if c.bus_priority && (6.0..21.0).contains(&hour) {
            ((noise(self.seed, ix, t, 3) + 1.0) * 1.2) as u32
        } else {
            0
        };
        let measures = json!({
            "st": if faulty { "fault" } else { "ok" },
            "m": mode,
            "cy": c.cycle_s,
            "bp": requests,
        });
        let qos = if faulty { Qos::AtLeastOnce } else { Qos::AtMostOnce };
        self.iot_agent(EquipmentKind::TrafficLightController, ix, t, measures, qos)
    }

    fn loop_message(&self, ix: usize, t: i64) -> Option<Message> {
        let l = self.city.loops.get(ix)?;
        let c = self.city.controllers.get(l.controller as usize)?;
        if self.is_silent(EquipmentKind::TrafficFlowObserved, ix) {
            return None;
        }
        let load = traffic_profile(solar::local_hour(t));
        let expected = f64::from(c.peak_flow_per_min) * load;
        let intensity = (expected * (1.0 + 0.15 * noise(self.seed, ix, t, 4))).round().max(0.0);
        let occupancy = (load * 0.55 + 0.04 * noise(self.seed, ix, t, 5)).clamp(0.0, 0.95);
        let speed = if intensity == 0.0 {
            0.0
        } else {
            50.0 * (1.0 - 0.75 * occupancy * occupancy)
        };
        let (from, to) = (timestamp(t - MINUTE), timestamp(t));
        let measures = json!({
            "q": intensity,
            "o": round(occupancy, 3),
            "v": round(speed, 1),
            "cg": occupancy > 0.5,
            "d": format!("{from}/{to}"),
            "df": from,
            "dt": to,
        });
        self.iot_agent(EquipmentKind::TrafficFlowObserved, ix, t, measures, Qos::AtMostOnce)
    }

    fn camera_message(&self, ix: usize, t: i64) -> Option<Message> {
        if self.is_silent(EquipmentKind::Camera, ix) {
            return None;
        }
        let offline = self.offline_cameras.contains(&ix);
        let measures = json!({"on": !offline, "st": if offline { "noSignal" } else { "ok" }});
        let qos = if offline { Qos::AtLeastOnce } else { Qos::AtMostOnce };
        self.iot_agent(EquipmentKind::Camera, ix, t, measures, qos)
    }

    fn bollard_message(&self, ix: usize, t: i64) -> Option<Message> {
        let b = self.city.bollards.get(ix)?;
        if self.is_silent(EquipmentKind::AccessBollard, ix) {
            return None;
        }
        let hour = solar::local_hour(t);
        let open = b.delivery_window && (6.0..11.0).contains(&hour);
        let rate = if open { 1.5 } else { 0.1 };
        let passages = ((noise(self.seed, ix, t, 6) + 1.0) * rate) as u32;
        let measures = json!({
            "pos": if open { "down" } else { "up" },
            "m": "automatic",
            "st": "ok",
            "n": passages,
        });
        self.iot_agent(EquipmentKind::AccessBollard, ix, t, measures, Qos::AtMostOnce)
    }

    fn weather_message(&self, ix: usize, t: i64) -> Option<Message> {
        if self.is_silent(EquipmentKind::WeatherObserved, ix) {
            return None;
        }
        let tau = std::f64::consts::TAU;
        let day_of_year = (t.rem_euclid(365 * 86_400_000 + 21_600_000)) as f64 / 86_400_000.0;
        let hour = solar::local_hour(t);
        let seasonal = 11.0 - 9.5 * (tau * (day_of_year - 20.0) / 365.0).cos();
        let diurnal = (tau * (hour - 15.0) / 24.0).cos();
        let n = |salt| noise(self.seed, ix, t, salt);
        let station = noise(self.seed, ix, 0, 7) * 0.6;
        let (rise, set) = solar::sun_times(t);
        let daylight = if t > rise && t < set {
            (std::f64::consts::PI * (t - rise) as f64 / (set - rise) as f64).sin()
        } else {
            0.0
        };
        let raining = n(12) > 0.8;
        let measures = json!({
            "t": round(seasonal + 4.5 * diurnal + station + 0.3 * n(8), 1),
            "rh": round((0.72 - 0.18 * diurnal + 0.05 * n(9) + if raining { 0.15 } else { 0.0 }).clamp(0.2, 1.0), 2),
            "ap": round(1015.0 + 8.0 * (t as f64 / 259_200_000.0).sin() + 0.3 * n(10), 1),
            "ws": round(3.5 + 2.5 * n(11), 1),
            "wd": round((200.0 + 90.0 * (t as f64 / 86_400_000.0).sin() + 10.0 * n(13)).rem_euclid(360.0), 0),
            "r": if raining { round(0.2 + (n(14) + 1.0), 1) } else { 0.0 },
            "lux": round(90_000.0 * daylight * if raining { 0.3 } else { 1.0 }, 0),
            "d": timestamp(t),
        });
        self.iot_agent(EquipmentKind::WeatherObserved, ix, t, measures, Qos::AtMostOnce)
    }

    fn vehicle_message(&mut self, ix: usize, t: i64) -> Option<Message> {
        let spec = self.city.vehicles.get(ix)?;
        let class = FLEET.get(usize::from(spec.class))?;
        let grid = &self.city.communes.get(usize::from(spec.commune))?.streets;
        let state = self.vehicles.get_mut(ix)?;
        let hour = solar::local_hour(t);
        let on_duty = (6.0..20.0).contains(&hour);
        let dt_h = (t - state.last_ms).max(0) as f64 / 3_600_000.0;
        state.last_ms = t;
        if on_duty {
            // Short stops now and then; otherwise drive at the class's pace.
            let stopped = self.rng.random_bool(0.08);
            state.speed_kmh = if stopped {
                0.0
            } else {
                (class.working_kmh * self.rng.random_range(0.7..1.3)).max(3.0)
            };
        } else {
            state.speed_kmh = 0.0;
        }
        let mut to_drive = state.speed_kmh * dt_h * 1000.0;
        state.odometer_km += to_drive / 1000.0;
        for _ in 0..64 {
            let (Some(a), Some(b)) = (grid.node(state.from), grid.node(state.to)) else {
                break;
            };
            let len = a.distance(b);
            if state.progress_m + to_drive < len {
                state.progress_m += to_drive;
                break;
            }
            to_drive -= len - state.progress_m;
            // At the crossing, turn anywhere but back (unless it is a dead end).
            let options: Vec<NodeIx> = grid.neighbours(state.to).filter(|&n| n != state.from).collect();
            let next = if options.is_empty() {
                state.from
            } else {
                options[self.rng.random_range(0..options.len())]
            };
            state.from = state.to;
            state.to = next;
            state.progress_m = 0.0;
        }
        let (a, b) = (grid.node(state.from)?, grid.node(state.to)?);
        let len = a.distance(b).max(0.01);
        let at = a.lerp(b, (state.progress_m / len).min(1.0)).to_lonlat();
        let measures = json!({
            "l": {"type": "Point", "coordinates": [at.lon, at.lat]},
            "s": round(state.speed_kmh, 1),
            "h": round(a.heading_to(b), 0).rem_euclid(360.0),
            "ss": if on_duty { "onRoute" } else { "parked" },
            "km": round(state.odometer_km, 1),
        });
        if self.is_silent(EquipmentKind::Vehicle, ix) {
            return None;
        }
        self.iot_agent(EquipmentKind::Vehicle, ix, t, measures, Qos::AtMostOnce)
    }

    // ---- commands ----------------------------------------------------------------

    /// A command to a device, as Vigie publishes it on
    /// `/{apikey}/{device_id}/cmd` (`{"dim": 40}`, `{"switch": "off"}`):
    /// lights and cabinets (for all their lights) obey, then answer on
    /// `/cmdexe` and report their new state at once. Anything else is
    /// answered with an error, as a real device would.
    pub fn command(&mut self, topic: &str, payload: &[u8]) -> Vec<Message> {
        let Some((apikey, device_id)) = topic
            .strip_prefix('/')
            .and_then(|t| t.strip_suffix("/cmd"))
            .and_then(|t| t.split_once('/'))
        else {
            return Vec::new();
        };
        let Some((kind, ix)) = self.city.locate_device(device_id) else {
            return Vec::new();
        };
        let Ok(Value::Object(commands)) = serde_json::from_slice::<Value>(payload) else {
            return Vec::new();
        };
        let lights: Vec<usize> = match kind {
            EquipmentKind::Streetlight => vec![ix],
            EquipmentKind::StreetlightControlCabinet => self.city.cabinet_lights(ix).collect(),
            _ => Vec::new(),
        };
        let now = self.now_ms;
        let mut answers = serde_json::Map::new();
        for (name, value) in commands {
            let level = match (name.as_str(), &value) {
                ("switch", Value::String(s)) if s == "on" => Some(1.0),
                ("switch", Value::String(s)) if s == "off" => Some(0.0),
                ("dim", v) => v.as_f64().filter(|p| (0.0..=100.0).contains(p)).map(|p| p / 100.0),
                _ => None,
            };
            let answer = match level {
                Some(level) if !lights.is_empty() => {
                    for &light in &lights {
                        self.commanded_levels.insert(light, level);
                    }
                    "OK".to_owned()
                }
                _ => format!("ERROR: {} does not support {name} = {value}", kind.entity_type()),
            };
            answers.insert(name, Value::String(answer));
        }
        let mut out = vec![Message {
            topic: format!("/{apikey}/{device_id}/cmdexe"),
            payload: Value::Object(answers).to_string().into_bytes(),
            qos_hint: Qos::AtLeastOnce,
        }];
        out.extend(lights.iter().filter_map(|&light| {
            let mut m = self.light_message(light, now)?;
            m.qos_hint = Qos::AtLeastOnce;
            Some(m)
        }));
        out
    }

    // ---- faults ------------------------------------------------------------------

    /// Injects a fault now; the devices concerned react at the next advance.
    pub fn inject(&mut self, fault: Fault) -> Result<(), FaultError> {
        let id = fault.entity().clone();
        let (kind, ix) = self
            .city
            .locate(&id)
            .ok_or_else(|| FaultError::UnknownEntity(id.clone()))?;
        if let Some(expected) = fault.kind().target().filter(|&e| e != kind) {
            return Err(FaultError::WrongKind {
                fault: fault.kind(),
                entity: id,
                expected: expected.entity_type(),
                actual: kind.entity_type(),
            });
        }
        let now = self.now_ms;
        match fault {
            Fault::LampFailure { .. } => {
                self.failed_lamps.insert(ix);
                self.push_event(now, self.light_message(ix, now));
            }
            Fault::CabinetPowerCut { .. } => {
                self.cut_cabinets.insert(ix);
                let m = self.cabinet_message(ix, now);
                self.push_event(now, m);
            }
            Fault::CabinetRestore { .. } => {
                if self.cut_cabinets.remove(&ix) {
                    let m = self.cabinet_message(ix, now);
                    self.push_event(now, m);
                    for light in self.city.cabinet_lights(ix) {
                        self.push_event(now, self.light_message(light, now));
                    }
                }
            }
            Fault::ControllerFault { .. } => {
                self.faulty_controllers.insert(ix);
                self.push_event(now, self.controller_message(ix, now));
            }
            Fault::CameraOffline { .. } => {
                self.offline_cameras.insert(ix);
                self.push_event(now, self.camera_message(ix, now));
            }
            Fault::SilentDevice { .. } => {
                if kind.device_prefix().is_none() {
                    return Err(FaultError::NoDevice(id));
                }
                self.silent.insert((kind, ix));
            }
            Fault::Repair { .. } => {
                let repaired = match kind {
                    EquipmentKind::Streetlight => self.failed_lamps.remove(&ix),
                    EquipmentKind::TrafficLightController => self.faulty_controllers.remove(&ix),
                    EquipmentKind::Camera => self.offline_cameras.remove(&ix),
                    _ => false,
                };
                let revived = self.silent.remove(&(kind, ix));
                if repaired || revived {
                    let m = match kind {
                        EquipmentKind::Streetlight => self.light_message(ix, now),
                        EquipmentKind::TrafficLightController => self.controller_message(ix, now),
                        EquipmentKind::Camera => self.camera_message(ix, now),
                        _ => None,
                    };
                    self.push_event(now, m);
                }
            }
        }
        Ok(())
    }

    fn push_event(&mut self, at: i64, message: Option<Message>) {
        if let Some(mut m) = message {
            m.qos_hint = Qos::AtLeastOnce;
            self.pending.push((at, m));
        }
    }

    /// A plausible target for a fault of this kind: a random healthy entity
    /// (or, for restores and repairs, a random faulty one). `None` if there is none.
    pub fn random_fault_target(&mut self, kind: FaultKind) -> Option<Fault> {
        let pick = |set: &HashSet<usize>, rng: &mut ChaCha8Rng| {
            let mut v: Vec<usize> = set.iter().copied().collect();
            v.sort_unstable();
            (!v.is_empty()).then(|| v[rng.random_range(0..v.len())])
        };
        let (target_kind, ix) = match kind {
            FaultKind::CabinetRestore => (
                EquipmentKind::StreetlightControlCabinet,
                pick(&self.cut_cabinets, &mut self.rng)?,
            ),
            FaultKind::Repair => {
                let mut faulty: Vec<(EquipmentKind, usize)> = self.silent.iter().copied().collect();
                faulty.extend(self.failed_lamps.iter().map(|&i| (EquipmentKind::Streetlight, i)));
                faulty.extend(
                    self.faulty_controllers
                        .iter()
                        .map(|&i| (EquipmentKind::TrafficLightController, i)),
                );
                faulty.extend(self.offline_cameras.iter().map(|&i| (EquipmentKind::Camera, i)));
                faulty.sort_unstable();
                faulty.dedup();
                if faulty.is_empty() {
                    return None;
                }
                faulty[self.rng.random_range(0..faulty.len())]
            }
            FaultKind::SilentDevice => {
                let kinds: Vec<EquipmentKind> = EquipmentKind::ALL
                    .into_iter()
                    .filter(|k| k.device_prefix().is_some() && self.city.count(*k) > 0)
                    .collect();
                let k = *kinds.get(self.rng.random_range(0..kinds.len().max(1)))?;
                (k, self.rng.random_range(0..self.city.count(k)))
            }
            other => {
                let k = other.target()?;
                let n = self.city.count(k);
                if n == 0 {
                    return None;
                }
                (k, self.rng.random_range(0..n))
            }
        };
        Some(kind.on(self.city.entity_id(target_kind, ix)?))
    }
}

impl City {
    /// One status message from every light at once, as after a city-wide
    /// power restoration: the 34,000-message burst benchmarks replay.
    pub fn all_lights_messages(&self, at: Timestamp) -> Vec<Message> {
        let t = at.as_millisecond();
        (0..self.lights.len())
            .filter_map(|ix| {
                let device_id = self.device_id(EquipmentKind::Streetlight, ix)?;
                let mut measures = self.light_measures(ix, t, false, self.config.seed, None);
                if let Value::Object(m) = &mut measures {
                    m.insert("TimeInstant".into(), Value::String(timestamp(t)));
                }
                Some(Message {
                    topic: format!("/lighting/{device_id}/attrs"),
                    payload: serde_json::to_vec(&measures).ok()?,
                    qos_hint: Qos::AtLeastOnce,
                })
            })
            .collect()
    }

    /// A light's measures at `t`: switched by the astronomical clock, dimmed
    /// to half from 22:30 to 05:30, drawing its rating when lit.
    fn light_measures(&self, ix: usize, t: i64, lamp_failed: bool, seed: u64, commanded: Option<f64>) -> Value {
        let rating = self.lights.get(ix).map_or(0.0, |l| f64::from(l.rating_w));
        let level = commanded.unwrap_or_else(|| light_level(t));
        let state = match level {
            l if l <= 0.0 => "off",
            l if l < 1.0 => "low",
            _ => "on",
        };
        // A lit LED draws its rating times the dimming level; the driver alone ~0.5 W.
        let power = if lamp_failed || level <= 0.0 {
            0.5
        } else {
            rating * level * (1.0 + 0.02 * noise(seed, ix, t, 1))
        };
        json!({
            "st": if lamp_failed { "defectiveLamp" } else { "ok" },
            "ps": state,
            "il": level,
            "p": round(power, 1),
            "v": round(230.0 + 3.0 * noise(seed, ix, t, 0), 1),
        })
    }
}

/// The commanded light level: 0 by day, 1 in the evening and morning, 0.5 in
/// the dead of night (Dijon dims its LEDs overnight).
fn light_level(t: i64) -> f64 {
    if !solar::is_night(t) {
        return 0.0;
    }
    let hour = solar::local_hour(t);
    if !(5.5..22.5).contains(&hour) { 0.5 } else { 1.0 }
}

/// Share of the evening peak's traffic at a local hour: low at night,
/// morning and evening peaks, a plateau in between.
fn traffic_profile(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
    let plateau = if (7.0..21.0).contains(&hour) { 0.45 } else { 0.06 };
    (plateau + 0.5 * bump(8.0, 1.0) + 0.55 * bump(17.75, 1.3) + 0.1 * bump(12.5, 1.0)).min(1.0)
}

pub(crate) fn timestamp(ms: i64) -> String {
    format_timestamp(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub(crate) fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}
