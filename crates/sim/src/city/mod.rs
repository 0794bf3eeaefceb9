//! The simulated city: communes, streets and equipment, generated
//! deterministically from a seed (same seed, byte-identical city).

mod basemap;
mod communes;
mod equipment;
mod provisioning;
mod streets;
mod twin;

use std::ops::Range;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigie_core::{BusinessLine, CommuneId, EntityId, Scope};

use crate::geo::{LonLat, Xy};
use communes::apportion;
pub use communes::{CommuneSpec, DIJON_METROPOLE};
pub use equipment::EquipmentKind;
pub(crate) use equipment::*;
pub use provisioning::{LORAWAN_PARKING_APPLICATION, LORAWAN_WASTE_APPLICATION, Measure, measures};
pub(crate) use streets::{Edge, NodeIx, StreetGrid};

/// How big a city to generate. The default is Dijon Métropole's scale.
#[derive(Debug, Clone, PartialEq)]
pub struct CityConfig {
    pub seed: u64,
    pub streetlights: usize,
    /// Lights fed by one control cabinet (Dijon: ~48).
    pub lights_per_cabinet: usize,
    /// Lights on one circuit (a `StreetlightGroup`); a cabinet has one or more.
    pub lights_per_group: usize,
    pub traffic_light_controllers: usize,
    pub cameras: usize,
    pub access_bollards: usize,
    pub vehicles: usize,
    pub weather_stations: usize,
    pub parking_spots: usize,
    pub waste_containers: usize,
    /// The instant the initial twin describes (and before which every
    /// installation date lies).
    pub commissioned: jiff::Timestamp,
}

impl Default for CityConfig {
    fn default() -> Self {
        Self {
            seed: 21_000,
            streetlights: 34_000,
            lights_per_cabinet: 48,
            lights_per_group: 24,
            traffic_light_controllers: 250,
            cameras: 150,
            access_bollards: 100,
            vehicles: 205,
            weather_stations: 20,
            parking_spots: 400,
            waste_containers: 600,
            commissioned: jiff::Timestamp::from_second(1_767_225_600).unwrap_or(jiff::Timestamp::UNIX_EPOCH), // 2026-01-01
        }
    }
}

impl CityConfig {
    /// A small city with every kind of equipment, for tests and quick demos.
    pub fn small(seed: u64) -> Self {
        Self {
            seed,
            streetlights: 1_200,
            traffic_light_controllers: 12,
            cameras: 10,
            access_bollards: 6,
            vehicles: 10,
            weather_stations: 3,
            parking_spots: 40,
            waste_containers: 30,
            ..Self::default()
        }
    }
}

/// One commune: its identity and outline.
#[derive(Debug, Clone, PartialEq)]
pub struct Commune {
    pub id: CommuneId,
    pub name: &'static str,
    pub postal_code: &'static str,
    pub population: u32,
    pub centre: LonLat,
    /// Closed outer ring (first point repeated last), WGS 84.
    pub boundary: Vec<LonLat>,
    pub(crate) streets: StreetGrid,
}

/// The generated city. Equipment of each kind is stored commune by commune,
/// numbered from 1 within its commune, so ids and indices convert cheaply.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub(crate) config: CityConfig,
    pub(crate) communes: Vec<Commune>,
    pub(crate) lights: Vec<Light>,
    pub(crate) cabinets: Vec<Cabinet>,
    pub(crate) groups: Vec<LightGroup>,
    pub(crate) controllers: Vec<Controller>,
    pub(crate) loops: Vec<CountingLoop>,
    pub(crate) cameras: Vec<Camera>,
    pub(crate) bollards: Vec<Bollard>,
    pub(crate) vehicles: Vec<Vehicle>,
    pub(crate) weather: Vec<WeatherStation>,
    pub(crate) parking_sites: Vec<ParkingSite>,
    pub(crate) parking_spots: Vec<ParkingSpot>,
    pub(crate) waste: Vec<WasteContainer>,
    /// Per kind, the index of each commune's first item (plus the total last).
    offsets: Vec<Vec<u32>>,
}

/// An independent random stream per purpose, so changing one equipment count
/// does not reshuffle the rest of the city.
fn stream(seed: u64, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose);
    rng
}

