//! Device provisioning: one device per telemetry-sending entity, IoT Agent
//! JSON (one apikey per business line) or LoRaWAN through ChirpStack. The
//! measure tables here are the single source of truth for what telemetry
//! sends and how Vigie maps it onto the entities.

use vigie_core::{AttributeMapping, Device, Transport};

use super::{City, EquipmentKind};

/// The ChirpStack application of the parking occupancy sensors.
pub const LORAWAN_PARKING_APPLICATION: &str = "6f2c8e1a-3b5d-4c7e-9a10-210000000001";
/// The ChirpStack application of the waste fill-level sensors.
pub const LORAWAN_WASTE_APPLICATION: &str = "6f2c8e1a-3b5d-4c7e-9a10-210000000002";

/// One measure a device sends: its short name in the payload, the attribute
/// it updates, the IoT Agent type hint and the UN/CEFACT unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub object_id: &'static str,
    pub attribute: &'static str,
    pub type_hint: &'static str,
    pub unit_code: Option<&'static str>,
}

const fn m(
    object_id: &'static str,
    attribute: &'static str,
    type_hint: &'static str,
    unit_code: Option<&'static str>,
) -> Measure {
    Measure {
        object_id,
        attribute,
        type_hint,
        unit_code,
    }
}

const LIGHT: &[Measure] = &[
    m("st", "status", "Text", None),
    m("ps", "powerState", "Text", None),
    m("il", "illuminanceLevel", "Number", None),
    m("p", "powerConsumption", "Number", Some("WTT")),
    m("v", "voltage", "Number", Some("VLT")),
];
const CABINET: &[Measure] = &[
    m("P", "totalActivePower", "Number", Some("KWT")),
    m("E", "energyConsumed", "Number", Some("KWH")),
    m("U", "voltageR", "Number", Some("VLT")),
    m("wm", "workingMode", "Text", None),
];
const CONTROLLER: &[Measure] = &[
    m("st", "deviceState", "Text", None),
    m("m", "operatingMode", "Text", None),
    m("cy", "cycleTime", "Number", Some("SEC")),
    m("bp", "busPriorityRequests", "Number", None),
];
const COUNTING_LOOP: &[Measure] = &[
    m("q", "intensity", "Number", None),
    m("o", "occupancy", "Number", None),
    m("v", "averageVehicleSpeed", "Number", Some("KMH")),
    m("cg", "congested", "Boolean", None),
    m("d", "dateObserved", "Text", None),
    m("df", "dateObservedFrom", "DateTime", None),
    m("dt", "dateObservedTo", "DateTime", None),
];
const CAMERA: &[Measure] = &[m("on", "on", "Boolean", None), m("st", "deviceState", "Text", None)];
const BOLLARD: &[Measure] = &[
    m("pos", "position", "Text", None),
    m("m", "operatingMode", "Text", None),
    m("st", "deviceState", "Text", None),
    m("n", "passages", "Number", None),
];
const VEHICLE: &[Measure] = &[
    m("l", "location", "geo:json", None),
    m("s", "speed", "Number", Some("KMH")),
    m("h", "heading", "Number", Some("DD")),
    m("ss", "serviceStatus", "Text", None),
    m("km", "mileageFromOdometer", "Number", Some("KMT")),
];
const WEATHER: &[Measure] = &[
    m("t", "temperature", "Number", Some("CEL")),
    m("rh", "relativeHumidity", "Number", None),
    m("ap", "atmosphericPressure", "Number", Some("A97")),
    m("ws", "windSpeed", "Number", Some("MTS")),
    m("wd", "windDirection", "Number", Some("DD")),
    m("r", "precipitation", "Number", Some("MMT")),
    m("lux", "illuminance", "Number", Some("LUX")),
    m("d", "dateObserved", "DateTime", None),
];
/// Keys of the `object` the ChirpStack codec decodes a parking uplink into.
const PARKING: &[Measure] = &[m("state", "status", "Text", None)];
/// Keys of the `object` the ChirpStack codec decodes a waste uplink into.
const WASTE: &[Measure] = &[
    m("fill", "fillingLevel", "Number", None),
    m("temp", "temperature", "Number", Some("CEL")),
];

/// The measures devices of a kind send (empty for kinds no device feeds).
pub fn measures(kind: EquipmentKind) -> &'static [Measure] {
    match kind {
        EquipmentKind::Streetlight => LIGHT,
        EquipmentKind::StreetlightControlCabinet => CABINET,
        EquipmentKind::TrafficLightController => CONTROLLER,
        EquipmentKind::TrafficFlowObserved => COUNTING_LOOP,
        EquipmentKind::Camera => CAMERA,
        EquipmentKind::AccessBollard => BOLLARD,
        EquipmentKind::Vehicle => VEHICLE,
        EquipmentKind::WeatherObserved => WEATHER,
        EquipmentKind::ParkingSpot => PARKING,
        EquipmentKind::WasteContainer => WASTE,
        EquipmentKind::StreetlightGroup | EquipmentKind::OnStreetParking => &[],
    }
}

impl City {
    /// Provisioning of every device: one per telemetry-sending entity.
    pub fn devices(&self) -> Vec<Device> {
        EquipmentKind::ALL
            .into_iter()
            .flat_map(|kind| (0..self.count(kind)).filter_map(move |ix| self.device(kind, ix)))
            .collect()
    }

    /// The device feeding one entity, if a device feeds it.
    pub fn device(&self, kind: EquipmentKind, ix: usize) -> Option<Device> {
        let device_id = self.device_id(kind, ix)?;
        let transport = match kind {
            EquipmentKind::ParkingSpot => Transport::Lorawan {
                dev_eui: format!("{:016x}", self.parking_spots.get(ix)?.dev_eui),
            },
            EquipmentKind::WasteContainer => Transport::Lorawan {
                dev_eui: format!("{:016x}", self.waste.get(ix)?.dev_eui),
            },
            _ => Transport::IotAgentJson {
                apikey: kind.business_line().to_owned(),
            },
        };
        Some(Device {
            device_id,
            transport,
            entity_name: self.entity_id(kind, ix)?,
            entity_type: kind.entity_type().to_owned(),
            scope: self.scope_of(kind, ix),
            attributes: measures(kind)
                .iter()
                // Identity mappings add nothing; the codec already speaks SDM.
                .filter(|m| m.object_id != m.attribute || m.unit_code.is_some())
                .map(|m| AttributeMapping {
                    object_id: m.object_id.to_owned(),
                    name: m.attribute.to_owned(),
                    type_hint: Some(m.type_hint.to_owned()),
                    unit_code: m.unit_code.map(str::to_owned),
                })
                .collect(),
            mqtt_password_hash: None,
        })
    }
}
