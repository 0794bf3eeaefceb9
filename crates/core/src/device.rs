//! Device provisioning: how a physical device's messages map onto an entity.
//!
//! The JSON shape follows the FIWARE IoT Agent provisioning API
//! (`device_id`, `entity_name`, `entity_type`, `attributes[{object_id, name, type}]`)
//! so existing provisioning files work; Vigie adds `apikey` on the device,
//! `scope`, and `transport: "lorawan"` with `dev_eui` for ChirpStack devices.

use serde::{Deserialize, Serialize};

use crate::credentials::{PasswordHash, Secret};
use crate::{EntityId, Scope};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device '{device}': {reason}")]
    Invalid { device: String, reason: String },
}

/// How the device reaches Vigie.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum Transport {
    /// FIWARE IoT Agent JSON over MQTT: `/{apikey}/{device_id}/attrs`.
    #[serde(rename = "mqtt")]
    IotAgentJson { apikey: String },
    /// LoRaWAN through ChirpStack v4's MQTT integration, keyed by DevEUI
    /// (16 hex digits, stored lowercase).
    Lorawan { dev_eui: String },
}

/// Maps a measure name in the device's payload to an attribute of the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeMapping {
    /// The measure's name in the payload (e.g. `p`).
    pub object_id: String,
    /// The attribute's name on the entity (e.g. `powerConsumption`).
    pub name: String,
    /// The IoT Agent type hint (`Number`, `Text`, `Boolean`...); informative.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_hint: Option<String>,
    #[serde(rename = "unitCode", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
}

/// A provisioned device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: String,
    #[serde(flatten)]
    pub transport: Transport,
    /// The entity the device's measures update.
    pub entity_name: EntityId,
    pub entity_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Measure mappings; measures not listed keep their own name.
    #[serde(default)]
    pub attributes: Vec<AttributeMapping>,
    /// The salted hash of the device's MQTT password (its MQTT username is
    /// its `device_id`); `None`: no password, the device can only connect
    /// with a client certificate (or through a gateway). See
    /// [`crate::credentials`] for the scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_password_hash: Option<PasswordHash>,
}

/// A device as an operator provisions it: the device, plus optionally its
/// MQTT password in plain text (`mqtt_password`), which is hashed by
/// [`DeviceSpec::into_device`] and never stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeviceSpec {
    #[serde(flatten)]
    pub device: Device,
    /// Never shown by `Debug`.
    #[serde(default)]
    pub mqtt_password: Option<Secret>,
}

impl DeviceSpec {
    /// Validates the device and hashes its plaintext password with `salt`.
    /// A device given both a password and a hash is refused: which one was
    /// meant is unclear.
    pub fn into_device(self, salt: [u8; crate::credentials::SALT_BYTES]) -> Result<Device, DeviceError> {
        let mut device = self.device.validate()?;
        if let Some(password) = self.mqtt_password {
            if device.mqtt_password_hash.is_some() {
                return Err(DeviceError::Invalid {
                    device: device.device_id,
                    reason: "give mqtt_password or mqtt_password_hash, not both".into(),
                });
            }
            let secret = Secret::new(password.expose().to_owned()).map_err(|e| DeviceError::Invalid {
                device: device.device_id.clone(),
                reason: e.to_string(),
            })?;
            device.mqtt_password_hash = Some(PasswordHash::new(&secret, salt));
        }
        Ok(device)
    }
}

impl Device {
    /// Checks what serde cannot: identifiers usable in MQTT topics, a well-formed DevEUI.
    pub fn validate(mut self) -> Result<Self, DeviceError> {
        let invalid = |reason: String| DeviceError::Invalid {
            device: self.device_id.clone(),
            reason,
        };
        let topic_safe = |s: &str| {
            !s.is_empty() && s.len() <= 128 && !s.contains(['/', '+', '#', '\0']) && !s.chars().any(char::is_whitespace)
        };
        if !topic_safe(&self.device_id) {
            return Err(invalid(
                "device_id must be 1-128 characters without '/', '+', '#' or spaces".into(),
            ));
        }
        match &mut self.transport {
            Transport::IotAgentJson { apikey } if !topic_safe(apikey) => {
                return Err(invalid(
                    "apikey must be 1-128 characters without '/', '+', '#' or spaces".into(),
                ));
            }
            Transport::Lorawan { dev_eui } => {
                if dev_eui.len() != 16 || !dev_eui.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(format!("dev_eui '{dev_eui}' is not 16 hexadecimal digits")));
                }
                dev_eui.make_ascii_lowercase();
            }
            Transport::IotAgentJson { .. } => {}
        }
        if self.entity_type.is_empty() {
            return Err(invalid("entity_type is empty".into()));
        }
        Ok(self)
    }

    /// The attribute name and unit a payload measure maps to.
    pub fn map_measure<'a>(&'a self, object_id: &'a str) -> (&'a str, Option<&'a str>) {
        self.attributes
            .iter()
            .find(|m| m.object_id == object_id)
            .map_or((object_id, None), |m| (m.name.as_str(), m.unit_code.as_deref()))
    }
}