impl City {
    /// Generates the city described by `config`.
    pub fn generate(config: &CityConfig) -> City {
        let specs = &DIJON_METROPOLE;
        let centres: Vec<Xy> = specs
            .iter()
            .map(|s| LonLat { lon: s.lon, lat: s.lat }.to_xy())
            .collect();
        let sizes: Vec<f64> = specs.iter().map(|s| f64::from(s.population).sqrt()).collect();
        let populations: Vec<f64> = specs.iter().map(|s| f64::from(s.population)).collect();
        let light_counts = apportion(config.streetlights, &populations);

        let mut communes = Vec::with_capacity(specs.len());
        for (ix, spec) in specs.iter().enumerate() {
            let ring = boundary(ix, &centres, &sizes);
            let mut rng = stream(config.seed, 1_000 + ix as u64);
            let streets = StreetGrid::build(centres[ix], &ring, light_counts[ix], &mut rng);
            let mut boundary: Vec<LonLat> = ring.iter().map(|p| p.to_lonlat()).collect();
            boundary.extend(boundary.first().copied());
            communes.push(Commune {
                // The table's slugs are checked by a unit test.
                id: CommuneId::new(spec.slug).expect("built-in commune slugs are valid"),
                name: spec.name,
                postal_code: spec.postal_code,
                population: spec.population,
                centre: centres[ix].to_lonlat(),
                boundary,
                streets,
            });
        }

        let mut city = City {
            config: config.clone(),
            communes,
            lights: Vec::with_capacity(config.streetlights),
            cabinets: Vec::new(),
            groups: Vec::new(),
            controllers: Vec::new(),
            loops: Vec::new(),
            cameras: Vec::new(),
            bollards: Vec::new(),
            vehicles: Vec::new(),
            weather: Vec::new(),
            parking_sites: Vec::new(),
            parking_spots: Vec::new(),
            waste: Vec::new(),
            offsets: Vec::new(),
        };
        let mut rng = stream(config.seed, 1);
        city.place_lighting(&light_counts, &mut rng);
        let mut rng = stream(config.seed, 2);
        city.place_traffic(&apportion(config.traffic_light_controllers, &populations), &mut rng);
        let mut rng = stream(config.seed, 3);
        city.place_cameras_and_bollards(
            &apportion(config.cameras, &populations),
            &apportion(config.access_bollards, &populations),
            &mut rng,
        );
        let mut rng = stream(config.seed, 4);
        city.place_fleet(&apportion(config.vehicles, &populations), &mut rng);
        let mut rng = stream(config.seed, 5);
        city.place_weather(&apportion(config.weather_stations, &sizes), &mut rng);
        let mut rng = stream(config.seed, 6);
        city.place_parking(&apportion(config.parking_spots, &populations), &mut rng);
        let mut rng = stream(config.seed, 7);
        city.place_waste(&apportion(config.waste_containers, &populations), &mut rng);
        city.offsets = EquipmentKind::ALL
            .iter()
            .map(|&kind| {
                let mut firsts = vec![0u32; city.communes.len() + 1];
                for ix in 0..city.count(kind) {
                    firsts[usize::from(city.site_of(kind, ix).map_or(0, |(c, _)| c)) + 1] += 1;
                }
                for c in 0..city.communes.len() {
                    firsts[c + 1] += firsts[c];
                }
                firsts
            })
            .collect();
        city
    }

    pub fn config(&self) -> &CityConfig {
        &self.config
    }

    pub fn communes(&self) -> &[Commune] {
        &self.communes
    }

    /// How many entities of a kind the city holds.
    pub fn count(&self, kind: EquipmentKind) -> usize {
        match kind {
            EquipmentKind::Streetlight => self.lights.len(),
            EquipmentKind::StreetlightControlCabinet => self.cabinets.len(),
            EquipmentKind::StreetlightGroup => self.groups.len(),
            EquipmentKind::TrafficLightController => self.controllers.len(),
            EquipmentKind::TrafficFlowObserved => self.loops.len(),
            EquipmentKind::Camera => self.cameras.len(),
            EquipmentKind::AccessBollard => self.bollards.len(),
            EquipmentKind::Vehicle => self.vehicles.len(),
            EquipmentKind::WeatherObserved => self.weather.len(),
            EquipmentKind::OnStreetParking => self.parking_sites.len(),
            EquipmentKind::ParkingSpot => self.parking_spots.len(),
            EquipmentKind::WasteContainer => self.waste.len(),
        }
    }

