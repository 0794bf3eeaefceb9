//! The initial digital twin: one NGSI-LD entity per piece of equipment, with
//! the attributes of its FIWARE Smart Data Model (or Vigie's own type where
//! none exists), built lazily so the whole city never sits in memory as JSON.

use jiff::Timestamp;
use serde_json::{Value, json};
use vigie_core::entity::format_timestamp;
use vigie_core::{Attribute, AttributeKind, Entity};

use super::{City, EquipmentKind, FLEET, Site};

impl City {
    /// The initial twin, kind after kind: static attributes and the state the
    /// equipment is in at [`CityConfig::commissioned`](super::CityConfig).
    pub fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        EquipmentKind::ALL
            .into_iter()
            .flat_map(move |kind| (0..self.count(kind)).filter_map(move |ix| self.entity(kind, ix)))
    }

    /// The initial twin of one entity.
    pub fn entity(&self, kind: EquipmentKind, ix: usize) -> Option<Entity> {
        let id = self.entity_id(kind, ix)?;
        let at = self.config.commissioned;
        let mut e = Entity::new(id, kind.entity_type(), self.scope_of(kind, ix));
        let rel =
            |kind: EquipmentKind, ix: u32| self.entity_id(kind, ix as usize).map(|id| Attribute::relationship(&id));
        let rel_list = |kind: EquipmentKind, range: std::ops::Range<u32>| {
            let objects: Vec<Value> = range
                .filter_map(|i| self.entity_id(kind, i as usize))
                .map(|id| json!({"object": id.as_str()}))
                .collect();
            Attribute::of_kind(AttributeKind::ListRelationship, Value::Array(objects))
        };
        match kind {
            EquipmentKind::Streetlight => {
                let l = self.lights.get(ix)?;
                self.place(
                    &mut e,
                    &l.site,
                    format!("Point lumineux {}", self.local_label(kind, &l.site)),
                );
                e = e
                    .with("status", Attribute::property("ok").observed(at))
                    .with("powerState", Attribute::property("off").observed(at))
                    .with("illuminanceLevel", Attribute::property(0.0).observed(at))
                    .with(
                        "powerConsumption",
                        Attribute::property(0.0).with_unit("WTT").observed(at),
                    )
                    .with("powerRating", Attribute::property(l.rating_w).with_unit("WTT"))
                    .with(
                        "lanternHeight",
                        Attribute::property(f64::from(l.height_dm) / 10.0).with_unit("MTR"),
                    )
                    .with("locationCategory", Attribute::property(l.location.as_str()))
                    .with("controllingMethod", Attribute::property("individual"))
                    .with(
                        "dateLastLampChange",
                        Attribute::property(day_after_2017(l.installed_day)),
                    )
                    .with(
                        "dateServiceStarted",
                        Attribute::property(day_after_2017(l.installed_day)),
                    );
                e = e.with(
                    "refStreetlightControlCabinet",
                    rel(EquipmentKind::StreetlightControlCabinet, l.cabinet)?,
                );
                e = e.with("refStreetlightGroup", rel(EquipmentKind::StreetlightGroup, l.group)?);
                let circuit = self.groups.get(l.group as usize)?;
                e = e.with("circuit", Attribute::property(format!("C{}", circuit.site.local)));
            }
            EquipmentKind::StreetlightControlCabinet => {
                let c = self.cabinets.get(ix)?;
                self.place(&mut e, &c.site, format!("Armoire {}", self.local_label(kind, &c.site)));
                let rated_w: f64 = (c.lights.start..c.lights.end)
                    .filter_map(|i| self.lights.get(i as usize))
                    .map(|l| f64::from(l.rating_w))
                    .sum();
                e = e
                    .with(
                        "refStreetlightGroup",
                        rel_list(EquipmentKind::StreetlightGroup, c.groups.clone()),
                    )
                    .with("workingMode", Attribute::property("automatic"))
                    .with(
                        "features",
                        Attribute::property(json!(["astronomicalClock", "individualControl"])),
                    )
                    .with("cupboardMadeOf", Attribute::property("metal"))
                    .with("serialNumber", Attribute::property(format!("ARM-{:06}", ix + 1)))
                    .with(
                        "dateServiceStarted",
                        Attribute::property(day_after_2017(c.installed_day)),
                    )
                    .with(
                        "maximumPowerAvailable",
                        Attribute::property(round((rated_w * 1.5 / 1000.0).max(3.0), 1)).with_unit("KWT"),
                    )
                    .with(
                        "totalActivePower",
                        Attribute::property(0.0).with_unit("KWT").observed(at),
                    )
                    .with("energyConsumed", Attribute::property(0.0).with_unit("KWH").observed(at));
            }
            EquipmentKind::StreetlightGroup => {
                let g = self.groups.get(ix)?;
                self.place(&mut e, &g.site, format!("Circuit {}", self.local_label(kind, &g.site)));
                e = e
                    .with(
                        "refStreetlightControlCabinet",
                        rel(EquipmentKind::StreetlightControlCabinet, g.cabinet)?,
                    )
                    .with("refStreetlight", rel_list(EquipmentKind::Streetlight, g.lights.clone()))
                    .with("circuitId", Attribute::property(format!("C{}", g.site.local)))
                    .with("switchingMode", Attribute::property(json!(["night-ON", "day-OFF"])))
                    .with("powerState", Attribute::property("off").observed(at))
                    .with("illuminanceLevel", Attribute::property(0.0).observed(at));
            }
            EquipmentKind::TrafficLightController => {
                let c = self.controllers.get(ix)?;
                self.place(
                    &mut e,
                    &c.site,
                    format!("Carrefour {}", self.local_label(kind, &c.site)),
                );
                e = e
                    .with("deviceState", Attribute::property("ok").observed(at))
                    .with("operatingMode", Attribute::property("actuated").observed(at))
                    .with(
                        "cycleTime",
                        Attribute::property(c.cycle_s).with_unit("SEC").observed(at),
                    )
                    .with("busPriority", Attribute::property(c.bus_priority))
                    .with("nightFlashing", Attribute::property(c.night_flashing))
                    .with(
                        "refTrafficFlowObserved",
                        rel(EquipmentKind::TrafficFlowObserved, ix as u32)?,
                    );
            }
            EquipmentKind::TrafficFlowObserved => {
                let l = self.loops.get(ix)?;
                self.place(
                    &mut e,
                    &l.site,
                    format!("Boucle de comptage {}", self.local_label(kind, &l.site)),
                );
                let from = at.checked_sub(jiff::SignedDuration::from_secs(60)).unwrap_or(at);
                e = e
                    .with(
                        "dateObserved",
                        Attribute::property(format!("{}/{}", format_timestamp(from), format_timestamp(at))),
                    )
                    .with("dateObservedFrom", Attribute::property(format_timestamp(from)))
                    .with("dateObservedTo", Attribute::property(format_timestamp(at)))
                    .with("laneId", Attribute::property(1))
                    .with("laneDirection", Attribute::property("forward"))
                    .with("intensity", Attribute::property(0).observed(at))
                    .with("occupancy", Attribute::property(0.0).observed(at))
                    .with(
                        "averageVehicleSpeed",
                        Attribute::property(0.0).with_unit("KMH").observed(at),
                    )
                    .with("congested", Attribute::property(false).observed(at))
                    .with(
                        "refTrafficLightController",
                        rel(EquipmentKind::TrafficLightController, l.controller)?,
                    );
            }
            EquipmentKind::Camera => {
                let c = self.cameras.get(ix)?;
                let label = self.local_label(kind, &c.site);
                self.place(&mut e, &c.site, format!("Caméra {label}"));
                e = e
                    .with("cameraName", Attribute::property(format!("CAM-{label}")))
                    .with("cameraType", Attribute::property(c.camera_type))
                    .with("cameraUsage", Attribute::property("public-road video protection"))
                    .with("cameraNum", Attribute::property(c.site.local))
                    .with("on", Attribute::property(true).observed(at))
                    .with("deviceState", Attribute::property("ok").observed(at));
            }
            EquipmentKind::AccessBollard => {
                let b = self.bollards.get(ix)?;
                self.place(&mut e, &b.site, format!("Borne {}", self.local_label(kind, &b.site)));
                e = e
                    .with("position", Attribute::property("up").observed(at))
                    .with("operatingMode", Attribute::property("automatic").observed(at))
                    .with("deviceState", Attribute::property("ok").observed(at))
                    .with("deliveryWindow", Attribute::property(b.delivery_window));
            }
            EquipmentKind::Vehicle => {
                let v = self.vehicles.get(ix)?;
                let commune = self.communes.get(usize::from(v.commune))?;
                let class = FLEET.get(usize::from(v.class))?;
                let home = commune.streets.node(v.home).unwrap_or_default().to_lonlat();
                e = e
                    .with("name", Attribute::property(format!("{} {}", class.label, v.plate)))
                    .with("location", Attribute::point(home.lon, home.lat).observed(at))
                    .with("vehicleType", Attribute::property(class.vehicle_type))
                    .with("category", Attribute::property(json!(["municipalServices"])))
                    .with("serviceProvided", Attribute::property(json!([class.service])))
                    .with("vehiclePlateIdentifier", Attribute::property(v.plate.as_str()))
                    .with("fleetVehicleId", Attribute::property(format!("DM-{:03}", ix + 1)))
                    .with("feature", Attribute::property(json!(["gps"])))
                    .with("speed", Attribute::property(0.0).with_unit("KMH").observed(at))
                    .with("heading", Attribute::property(0.0).with_unit("DD").observed(at))
                    .with("serviceStatus", Attribute::property("parked").observed(at));
            }
            EquipmentKind::WeatherObserved => {
                let w = self.weather.get(ix)?;
                self.place(
                    &mut e,
                    &w.site,
                    format!("Station météo {}", self.local_label(kind, &w.site)),
                );
                e = e
                    .with("dateObserved", Attribute::property(format_timestamp(at)))
                    .with("temperature", Attribute::property(5.0).with_unit("CEL").observed(at))
                    .with("relativeHumidity", Attribute::property(0.8).observed(at))
                    .with(
                        "atmosphericPressure",
                        Attribute::property(1015.0).with_unit("A97").observed(at),
                    );
            }
            EquipmentKind::OnStreetParking => {
                let p = self.parking_sites.get(ix)?;
                self.place(
                    &mut e,
                    &p.site,
                    format!("Stationnement {}", self.local_label(kind, &p.site)),
                );
                let ids: Vec<Value> = (p.spots.start..p.spots.end)
                    .filter_map(|i| self.entity_id(EquipmentKind::ParkingSpot, i as usize))
                    .map(|id| Value::String(id.to_string()))
                    .collect();
                let total = ids.len();
                e = e
                    .with("category", Attribute::property(json!(["feeCharged", "blueZone"])))
                    .with("allowedVehicleType", Attribute::property(json!(["car"])))
                    .with("parkingMode", Attribute::property("parallelParking"))
                    .with(
                        "occupancyDetectionType",
                        Attribute::property(json!(["singleSpaceDetection"])),
                    )
                    .with("totalSpotNumber", Attribute::property(total))
                    .with("availableSpotNumber", Attribute::property(total).observed(at))
                    .with("refParkingSpot", rel_list_of_ids(ids));
            }
            EquipmentKind::ParkingSpot => {
                let s = self.parking_spots.get(ix)?;
                self.place(&mut e, &s.site, format!("Place {}", self.local_label(kind, &s.site)));
                e = e
                    .with("status", Attribute::property("free").observed(at))
                    .with("category", Attribute::property(json!(["onStreet"])))
                    .with("width", Attribute::property(2.0).with_unit("MTR"))
                    .with("length", Attribute::property(5.0).with_unit("MTR"))
                    .with("refParkingSite", rel(EquipmentKind::OnStreetParking, s.parking_site)?);
            }
            EquipmentKind::WasteContainer => {
                let w = self.waste.get(ix)?;
                self.place(
                    &mut e,
                    &w.site,
                    format!("Conteneur {}", self.local_label(kind, &w.site)),
                );
                e = e
                    .with("fillingLevel", Attribute::property(0.0).observed(at))
                    .with("status", Attribute::property("ok").observed(at))
                    .with(
                        "category",
                        Attribute::property(json!([if w.underground { "underground" } else { "ground" }])),
                    )
                    .with("storedWasteKind", Attribute::property(w.waste_kind))
                    .with("storedWasteOrigin", Attribute::property("household"))
                    .with("binCapacity", Attribute::property(w.capacity_l).with_unit("LTR"))
                    .with("serialNumber", Attribute::property(format!("{:016x}", w.dev_eui)));
            }
        }
        Some(e)
    }

    /// `location`, `address` and `name`, common to every sited entity.
    fn place(&self, e: &mut Entity, site: &Site, name: String) {
        let Some(commune) = self.communes.get(usize::from(site.commune)) else {
            return;
        };
        let ll = site.at.to_lonlat();
        let street = commune.streets.street_name(site.street);
        let street_address = match site.cross_street {
            Some(cross) => format!("{street} / {}", commune.streets.street_name(cross)),
            None => format!("{} {street}", site.house_number),
        };
        e.attributes.insert("location".into(), Attribute::point(ll.lon, ll.lat));
        e.attributes.insert(
            "address".into(),
            Attribute::property(json!({
                "streetAddress": street_address,
                "addressLocality": commune.name,
                "postalCode": commune.postal_code,
                "addressCountry": "FR",
            })),
        );
        e.attributes.insert("name".into(), Attribute::property(name));
    }

    fn local_label(&self, kind: EquipmentKind, site: &Site) -> String {
        let slug = self
            .communes
            .get(usize::from(site.commune))
            .map_or("", |c| c.id.as_str());
        format!("{slug}-{:0w$}", site.local, w = kind.id_width())
    }
}

/// A ListRelationship whose targets are already id strings.
fn rel_list_of_ids(ids: Vec<Value>) -> Attribute {
    let objects = ids.into_iter().map(|id| json!({"object": id})).collect();
    Attribute::of_kind(AttributeKind::ListRelationship, Value::Array(objects))
}

fn day_after_2017(days: u16) -> String {
    let base = Timestamp::from_second(1_483_261_200).unwrap_or(Timestamp::UNIX_EPOCH); // 2017-01-01T09:00:00Z
    let t = base
        .checked_add(jiff::SignedDuration::from_hours(i64::from(days) * 24))
        .unwrap_or(base);
    format_timestamp(t)
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}
