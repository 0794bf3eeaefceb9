//! Faults on demand: what the control room must see and correlate.

use std::fmt;
use std::str::FromStr;

use vigie_core::EntityId;

use crate::city::EquipmentKind;

/// A fault to inject into the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The lamp burns out: the light reports `status: defectiveLamp`.
    LampFailure { light: EntityId },
    /// The cabinet loses mains power: all its lights fall silent and the
    /// cabinet (its modem is on a battery) reports zero power.
    CabinetPowerCut { cabinet: EntityId },
    /// Power comes back: every light of the cabinet reports at once (a burst).
    CabinetRestore { cabinet: EntityId },
    /// The controller falls back to flashing amber and reports `fault`.
    ControllerFault { controller: EntityId },
    /// The video management system loses the camera's signal.
    CameraOffline { camera: EntityId },
    /// The device stops sending anything (dead modem, flat battery).
    SilentDevice { entity: EntityId },
    /// The entity's fault is cleared (lamp replaced, device repaired...).
    Repair { entity: EntityId },
}

/// The kinds of [`Fault`], as the CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    LampFailure,
    CabinetPowerCut,
    CabinetRestore,
    ControllerFault,
    CameraOffline,
    SilentDevice,
    Repair,
}

impl FaultKind {
    pub const ALL: [Self; 7] = [
        Self::LampFailure,
        Self::CabinetPowerCut,
        Self::CabinetRestore,
        Self::ControllerFault,
        Self::CameraOffline,
        Self::SilentDevice,
        Self::Repair,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Self::LampFailure => "lamp-failure",
            Self::CabinetPowerCut => "cabinet-power-cut",
            Self::CabinetRestore => "cabinet-restore",
            Self::ControllerFault => "controller-fault",
            Self::CameraOffline => "camera-offline",
            Self::SilentDevice => "silent-device",
            Self::Repair => "repair",
        }
    }

    /// The kind of entity the fault applies to; `None` when any will do.
    pub fn target(self) -> Option<EquipmentKind> {
        match self {
            Self::LampFailure => Some(EquipmentKind::Streetlight),
            Self::CabinetPowerCut | Self::CabinetRestore => Some(EquipmentKind::StreetlightControlCabinet),
            Self::ControllerFault => Some(EquipmentKind::TrafficLightController),
            Self::CameraOffline => Some(EquipmentKind::Camera),
            Self::SilentDevice | Self::Repair => None,
        }
    }

    /// The fault of this kind on `entity`.
    pub fn on(self, entity: EntityId) -> Fault {
        match self {
            Self::LampFailure => Fault::LampFailure { light: entity },
            Self::CabinetPowerCut => Fault::CabinetPowerCut { cabinet: entity },
            Self::CabinetRestore => Fault::CabinetRestore { cabinet: entity },
            Self::ControllerFault => Fault::ControllerFault { controller: entity },
            Self::CameraOffline => Fault::CameraOffline { camera: entity },
            Self::SilentDevice => Fault::SilentDevice { entity },
            Self::Repair => Fault::Repair { entity },
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::LampFailure { .. } => FaultKind::LampFailure,
            Self::CabinetPowerCut { .. } => FaultKind::CabinetPowerCut,
            Self::CabinetRestore { .. } => FaultKind::CabinetRestore,
            Self::ControllerFault { .. } => FaultKind::ControllerFault,
            Self::CameraOffline { .. } => FaultKind::CameraOffline,
            Self::SilentDevice { .. } => FaultKind::SilentDevice,
            Self::Repair { .. } => FaultKind::Repair,
        }
    }

    pub fn entity(&self) -> &EntityId {
        match self {
            Self::LampFailure { light: e }
            | Self::CabinetPowerCut { cabinet: e }
            | Self::CabinetRestore { cabinet: e }
            | Self::ControllerFault { controller: e }
            | Self::CameraOffline { camera: e }
            | Self::SilentDevice { entity: e }
            | Self::Repair { entity: e } => e,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.entity())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultParseError {
    #[error(
        "unknown fault '{0}'; expected one of: lamp-failure, cabinet-power-cut, cabinet-restore, controller-fault, camera-offline, silent-device, repair"
    )]
    UnknownKind(String),
    #[error("fault '{kind}': {source}")]
    BadTarget {
        kind: FaultKind,
        #[source]
        source: vigie_core::EntityIdError,
    },
}

/// A fault as the CLI gives it: `cabinet-power-cut:urn:ngsi-ld:...`, or
/// `cabinet-power-cut` alone for a random target
/// (see [`Simulator::random_fault_target`](crate::Simulator::random_fault_target)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultRequest {
    On(Fault),
    Random(FaultKind),
}

impl FromStr for FaultRequest {
    type Err = FaultParseError;

    fn from_str(s: &str) -> Result<Self, FaultParseError> {
        let s = s.trim();
        let (kind_str, target) = match s.split_once(':') {
            Some((k, t)) => (k, Some(t)),
            None => (s, None),
        };
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.slug() == kind_str)
            .ok_or_else(|| FaultParseError::UnknownKind(kind_str.chars().take(64).collect()))?;
        match target {
            None | Some("") => Ok(Self::Random(kind)),
            Some(t) => {
                let id = EntityId::new(t).map_err(|source| FaultParseError::BadTarget { kind, source })?;
                Ok(Self::On(kind.on(id)))
            }
        }
    }
}

/// Why a fault could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("no entity '{0}' in the simulated city")]
    UnknownEntity(EntityId),
    #[error("{fault} applies to a {expected}, and '{entity}' is a {actual}")]
    WrongKind {
        fault: FaultKind,
        entity: EntityId,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("'{0}' has no device to silence")]
    NoDevice(EntityId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_faults_parse() {
        assert_eq!(
            "cabinet-power-cut".parse::<FaultRequest>().unwrap(),
            FaultRequest::Random(FaultKind::CabinetPowerCut)
        );
        let id = "urn:ngsi-ld:StreetlightControlCabinet:dijon:0001";
        let parsed = format!("cabinet-power-cut:{id}").parse::<FaultRequest>().unwrap();
        assert_eq!(
            parsed,
            FaultRequest::On(Fault::CabinetPowerCut {
                cabinet: EntityId::new(id).unwrap()
            })
        );
        assert!(matches!(
            "meteor".parse::<FaultRequest>(),
            Err(FaultParseError::UnknownKind(_))
        ));
        assert!(matches!(
            "lamp-failure:not an id".parse::<FaultRequest>(),
            Err(FaultParseError::BadTarget { .. })
        ));
    }
}