    /// The commune index and local number of the `ix`-th item of a kind.
    fn site_of(&self, kind: EquipmentKind, ix: usize) -> Option<(u16, u32)> {
        let site = |s: &Site| (s.commune, s.local);
        match kind {
            EquipmentKind::Streetlight => self.lights.get(ix).map(|e| site(&e.site)),
            EquipmentKind::StreetlightControlCabinet => self.cabinets.get(ix).map(|e| site(&e.site)),
            EquipmentKind::StreetlightGroup => self.groups.get(ix).map(|e| site(&e.site)),
            EquipmentKind::TrafficLightController => self.controllers.get(ix).map(|e| site(&e.site)),
            EquipmentKind::TrafficFlowObserved => self.loops.get(ix).map(|e| site(&e.site)),
            EquipmentKind::Camera => self.cameras.get(ix).map(|e| site(&e.site)),
            EquipmentKind::AccessBollard => self.bollards.get(ix).map(|e| site(&e.site)),
            EquipmentKind::Vehicle => self.vehicles.get(ix).map(|v| (v.commune, v.local)),
            EquipmentKind::WeatherObserved => self.weather.get(ix).map(|e| site(&e.site)),
            EquipmentKind::OnStreetParking => self.parking_sites.get(ix).map(|e| site(&e.site)),
            EquipmentKind::ParkingSpot => self.parking_spots.get(ix).map(|e| site(&e.site)),
            EquipmentKind::WasteContainer => self.waste.get(ix).map(|e| site(&e.site)),
        }
    }

    /// The local id part of an entity id: the zero-padded number.
    fn local_id(kind: EquipmentKind, local: u32) -> String {
        format!("{local:0width$}", width = kind.id_width())
    }

    /// The entity id of the `ix`-th item of a kind, if there is one.
    pub fn entity_id(&self, kind: EquipmentKind, ix: usize) -> Option<EntityId> {
        let (commune, local) = self.site_of(kind, ix)?;
        let slug = self.communes[usize::from(commune)].id.as_str();
        EntityId::conventional(kind.entity_type(), slug, &Self::local_id(kind, local)).ok()
    }

    /// The device id of the `ix`-th item of a kind (`sl-dijon-00042`).
    pub fn device_id(&self, kind: EquipmentKind, ix: usize) -> Option<String> {
        let prefix = kind.device_prefix()?;
        let (commune, local) = self.site_of(kind, ix)?;
        let slug = self.communes[usize::from(commune)].id.as_str();
        Some(format!("{prefix}-{slug}-{}", Self::local_id(kind, local)))
    }

    pub(crate) fn scope_of(&self, kind: EquipmentKind, ix: usize) -> Option<Scope> {
        let (commune, _) = self.site_of(kind, ix)?;
        let line = BusinessLine::new(kind.business_line()).ok()?;
        Some(Scope::new(self.communes[usize::from(commune)].id.clone(), line))
    }

    /// Finds a device of this city by id (`sl-dijon-00042`): its kind and index.
    pub fn locate_device(&self, device_id: &str) -> Option<(EquipmentKind, usize)> {
        let (prefix, rest) = device_id.split_once('-')?;
        let (slug, local) = rest.rsplit_once('-')?;
        let kind = EquipmentKind::ALL
            .into_iter()
            .find(|k| k.device_prefix() == Some(prefix))?;
        let id = EntityId::conventional(kind.entity_type(), slug, local).ok()?;
        self.locate(&id)
    }

