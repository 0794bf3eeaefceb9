//! Device payload decoders (IoT Agent JSON and ChirpStack) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie_core::decode::{decode_chirpstack, decode_iot_agent};
use vigie_core::{AttributeMapping, Device, EntityId, Transport};

fn device(transport: Transport) -> Option<Device> {
    Some(Device {
        device_id: "SL-1".into(),
        transport,
        entity_name: EntityId::new("urn:ngsi-ld:Streetlight:dijon:1").ok()?,
        entity_type: "Streetlight".into(),
        scope: None,
        attributes: vec![AttributeMapping {
            object_id: "p".into(),
            name: "powerConsumption".into(),
            type_hint: None,
            unit_code: Some("WTT".into()),
        }],
    })
}

fuzz_target!(|data: &[u8]| {
    let received_at = jiff::Timestamp::UNIX_EPOCH;
    if let Some(d) = device(Transport::IotAgentJson { apikey: "k".into() }) {
        let _ = decode_iot_agent(&d, data, received_at);
    }
    if let Some(d) = device(Transport::Lorawan {
        dev_eui: "0102030405060708".into(),
    }) {
        for event in ["up", "status", "join"] {
            let _ = decode_chirpstack(&d, "0102030405060708", event, data, received_at);
        }
    }
});