/// The FIWARE IoT Agent provisioning document: `{"devices": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provisioning {
    pub devices: Vec<Device>,
}

/// A provisioning document as received (API body, devices file): devices may
/// carry a plaintext `mqtt_password`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProvisioningRequest {
    pub devices: Vec<DeviceSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iot_agent_provisioning_is_accepted() {
        let doc = json!({"devices": [{
            "device_id": "SL-000001", "transport": "mqtt", "apikey": "lighting",
            "entity_name": "urn:ngsi-ld:Streetlight:dijon:000001", "entity_type": "Streetlight",
            "scope": {"commune": "dijon", "business_line": "lighting"},
            "attributes": [{"object_id": "p", "name": "powerConsumption", "type": "Number", "unitCode": "WTT"}]
        }, {
            "device_id": "park-1", "transport": "lorawan", "dev_eui": "A81758FFFE030001",
            "entity_name": "urn:ngsi-ld:ParkingSpot:dijon:1", "entity_type": "ParkingSpot"
        }]});
        let p: Provisioning = serde_json::from_value(doc).unwrap();
        let light = p.devices[0].clone().validate().unwrap();
        assert_eq!(light.map_measure("p"), ("powerConsumption", Some("WTT")));
        assert_eq!(light.map_measure("st"), ("st", None));
        let park = p.devices[1].clone().validate().unwrap();
        assert_eq!(
            park.transport,
            Transport::Lorawan {
                dev_eui: "a81758fffe030001".into()
            }
        );
    }

    #[test]
    fn a_plaintext_password_is_hashed_and_never_serialized() {
        let doc = json!({"devices": [{
            "device_id": "SL-000001", "transport": "mqtt", "apikey": "lighting",
            "entity_name": "urn:ngsi-ld:Streetlight:dijon:000001", "entity_type": "Streetlight",
            "mqtt_password": "a-long-device-secret"
        }]});
        let req: ProvisioningRequest = serde_json::from_value(doc).unwrap();
        assert!(!format!("{req:?}").contains("a-long-device-secret"));
        let device = req.devices[0].clone().into_device([3; 16]).unwrap();
        let hash = device.mqtt_password_hash.as_ref().unwrap();
        assert!(hash.verify(b"a-long-device-secret"));
        let stored = serde_json::to_value(&device).unwrap();
        assert!(!stored.to_string().contains("a-long-device-secret"));
        assert!(stored["mqtt_password_hash"].as_str().unwrap().starts_with("sha256$"));
        // What is stored reads back.
        let back: Device = serde_json::from_value(stored).unwrap();
        assert_eq!(back, device);
    }

    #[test]
    fn weak_or_ambiguous_passwords_are_refused() {
        let spec = |extra: serde_json::Value| {
            let mut d = json!({"device_id": "d", "transport": "mqtt", "apikey": "k",
                "entity_name": "urn:x:1", "entity_type": "T"});
            d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<DeviceSpec>(d).unwrap().into_device([0; 16])
        };
        let err = spec(json!({"mqtt_password": "short"})).unwrap_err().to_string();
        assert!(err.contains("16"), "{err}");
        let hash = crate::credentials::PasswordHash::new(&Secret::from_random([1; 20]), [2; 16]).to_string();
        let err = spec(json!({"mqtt_password": "a-long-device-secret", "mqtt_password_hash": hash}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        assert!(
            serde_json::from_value::<DeviceSpec>(json!({"device_id": "d", "transport": "mqtt",
            "apikey": "k", "entity_name": "urn:x:1", "entity_type": "T", "mqtt_password_hash": "plain"}))
            .is_err()
        );
    }

    #[test]
    fn unusable_identifiers_are_refused() {
        let base = json!({"device_id": "a/b", "transport": "mqtt", "apikey": "k",
            "entity_name": "urn:x:1", "entity_type": "T"});
        let d: Device = serde_json::from_value(base).unwrap();
        assert!(d.validate().unwrap_err().to_string().contains("device_id"));
        let d: Device = serde_json::from_value(json!({"device_id": "p", "transport": "lorawan",
            "dev_eui": "xyz", "entity_name": "urn:x:1", "entity_type": "T"}))
        .unwrap();
        assert!(d.validate().unwrap_err().to_string().contains("dev_eui"));
    }
}