    /// Finds an entity of this city by id: its kind and index.
    pub fn locate(&self, id: &EntityId) -> Option<(EquipmentKind, usize)> {
        let rest = id.as_str().strip_prefix("urn:ngsi-ld:")?;
        let mut parts = rest.splitn(3, ':');
        let kind = EquipmentKind::from_entity_type(parts.next()?)?;
        let slug = parts.next()?;
        let commune = self.communes.iter().position(|c| c.id.as_str() == slug)?;
        let local_str = parts.next()?;
        let local: u32 = local_str.parse().ok()?;
        if local == 0 || local_str != Self::local_id(kind, local) {
            return None;
        }
        let firsts = self.offsets.get(kind as usize)?;
        let ix = firsts[commune] + local - 1;
        (ix < firsts[commune + 1]).then_some((kind, ix as usize))
    }

    /// The lights a cabinet feeds (indices into the city's lights).
    pub fn cabinet_lights(&self, cabinet: usize) -> Range<usize> {
        self.cabinets
            .get(cabinet)
            .map_or(0..0, |c| c.lights.start as usize..c.lights.end as usize)
    }

    // ---- generation, kind by kind ------------------------------------------------

    fn place_lighting(&mut self, counts: &[usize], rng: &mut ChaCha8Rng) {
        let cfg = self.config.clone();
        for (c, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let grid = &self.communes[c].streets;
            let edges: Vec<Edge> = grid.edges().collect();
            let total: f64 = edges.iter().map(|&e| grid.edge_length(e)).sum();
            let spacing = total / count as f64;
            // Walk the streets, one light every `spacing` metres, in street order
            // so a cabinet's lights are neighbours.
            let mut placed = Vec::with_capacity(count);
            let mut next = spacing / 2.0;
            let mut walked = 0.0;
            for &e in &edges {
                let len = grid.edge_length(e);
                let (Some(a), Some(b)) = (grid.node(e.a), grid.node(e.b)) else {
                    continue;
                };
                while next < walked + len && placed.len() < count {
                    let t = (next - walked) / len;
                    // Lights alternate sides, 6 m from the street's axis.
                    let side = if placed.len() % 2 == 0 { 6.0 } else { -6.0 };
                    let (dx, dy) = ((b.y - a.y) / len * side, -(b.x - a.x) / len * side);
                    placed.push((a.lerp(b, t).offset(dx, dy), e, t));
                    next += spacing;
                }
                walked += len;
            }
            let (light_base, group_base) = (self.lights.len(), self.groups.len());
            let cabinets = count.div_ceil(cfg.lights_per_cabinet.max(1));
            let mut first_light = 0usize;
            for (k, size) in apportion(count, &vec![1.0; cabinets]).into_iter().enumerate() {
                let cabinet_ix = self.cabinets.len() as u32;
                let light_start = self.lights.len() as u32;
                let group_start = self.groups.len() as u32;
                let circuits = size.div_ceil(cfg.lights_per_group.max(1)).max(1);
                let mut in_cabinet = 0usize;
                for circuit in apportion(size, &vec![1.0; circuits]) {
                    let group_ix = self.groups.len() as u32;
                    let group_light_start = self.lights.len() as u32;
                    let mut sum = Xy::default();
                    for n in 0..circuit {
                        let (at, e, t) = placed[first_light + in_cabinet + n];
                        sum = sum.offset(at.x, at.y);
                        let location = match rng.random_range(0..10) {
                            0..=5 => LightLocation::Road,
                            6..=7 => LightLocation::Sidewalk,
                            8 => LightLocation::PedestrianPath,
                            _ => LightLocation::Park,
                        };
                        let (rating_w, height_dm) = match location {
                            LightLocation::Road => (rng.random_range(40..=90), rng.random_range(70..=100)),
                            _ => (rng.random_range(20..=40), rng.random_range(35..=60)),
                        };
                        self.lights.push(Light {
                            site: Site {
                                commune: c as u16,
                                local: (self.lights.len() - light_base) as u32 + 1,
                                at,
                                street: e.street,
                                house_number: grid.house_number(e, t),
                                cross_street: None,
                            },
                            cabinet: cabinet_ix,
                            group: group_ix,
                            rating_w,
                            height_dm,
                            location,
                            installed_day: rng.random_range(0..1_600),
                        });
                    }
                    in_cabinet += circuit;
                    let centroid = Xy::new(sum.x / circuit as f64, sum.y / circuit as f64);
                    let (_, e, t) = placed[first_light + in_cabinet - circuit];
                    self.groups.push(LightGroup {
                        site: Site {
                            commune: c as u16,
                            local: (self.groups.len() - group_base) as u32 + 1,
                            at: centroid,
                            street: e.street,
                            house_number: grid.house_number(e, t),
                            cross_street: None,
                        },
                        cabinet: cabinet_ix,
                        lights: group_light_start..self.lights.len() as u32,
                    });
                }
                let (first_at, e, t) = placed[first_light];
                self.cabinets.push(Cabinet {
                    site: Site {
                        commune: c as u16,
                        local: k as u32 + 1,
                        at: first_at.offset(2.0, 2.0),
                        street: e.street,
                        house_number: grid.house_number(e, t),
                        cross_street: None,
                    },
                    lights: light_start..self.lights.len() as u32,
                    groups: group_start..self.groups.len() as u32,
                    installed_day: rng.random_range(0..1_600),
                });
                first_light += size;
            }
        }
    }

