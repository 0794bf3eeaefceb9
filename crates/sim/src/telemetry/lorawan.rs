//! LoRaWAN sensors as ChirpStack v4's MQTT integration publishes them:
//! `application/{id}/device/{devEui}/event/up` and `.../event/status`.

use base64::Engine as _;
use rand::Rng;
use serde_json::{Value, json};

use super::{LorawanState, MINUTE, Message, PARKING_HEARTBEAT, Qos, Simulator, noise, round, timestamp};
use crate::city::{EquipmentKind, LORAWAN_PARKING_APPLICATION, LORAWAN_WASTE_APPLICATION};
use crate::geo::Xy;
use crate::solar;

/// ChirpStack's default tenant id.
const TENANT_ID: &str = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242";
const PARKING_PROFILE: &str = "8a6b0c52-1f4e-4d3a-9b7c-210000000101";
const WASTE_PROFILE: &str = "8a6b0c52-1f4e-4d3a-9b7c-210000000102";

/// The metropolis' LoRaWAN gateways: on public buildings, roughly a grid.
fn gateways() -> impl Iterator<Item = (String, Xy)> {
    (0..16).map(|k| {
        let (i, j) = (k % 4, k / 4);
        let at = Xy::new(-9_000.0 + 6_000.0 * f64::from(i), -9_000.0 + 6_000.0 * f64::from(j));
        (format!("0016c001f1{:06x}", 0x2100 + k), at)
    })
}

impl Simulator {
    /// Parking sensors report on every change and hourly otherwise.
    pub(super) fn parking_events(&mut self, from: i64, to: i64, due: &mut Vec<(i64, Message)>) {
        for ix in 0..self.parking.len() {
            loop {
                let state = &self.parking[ix];
                let heartbeat = state.last_uplink_ms + PARKING_HEARTBEAT;
                let t = state.next_change_ms.min(heartbeat).max(from + 1);
                if t > to {
                    break;
                }
                if state.next_change_ms <= heartbeat {
                    let occupied = !state.occupied;
                    // Day: short stays, quick turnover; night: long stays.
                    let day = (7.0..20.0).contains(&solar::local_hour(t));
                    let mean_min = match (occupied, day) {
                        (true, true) => 75.0,
                        (false, true) => 25.0,
                        (true, false) => 480.0,
                        (false, false) => 180.0,
                    };
                    let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
                    let dwell = (-u.ln() * mean_min * MINUTE as f64) as i64;
                    let state = &mut self.parking[ix];
                    state.occupied = occupied;
                    state.next_change_ms = t + dwell.max(MINUTE);
                }
                self.parking[ix].last_uplink_ms = t;
                let occupied = self.parking[ix].occupied;
                let object = json!({"state": if occupied { "occupied" } else { "free" }});
                let data = [u8::from(occupied)];
                if let Some(m) = self.uplink(EquipmentKind::ParkingSpot, ix, t, object, &data) {
                    due.push((t, m));
                }
            }
        }
    }

    /// Waste sensors measure the fill level a few times a day.
    pub(super) fn waste_uplink(&mut self, ix: usize, t: i64) -> Option<Message> {
        let spec = self.city.waste.get(ix)?;
        let per_report = f64::from(spec.fill_per_day) / 4.0;
        let grown = self.waste.get(ix)?.fill + per_report * (1.0 + 0.3 * noise(self.seed, ix, t, 20));
        // Full containers get collected before the next report.
        let fill = if grown >= 0.9 {
            self.rng.random_range(0.0..0.08)
        } else {
            grown.clamp(0.0, 1.0)
        };
        self.waste.get_mut(ix)?.fill = fill;
        let temp = round(12.0 + 6.0 * noise(self.seed, ix, t, 21), 1);
        let object = json!({"fill": round(fill, 2), "temp": temp});
        let data = [(fill * 100.0).round() as u8, (temp * 2.0).round() as i8 as u8];
        self.uplink(EquipmentKind::WasteContainer, ix, t, object, &data)
    }

    /// The daily device-status answer: battery and link margin.
    pub(super) fn lorawan_status(&mut self, kind: EquipmentKind, ix: usize, t: i64) -> Option<Message> {
        if self.is_silent(kind, ix) {
            return None;
        }
        let radio = self.radio(kind, ix)?;
        radio.battery_pct = (radio.battery_pct - 0.02).max(0.0);
        let battery = round(radio.battery_pct, 1);
        let mut event = self.event_header(kind, ix, t)?;
        event.insert(
            "margin".into(),
            json!(((noise(self.seed, ix, t, 22) + 1.0) * 8.0).round()),
        );
        event.insert("batteryLevel".into(), json!(battery));
        self.chirpstack_message(kind, ix, "status", Value::Object(event), Qos::AtMostOnce)
    }

    fn radio(&mut self, kind: EquipmentKind, ix: usize) -> Option<&mut LorawanState> {
        match kind {
            EquipmentKind::ParkingSpot => self.parking.get_mut(ix).map(|s| &mut s.radio),
            EquipmentKind::WasteContainer => self.waste.get_mut(ix).map(|s| &mut s.radio),
            _ => None,
        }
    }

