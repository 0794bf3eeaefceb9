//! Vigie's pure core: the domain model of the city's equipment, the NGSI-LD
//! payloads and query language, geo predicates and the device-side payload
//! decoders. Nothing here does I/O, so all of it is unit-tested and fuzzed.

pub mod access;
pub mod account;
pub mod acl;
pub mod alarm;
pub mod attributes;
pub mod audit;
pub mod command;
pub mod credentials;
pub mod decode;
pub mod device;
pub mod entity;
pub mod ngsi;
pub mod rules;
pub mod scope;
pub mod status;

pub use access::{Action, Principal, Role, ScopeGrant};
pub use attributes::Attributes;
pub use device::{AttributeMapping, Device, DeviceError, DeviceSpec, Transport};
pub use entity::{Attribute, AttributeKind, Entity, EntityId, EntityIdError, Observation, is_language_tag};
pub use scope::{BusinessLine, CommuneId, Scope, ScopeError};

/// A point in time, UTC. Every timestamp Vigie stores or exchanges is one.
pub type Timestamp = jiff::Timestamp;
