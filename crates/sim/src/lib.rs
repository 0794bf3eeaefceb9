//! `vigie-sim`: a simulated Dijon-scale city for demos, tests and benchmarks.
//!
//! - [`City::generate`] builds the city from a seed: 24 communes, their
//!   streets, and the equipment (street lights, cabinets, traffic lights,
//!   cameras, bollards, vehicles, weather stations, LoRaWAN sensors), as an
//!   initial NGSI-LD twin ([`City::entities`]) and device provisioning
//!   ([`City::devices`]).
//! - [`Simulator`] produces the telemetry those devices would send, on a
//!   simulated clock, with faults on demand ([`Fault`]). It is pure: no I/O.
//! - [`publish`] is the only I/O: it plays the simulator onto an MQTT broker.

mod city;
mod geo;
mod solar;

pub use city::{
    City, CityConfig, Commune, CommuneSpec, DIJON_METROPOLE, EquipmentKind, LORAWAN_PARKING_APPLICATION,
    LORAWAN_WASTE_APPLICATION, Measure, measures,
};
pub use geo::LonLat;
mod faults;
mod publish;
mod telemetry;

pub use faults::{Fault, FaultError, FaultKind, FaultParseError, FaultRequest};
pub use publish::{BrokerAddress, PublishOptions, PublishStats, SimError, publish};
pub use telemetry::{Message, Qos, Simulator};