    fn uplink(&mut self, kind: EquipmentKind, ix: usize, t: i64, object: Value, data: &[u8]) -> Option<Message> {
        if self.is_silent(kind, ix) {
            return None;
        }
        let radio = self.radio(kind, ix)?;
        radio.fcnt = radio.fcnt.wrapping_add(1);
        let fcnt = radio.fcnt;
        let at = match kind {
            EquipmentKind::ParkingSpot => self.city.parking_spots.get(ix)?.site.at,
            _ => self.city.waste.get(ix)?.site.at,
        };
        // The two or three nearest gateways hear it; path loss grows with distance.
        let mut heard: Vec<(String, f64)> = gateways().map(|(id, g)| (id, g.distance(at))).collect();
        heard.sort_by(|a, b| a.1.total_cmp(&b.1));
        let hearing = 2 + usize::from(noise(self.seed, ix, t, 23) > 0.0);
        let rx_info: Vec<Value> = heard
            .into_iter()
            .take(hearing)
            .enumerate()
            .map(|(k, (gateway_id, d))| {
                let rssi = (-60.0 - 28.0 * (d.max(50.0) / 50.0).log10() + 3.0 * noise(self.seed, ix, t, 24 + k as u64))
                    .clamp(-125.0, -50.0)
                    .round();
                let snr = round(((rssi + 118.0) / 3.5).clamp(-15.0, 12.0), 1);
                json!({
                    "gatewayId": gateway_id,
                    "uplinkId": (noise(self.seed, ix, t, 30 + k as u64).abs() * 65_535.0) as u32,
                    "time": timestamp(t),
                    "rssi": rssi,
                    "snr": snr,
                    "channel": k,
                    "location": {},
                    "crcStatus": "CRC_OK",
                })
            })
            .collect();
        let mut event = self.event_header(kind, ix, t)?;
        let dev_addr = format!("{:08x}", 0x2600_0000 | (fcnt ^ ix as u32) & 0x00ff_ffff);
        event.insert("devAddr".into(), json!(dev_addr));
        event.insert("adr".into(), json!(true));
        event.insert("dr".into(), json!(5));
        event.insert("fCnt".into(), json!(fcnt));
        event.insert("fPort".into(), json!(1));
        event.insert(
            "data".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(data)),
        );
        event.insert("object".into(), object);
        event.insert("rxInfo".into(), Value::Array(rx_info));
        event.insert(
            "txInfo".into(),
            json!({"frequency": 868_100_000, "modulation": {"lora": {"bandwidth": 125_000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}),
        );
        self.chirpstack_message(kind, ix, "up", Value::Object(event), Qos::AtMostOnce)
    }

    fn event_header(&mut self, kind: EquipmentKind, ix: usize, t: i64) -> Option<serde_json::Map<String, Value>> {
        let device = self.city.device(kind, ix)?;
        let vigie_core::Transport::Lorawan { dev_eui } = &device.transport else {
            return None;
        };
        let (application_id, application_name, profile_id, profile_name) = match kind {
            EquipmentKind::ParkingSpot => (
                LORAWAN_PARKING_APPLICATION,
                "stationnement",
                PARKING_PROFILE,
                "Capteur de place",
            ),
            _ => (
                LORAWAN_WASTE_APPLICATION,
                "dechets",
                WASTE_PROFILE,
                "Capteur de remplissage",
            ),
        };
        let commune = device.scope.as_ref().map_or("", |s| s.commune.as_str());
        let dedup: u128 = self.rng.random();
        let mut m = serde_json::Map::new();
        m.insert("deduplicationId".into(), json!(uuid_v4(dedup)));
        m.insert("time".into(), json!(timestamp(t)));
        m.insert(
            "deviceInfo".into(),
            json!({
                "tenantId": TENANT_ID,
                "tenantName": "Dijon Métropole",
                "applicationId": application_id,
                "applicationName": application_name,
                "deviceProfileId": profile_id,
                "deviceProfileName": profile_name,
                "deviceName": device.device_id,
                "devEui": dev_eui,
                "tags": {"commune": commune},
            }),
        );
        Some(m)
    }

    fn chirpstack_message(
        &self,
        kind: EquipmentKind,
        ix: usize,
        event: &str,
        body: Value,
        qos_hint: Qos,
    ) -> Option<Message> {
        let device = self.city.device(kind, ix)?;
        let vigie_core::Transport::Lorawan { dev_eui } = &device.transport else {
            return None;
        };
        let application = match kind {
            EquipmentKind::ParkingSpot => LORAWAN_PARKING_APPLICATION,
            _ => LORAWAN_WASTE_APPLICATION,
        };
        Some(Message {
            topic: format!("application/{application}/device/{dev_eui}/event/{event}"),
            payload: serde_json::to_vec(&body).ok()?,
            qos_hint,
        })
    }
}

/// Formats 128 random bits as a version-4 UUID.
fn uuid_v4(bits: u128) -> String {
    let b = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (b >> 96) as u32,
        (b >> 80) as u16,
        (b >> 64) as u16,
        (b >> 48) as u16,
        b & 0xffff_ffff_ffff
    )
}
