//! The equipment the simulated city holds, in compact form: the twin's JSON
//! is built on demand from these, so a 34,000-light city stays a few MB.

use std::ops::Range;

use crate::geo::Xy;

use super::streets::NodeIx;

/// Every kind of entity the simulated city has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EquipmentKind {
    Streetlight,
    StreetlightControlCabinet,
    StreetlightGroup,
    TrafficLightController,
    TrafficFlowObserved,
    Camera,
    AccessBollard,
    Vehicle,
    WeatherObserved,
    OnStreetParking,
    ParkingSpot,
    WasteContainer,
}

impl EquipmentKind {
    pub const ALL: [Self; 12] = [
        Self::Streetlight,
        Self::StreetlightControlCabinet,
        Self::StreetlightGroup,
        Self::TrafficLightController,
        Self::TrafficFlowObserved,
        Self::Camera,
        Self::AccessBollard,
        Self::Vehicle,
        Self::WeatherObserved,
        Self::OnStreetParking,
        Self::ParkingSpot,
        Self::WasteContainer,
    ];

    /// The NGSI-LD entity type: the Smart Data Model's name, or Vigie's own
    /// for the two kinds no model covers.
    pub fn entity_type(self) -> &'static str {
        match self {
            Self::Streetlight => "Streetlight",
            Self::StreetlightControlCabinet => "StreetlightControlCabinet",
            Self::StreetlightGroup => "StreetlightGroup",
            Self::TrafficLightController => "TrafficLightController",
            Self::TrafficFlowObserved => "TrafficFlowObserved",
            Self::Camera => "Camera",
            Self::AccessBollard => "AccessBollard",
            Self::Vehicle => "Vehicle",
            Self::WeatherObserved => "WeatherObserved",
            Self::OnStreetParking => "OnStreetParking",
            Self::ParkingSpot => "ParkingSpot",
            Self::WasteContainer => "WasteContainer",
        }
    }

    pub fn from_entity_type(t: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.entity_type() == t)
    }

    /// The business line that owns this kind of equipment.
    pub fn business_line(self) -> &'static str {
        match self {
            Self::Streetlight | Self::StreetlightControlCabinet | Self::StreetlightGroup => "lighting",
            Self::TrafficLightController | Self::TrafficFlowObserved => "traffic",
            Self::Camera => "cctv",
            Self::AccessBollard => "access",
            Self::Vehicle => "fleet",
            Self::WeatherObserved => "environment",
            Self::OnStreetParking | Self::ParkingSpot => "parking",
            Self::WasteContainer => "waste",
        }
    }

    /// Digits of the zero-padded local id (`urn:ngsi-ld:Streetlight:dijon:00042`).
    pub fn id_width(self) -> usize {
        if self == Self::Streetlight { 5 } else { 4 }
    }

    /// The prefix of the device ids of this kind; `None` for entities no
    /// device feeds (groups and parking sites are derived from their members).
    pub fn device_prefix(self) -> Option<&'static str> {
        Some(match self {
            Self::Streetlight => "sl",
            Self::StreetlightControlCabinet => "cab",
            Self::TrafficLightController => "tlc",
            Self::TrafficFlowObserved => "loop",
            Self::Camera => "cam",
            Self::AccessBollard => "bol",
            Self::Vehicle => "veh",
            Self::WeatherObserved => "wx",
            Self::ParkingSpot => "ps",
            Self::WasteContainer => "wc",
            Self::StreetlightGroup | Self::OnStreetParking => return None,
        })
    }
}

/// Where a piece of equipment is: its commune, its number there, its position
/// and its postal address.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub commune: u16,
    /// 1-based number within the commune and the kind.
    pub local: u32,
    pub at: Xy,
    pub street: u32,
    pub house_number: u32,
    /// The crossing street, for equipment at a junction.
    pub cross_street: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LightLocation {
    Road,
    Sidewalk,
    PedestrianPath,
    Park,
}

impl LightLocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Road => "road",
            Self::Sidewalk => "sidewalk",
            Self::PedestrianPath => "pedestrianPath",
            Self::Park => "park",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Light {
    pub site: Site,
    pub cabinet: u32,
    pub group: u32,
    /// LED lantern rating, W.
    pub rating_w: u16,
    /// Lantern height, decimetres.
    pub height_dm: u16,
    pub location: LightLocation,
    /// Days after 2017-01-01 the LED lantern was installed (renovation 2017-2021).
    pub installed_day: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cabinet {
    pub site: Site,
    pub lights: Range<u32>,
    pub groups: Range<u32>,
    pub installed_day: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LightGroup {
    pub site: Site,
    pub cabinet: u32,
    pub lights: Range<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    pub site: Site,
    pub bus_priority: bool,
    /// Switches to flashing amber at night, as many French junctions do.
    pub night_flashing: bool,
    pub cycle_s: u16,
    /// Vehicles per minute its busiest approach carries at the evening peak.
    pub peak_flow_per_min: f32,
}

/// The counting loop of a controller's main approach (one per controller).
#[derive(Debug, Clone, PartialEq)]
pub struct CountingLoop {
    pub site: Site,
    pub controller: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    pub site: Site,
    pub camera_type: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bollard {
    pub site: Site,
    /// Lowered for deliveries in the morning (pedestrian zones).
    pub delivery_window: bool,
}

/// A class of municipal vehicle and how it drives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetClass {
    pub label: &'static str,
    pub vehicle_type: &'static str,
    pub service: &'static str,
    /// Fraction of the fleet.
    pub share: f64,
    /// Typical speed when working, km/h.
    pub working_kmh: f64,
}

/// Dijon's 205 vehicles, roughly: street cleaning, winter service, crews' vans.
pub const FLEET: [FleetClass; 6] = [
    FleetClass {
        label: "Balayeuse",
        vehicle_type: "sweepingMachine",
        service: "streetCleaning",
        share: 0.18,
        working_kmh: 10.0,
    },
    FleetClass {
        label: "Saleuse",
        vehicle_type: "lorry",
        service: "maintenance",
        share: 0.12,
        working_kmh: 30.0,
    },
    FleetClass {
        label: "Benne",
        vehicle_type: "compactor",
        service: "garbageCollection",
        share: 0.06,
        working_kmh: 20.0,
    },
    FleetClass {
        label: "Fourgon éclairage",
        vehicle_type: "van",
        service: "streetLighting",
        share: 0.14,
        working_kmh: 35.0,
    },
    FleetClass {
        label: "Fourgon",
        vehicle_type: "van",
        service: "maintenance",
        share: 0.38,
        working_kmh: 35.0,
    },
    FleetClass {
        label: "Espaces verts",
        vehicle_type: "van",
        service: "parksAndGardens",
        share: 0.12,
        working_kmh: 30.0,
    },
];

#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    pub commune: u16,
    pub local: u32,
    pub home: NodeIx,
    pub class: u8,
    pub plate: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeatherStation {
    pub site: Site,
}

/// A row of on-street spaces along one street section (an `OnStreetParking`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParkingSite {
    pub site: Site,
    pub spots: Range<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParkingSpot {
    pub site: Site,
    pub parking_site: u32,
    pub dev_eui: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WasteContainer {
    pub site: Site,
    pub waste_kind: &'static str,
    pub underground: bool,
    pub capacity_l: u16,
    /// How much of the container fills per day, 0..1.
    pub fill_per_day: f32,
    pub dev_eui: u64,
}

/// The waste streams sorted in the metropolis' voluntary drop-off points.
pub const WASTE_KINDS: [&str; 4] = ["inorganic", "glass", "paper", "plastic"];