    fn place_traffic(&mut self, counts: &[usize], rng: &mut ChaCha8Rng) {
        for (c, &count) in counts.iter().enumerate() {
            let grid = &self.communes[c].streets;
            for (k, node) in pick_central_nodes(grid, self.communes[c].centre.to_xy(), count, 3, rng)
                .into_iter()
                .enumerate()
            {
                let Some(at) = grid.node(node) else { continue };
                let (row, col) = grid.crossing_streets(node);
                let site = Site {
                    commune: c as u16,
                    local: k as u32 + 1,
                    at: at.offset(5.0, 5.0),
                    street: row,
                    house_number: 0,
                    cross_street: Some(col),
                };
                // The loop sits ~25 m up the main approach.
                let upstream = grid
                    .neighbours(node)
                    .next()
                    .and_then(|n| grid.node(n))
                    .map_or(at.offset(25.0, 0.0), |n| at.lerp(n, 25.0 / at.distance(n).max(25.0)));
                let controller = self.controllers.len() as u32;
                self.loops.push(CountingLoop {
                    site: Site {
                        at: upstream,
                        ..site.clone()
                    },
                    controller,
                });
                self.controllers.push(Controller {
                    site,
                    bus_priority: rng.random_bool(0.4),
                    night_flashing: rng.random_bool(0.25),
                    cycle_s: [60, 72, 80, 90, 100, 120][rng.random_range(0..6)],
                    peak_flow_per_min: rng.random_range(8.0..30.0),
                });
            }
        }
    }

    fn place_cameras_and_bollards(&mut self, cameras: &[usize], bollards: &[usize], rng: &mut ChaCha8Rng) {
        const CAMERA_TYPES: [&str; 4] = ["DOME", "PTZ", "FIXED", "BULLET"];
        for c in 0..self.communes.len() {
            let grid = &self.communes[c].streets;
            let centre = self.communes[c].centre.to_xy();
            for (k, node) in pick_central_nodes(grid, centre, cameras[c], 4, rng)
                .into_iter()
                .enumerate()
            {
                let Some(at) = grid.node(node) else { continue };
                let (row, col) = grid.crossing_streets(node);
                self.cameras.push(Camera {
                    site: Site {
                        commune: c as u16,
                        local: k as u32 + 1,
                        at: at.offset(-4.0, 3.0),
                        street: row,
                        house_number: 0,
                        cross_street: Some(col),
                    },
                    camera_type: CAMERA_TYPES[rng.random_range(0..CAMERA_TYPES.len())],
                });
            }
            // Bollards guard the most central streets: the pedestrian zone.
            for (k, node) in pick_central_nodes(grid, centre, bollards[c], 2, rng)
                .into_iter()
                .enumerate()
            {
                let Some(at) = grid.node(node) else { continue };
                let (row, col) = grid.crossing_streets(node);
                self.bollards.push(Bollard {
                    site: Site {
                        commune: c as u16,
                        local: k as u32 + 1,
                        at: at.offset(3.0, -3.0),
                        street: row,
                        house_number: 0,
                        cross_street: Some(col),
                    },
                    delivery_window: rng.random_bool(0.7),
                });
            }
        }
    }

