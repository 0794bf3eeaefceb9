//! Provisioned devices, indexed the way messages name them: IoT Agent JSON by
//! (apikey, device_id), LoRaWAN by DevEUI.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use vigie_core::{Device, Transport};

#[derive(Default)]
struct Maps {
    by_id: BTreeMap<String, Arc<Device>>,
    by_apikey: HashMap<String, HashMap<String, Arc<Device>>>,
    by_dev_eui: HashMap<String, Arc<Device>>,
    /// The IoT Agent JSON device of each entity (where commands go).
    commandable: HashMap<String, Arc<Device>>,
}

#[derive(Default)]
pub struct DeviceRegistry {
    maps: RwLock<Maps>,
}

impl DeviceRegistry {
    pub fn insert(&self, device: Device) {
        let device = Arc::new(device);
        let mut m = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = m.by_id.insert(device.device_id.clone(), Arc::clone(&device)) {
            Self::unindex(&mut m, &old);
        }
        match &device.transport {
            Transport::IotAgentJson { apikey } => {
                m.by_apikey
                    .entry(apikey.clone())
                    .or_default()
                    .insert(device.device_id.clone(), Arc::clone(&device));
                m.commandable
                    .insert(device.entity_name.to_string(), Arc::clone(&device));
            }
            Transport::Lorawan { dev_eui } => {
                m.by_dev_eui.insert(dev_eui.clone(), Arc::clone(&device));
            }
        }
    }

    fn unindex(m: &mut Maps, old: &Device) {
        match &old.transport {
            Transport::IotAgentJson { apikey } => {
                if let Some(devices) = m.by_apikey.get_mut(apikey) {
                    devices.remove(&old.device_id);
                }
                if m.commandable
                    .get(old.entity_name.as_str())
                    .is_some_and(|d| d.device_id == old.device_id)
                {
                    m.commandable.remove(old.entity_name.as_str());
                }
            }
            Transport::Lorawan { dev_eui } => {
                m.by_dev_eui.remove(dev_eui);
            }
        }
    }

    pub fn remove(&self, device_id: &str) -> Option<Arc<Device>> {
        let mut m = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        let old = m.by_id.remove(device_id)?;
        Self::unindex(&mut m, &old);
        Some(old)
    }

    pub fn iot_agent(&self, apikey: &str, device_id: &str) -> Option<Arc<Device>> {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        m.by_apikey.get(apikey)?.get(device_id).cloned()
    }

    pub fn lorawan(&self, dev_eui: &str) -> Option<Arc<Device>> {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        m.by_dev_eui.get(&dev_eui.to_ascii_lowercase()).cloned()
    }

    /// The IoT Agent JSON device feeding `entity_id`, which takes its commands.
    pub fn commandable(&self, entity_id: &str) -> Option<Arc<Device>> {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        m.commandable.get(entity_id).cloned()
    }

    pub fn get(&self, device_id: &str) -> Option<Arc<Device>> {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        m.by_id.get(device_id).cloned()
    }

    /// A page of the devices `visible` keeps, in id order, and how many it keeps.
    pub fn list(&self, visible: impl Fn(&Device) -> bool, offset: usize, limit: usize) -> (Vec<Arc<Device>>, usize) {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        let mut count = 0;
        let mut page = Vec::new();
        for d in m.by_id.values().filter(|d| visible(d)) {
            if count >= offset && page.len() < limit {
                page.push(Arc::clone(d));
            }
            count += 1;
        }
        (page, count)
    }
}