    fn place_fleet(&mut self, counts: &[usize], rng: &mut ChaCha8Rng) {
        let shares: Vec<f64> = FLEET.iter().map(|f| f.share).collect();
        let per_class = apportion(counts.iter().sum(), &shares);
        let mut classes: Vec<u8> = per_class
            .iter()
            .enumerate()
            .flat_map(|(class, &n)| std::iter::repeat_n(class as u8, n))
            .collect();
        classes.shuffle(rng);
        let mut classes = classes.into_iter();
        for (c, &count) in counts.iter().enumerate() {
            let grid = &self.communes[c].streets;
            let nodes: Vec<NodeIx> = grid.nodes().map(|(n, _)| n).collect();
            for k in 0..count {
                let home = nodes.get(rng.random_range(0..nodes.len().max(1))).copied().unwrap_or(0);
                let letters: String = (0..4).map(|_| char::from(b'A' + rng.random_range(0..26u8))).collect();
                self.vehicles.push(Vehicle {
                    commune: c as u16,
                    local: k as u32 + 1,
                    home,
                    class: classes.next().unwrap_or(0),
                    plate: format!("{}-{:03}-{}", &letters[..2], rng.random_range(100..1000), &letters[2..]),
                });
            }
        }
    }

    fn place_weather(&mut self, counts: &[usize], rng: &mut ChaCha8Rng) {
        for (c, &count) in counts.iter().enumerate() {
            let grid = &self.communes[c].streets;
            let centre = self.communes[c].centre.to_xy();
            for (k, node) in pick_central_nodes(grid, centre, count, 6, rng).into_iter().enumerate() {
                let Some(at) = grid.node(node) else { continue };
                let (row, col) = grid.crossing_streets(node);
                self.weather.push(WeatherStation {
                    site: Site {
                        commune: c as u16,
                        local: k as u32 + 1,
                        at: at.offset(10.0, 10.0),
                        street: row,
                        house_number: 0,
                        cross_street: Some(col),
                    },
                });
            }
        }
    }

    fn place_parking(&mut self, counts: &[usize], rng: &mut ChaCha8Rng) {
        const SPOTS_PER_ROW: usize = 10;
        const SPOT_LENGTH_M: f64 = 5.5;
        for (c, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let grid = &self.communes[c].streets;
            let rows = count.div_ceil(SPOTS_PER_ROW);
            let edges = central_edges(grid, self.communes[c].centre.to_xy(), rows, 3, rng);
            let mut local = 0u32;
            for (k, (size, e)) in apportion(count, &vec![1.0; rows]).into_iter().zip(edges).enumerate() {
                let (Some(a), Some(b)) = (grid.node(e.a), grid.node(e.b)) else {
                    continue;
                };
                let len = a.distance(b).max(1.0);
                let (nx, ny) = ((b.y - a.y) / len * 4.0, -(b.x - a.x) / len * 4.0);
                let step = (SPOT_LENGTH_M / len).min(1.0 / (size as f64 + 1.0));
                let site_ix = self.parking_sites.len() as u32;
                let spot_start = self.parking_spots.len() as u32;
                for n in 0..size {
                    let t = step * (n as f64 + 1.0);
                    local += 1;
                    self.parking_spots.push(ParkingSpot {
                        site: Site {
                            commune: c as u16,
                            local,
                            at: a.lerp(b, t).offset(nx, ny),
                            street: e.street,
                            house_number: grid.house_number(e, t),
                            cross_street: None,
                        },
                        parking_site: site_ix,
                        dev_eui: 0x70b3_d5e7_5e00_0000 + u64::from(spot_start) + n as u64,
                    });
                }
                self.parking_sites.push(ParkingSite {
                    site: Site {
                        commune: c as u16,
                        local: k as u32 + 1,
                        at: a.lerp(b, step * (size as f64 + 1.0) / 2.0).offset(nx, ny),
                        street: e.street,
                        house_number: grid.house_number(e, 0.0),
                        cross_street: None,
                    },
                    spots: spot_start..self.parking_spots.len() as u32,
                });
            }
        }
    }

    fn place_waste(&mut self, counts: &[usize], rng: &mut ChaCha8Rng) {
        for (c, &count) in counts.iter().enumerate() {
            let grid = &self.communes[c].streets;
            let edges = central_edges(grid, self.communes[c].centre.to_xy(), count, 4, rng);
            for (k, e) in edges.into_iter().enumerate() {
                let (Some(a), Some(b)) = (grid.node(e.a), grid.node(e.b)) else {
                    continue;
                };
                let t = rng.random_range(0.2..0.8);
                let underground = rng.random_bool(0.3);
                let index = self.waste.len() as u64;
                self.waste.push(WasteContainer {
                    site: Site {
                        commune: c as u16,
                        local: k as u32 + 1,
                        at: a.lerp(b, t).offset(3.0, 0.0),
                        street: e.street,
                        house_number: grid.house_number(e, t),
                        cross_street: None,
                    },
                    waste_kind: WASTE_KINDS[rng.random_range(0..WASTE_KINDS.len())],
                    underground,
                    capacity_l: if underground {
                        5_000
                    } else {
                        [660, 1_100, 3_000][rng.random_range(0..3)]
                    },
                    fill_per_day: rng.random_range(0.08..0.3),
                    dev_eui: 0x0004_a30b_0100_0000 + index,
                });
            }
        }
    }
}

/// A commune's outline: the cell of a weighted bisector diagram, capped at
/// a radius that grows with the population. The separating line between two
/// communes sits at a share of their distance proportional to their sizes, so
/// both cells lie on opposite sides of the same line: outlines never overlap.
fn boundary(ix: usize, centres: &[Xy], sizes: &[f64]) -> Vec<Xy> {
    const RAYS: usize = 32;
    let p = centres[ix];
    let max_radius = (sizes[ix] * 28.0).clamp(1_500.0, 4_500.0);
    (0..RAYS)
        .map(|r| {
            let angle = std::f64::consts::TAU * r as f64 / RAYS as f64;
            let (uy, ux) = angle.sin_cos();
            let mut t = max_radius;
            for (q_ix, q) in centres.iter().enumerate() {
                if q_ix == ix {
                    continue;
                }
                let (dx, dy) = (q.x - p.x, q.y - p.y);
                let along = ux * dx + uy * dy;
                if along > 0.0 {
                    let share = sizes[ix] / (sizes[ix] + sizes[q_ix]);
                    t = t.min(share * (dx * dx + dy * dy) / along);
                }
            }
            // Stay a little inside the line so neighbours never touch.
            p.offset(ux * t * 0.98, uy * t * 0.98)
        })
        .collect()
}

/// `count` distinct nodes drawn among the `spread × count` most central ones
/// (repeating only when the commune has fewer nodes than asked).
fn pick_central_nodes(grid: &StreetGrid, centre: Xy, count: usize, spread: usize, rng: &mut ChaCha8Rng) -> Vec<NodeIx> {
    let mut nodes: Vec<(NodeIx, f64)> = grid.nodes().map(|(n, p)| (n, p.distance(centre))).collect();
    nodes.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    nodes.truncate((count * spread).max(1));
    let mut pool: Vec<NodeIx> = nodes.into_iter().map(|(n, _)| n).collect();
    pool.shuffle(rng);
    (0..count)
        .filter_map(|k| pool.get(k % pool.len().max(1)).copied())
        .collect()
}

/// `count` street sections drawn among the `spread × count` most central ones.
fn central_edges(grid: &StreetGrid, centre: Xy, count: usize, spread: usize, rng: &mut ChaCha8Rng) -> Vec<Edge> {
    let mut edges: Vec<(Edge, f64)> = grid
        .edges()
        .filter_map(|e| Some((e, grid.node(e.a)?.lerp(grid.node(e.b)?, 0.5).distance(centre))))
        .collect();
    edges.sort_by(|a, b| a.1.total_cmp(&b.1));
    edges.truncate((count * spread).max(1));
    let mut pool: Vec<Edge> = edges.into_iter().map(|(e, _)| e).collect();
    pool.shuffle(rng);
    (0..count)
        .filter_map(|k| pool.get(k % pool.len().max(1)).copied())
        .collect()
}
