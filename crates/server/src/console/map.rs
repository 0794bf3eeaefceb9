//! The map's data: the assets in the operator's view, grouped server-side
//! into clusters on a screen grid below a zoom level, so the browser draws a
//! few thousand features whether the city has 30,000 assets or 250,000.
//! The grid is pure (no I/O) and unit-tested; the handler walks the twin.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use vigie_core::Scope;
use vigie_core::status::AssetStatus;

use super::Sight;
use crate::api::{ApiError, AppState, Params};
use crate::security::Caller;

/// Grid cell side, in screen pixels: about one cluster bubble.
const CELL_PX: f64 = 56.0;
/// Most single points sent at once; a view holding more is clustered even at
/// high zoom, so one request never floods the browser.
const MAX_POINTS: usize = 20_000;
/// Web Mercator's latitude limit.
const MAX_LAT: f64 = 85.051_128_78;

/// An asset as the map draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapAsset {
    pub id: String,
    pub entity_type: String,
    pub line: String,
    pub status: AssetStatus,
    pub name: String,
    pub at: [f64; 2],
}

impl MapAsset {
    /// The single-point feature, with short property names (sent by the
    /// thousand, and over server-sent events too).
    pub fn feature(&self) -> Value {
        json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [round6(self.at[0]), round6(self.at[1])]},
            "properties": {
                "id": self.id, "t": self.entity_type, "l": self.line,
                "s": self.status.as_str(), "n": self.name,
            },
        })
    }
}

impl MapAsset {
    /// The asset as a live change carries it.
    pub fn live(&self) -> Value {
        json!({
            "id": self.id, "t": self.entity_type, "l": self.line, "s": self.status.as_str(),
            "n": self.name, "c": [round6(self.at[0]), round6(self.at[1])],
        })
    }
}

/// Micro-degrees (~10 cm) are enough and keep the answer small.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// A lon/lat rectangle: west, south, east, north.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub min: [f64; 2],
    pub max: [f64; 2],
}

impl BoundingBox {
    /// Parses `west,south,east,north` in degrees, clamped to the Web
    /// Mercator world.
    pub fn parse(text: &str) -> Result<Self, String> {
        let numbers: Vec<f64> = text
            .split(',')
            .map(|n| n.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("bbox '{text}' is not four numbers: west,south,east,north"))?;
        let [w, s, e, n] = numbers[..] else {
            return Err(format!("bbox '{text}' is not four numbers: west,south,east,north"));
        };
        if !(w.is_finite() && s.is_finite() && e.is_finite() && n.is_finite()) || w > e || s > n {
            return Err(format!(
                "bbox '{text}' is not a rectangle: west ≤ east and south ≤ north"
            ));
        }
        Ok(Self {
            min: [w.clamp(-180.0, 180.0), s.clamp(-MAX_LAT, MAX_LAT)],
            max: [e.clamp(-180.0, 180.0), n.clamp(-MAX_LAT, MAX_LAT)],
        })
    }
}

/// Web Mercator, the world as the unit square (y down, like tiles).
fn mercator([lon, lat]: [f64; 2]) -> (f64, f64) {
    let x = (lon + 180.0) / 360.0;
    let phi = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let y = (1.0 - (phi.tan() + 1.0 / phi.cos()).ln() / std::f64::consts::PI) / 2.0;
    (x, y)
}

#[derive(Debug, Default)]
struct Cell {
    count: usize,
    sum: [f64; 2],
    by_status: [usize; 5],
    first: Option<MapAsset>,
}

/// Assets gathered for one view: grouped by screen cell when `zoom` is below
/// the clustering limit, one by one otherwise (up to [`MAX_POINTS`]).
pub struct Grid {
    cells_per_side: f64,
    cluster: bool,
    cells: HashMap<(u32, u32), Cell>,
    points: Vec<MapAsset>,
}

impl Grid {
    pub fn new(zoom: f64, cluster_below_zoom: u8) -> Self {
        Self {
            cells_per_side: (256.0 * zoom.exp2() / CELL_PX).max(1.0),
            cluster: zoom < f64::from(cluster_below_zoom),
            cells: HashMap::new(),
            points: Vec::new(),
        }
    }

    /// Adds an asset at `at` in state `status`; `asset` builds its feature
    /// only when it is drawn alone (most assets far out only count).
    pub fn add(&mut self, at: [f64; 2], status: AssetStatus, asset: impl FnOnce() -> MapAsset) {
        if !self.cluster {
            if self.points.len() < MAX_POINTS {
                self.points.push(asset());
                return;
            }
            // Too many for single points: cluster everything from here on.
            self.cluster = true;
            for p in std::mem::take(&mut self.points) {
                let (at, status) = (p.at, p.status);
                self.add_to_cell(at, status, || p);
            }
        }
        self.add_to_cell(at, status, asset);
    }

    fn add_to_cell(&mut self, at: [f64; 2], status: AssetStatus, asset: impl FnOnce() -> MapAsset) {
        let (x, y) = mercator(at);
        let n = self.cells_per_side;
        let key = ((x * n).clamp(0.0, n - 1.0) as u32, (y * n).clamp(0.0, n - 1.0) as u32);
        let cell = self.cells.entry(key).or_default();
        cell.count += 1;
        cell.sum[0] += at[0];
        cell.sum[1] += at[1];
        cell.by_status[status.index()] += 1;
        if cell.first.is_none() {
            cell.first = Some(asset());
        }
    }

    /// Names the assets drawn alone (clusters need none).
    pub fn name(&mut self, name_of: &dyn Fn(&str) -> String) {
        let singles = self.points.iter_mut().chain(
            self.cells
                .values_mut()
                .filter(|c| c.count == 1)
                .filter_map(|c| c.first.as_mut()),
        );
        for asset in singles {
            asset.name = name_of(&asset.id);
        }
    }

    /// The GeoJSON features: single points, and clusters at their members'
    /// centre with their count, their most urgent status and the count by
    /// status. Also the number of assets they stand for.
    pub fn into_features(self) -> (Vec<Value>, usize) {
        let mut total = self.points.len();
        let mut features: Vec<Value> = self.points.iter().map(MapAsset::feature).collect();
        for cell in self.cells.into_values() {
            total += cell.count;
            if cell.count == 1
                && let Some(only) = cell.first
            {
                features.push(only.feature());
                continue;
            }
            let worst = AssetStatus::ALL
                .into_iter()
                .find(|s| cell.by_status[s.index()] > 0)
                .unwrap_or(AssetStatus::Working);
            let mut properties = Map::new();
            properties.insert("count".into(), json!(cell.count));
            properties.insert("s".into(), json!(worst.as_str()));
            for s in AssetStatus::ALL {
                properties.insert(s.as_str().into(), json!(cell.by_status[s.index()]));
            }
            let n = cell.count as f64;
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round6(cell.sum[0] / n), round6(cell.sum[1] / n)]},
                "properties": properties,
            }));
        }
        (features, total)
    }
}

/// What the map layer filters keep: business lines and one commune.
pub struct LayerFilter {
    lines: Option<Vec<String>>,
    commune: Option<String>,
}

impl LayerFilter {
    pub fn from_params(params: &Params) -> Self {
        Self {
            lines: params.get("lines").map(|l| l.split(',').map(str::to_owned).collect()),
            commune: params.get("commune").map(str::to_owned),
        }
    }

    pub fn keeps(&self, scope: Option<&Scope>) -> bool {
        let line = scope.map_or("", |s| s.business_line.as_str());
        let commune = scope.map_or("", |s| s.commune.as_str());
        self.lines.as_ref().is_none_or(|ls| ls.iter().any(|l| l == line))
            && self.commune.as_deref().is_none_or(|c| c == commune)
    }
}

/// `GET /console/api/map?bbox=w,s,e,n&zoom=z[&lines=a,b][&commune=c]`: the
/// assets in view as a GeoJSON FeatureCollection, with `total`, the number
/// of assets the features stand for.
pub async fn features(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Json<Value>, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let bbox = BoundingBox::parse(params.get("bbox").unwrap_or_default()).map_err(ApiError::BadRequestData)?;
    let zoom: f64 = params
        .get("zoom")
        .unwrap_or("0")
        .parse()
        .ok()
        .filter(|z: &f64| (0.0..=24.0).contains(z))
        .ok_or_else(|| ApiError::BadRequestData("zoom must be a number from 0 to 24".into()))?;
    let filter = LayerFilter::from_params(&params);
    let sight = Sight::new(&s, &caller);
    let mut grid = Grid::new(zoom, s.config.console.cluster_below_zoom);
    s.twin.for_each_in(bbox.min, bbox.max, &mut |g| {
        let scope = g.scope.as_deref();
        if filter.keeps(scope) && sight.sees_scope(scope) {
            let status = sight.glance_status(g);
            grid.add(g.at, status, || sight.glance_asset(g, status));
        }
    });
    // Names only for what is drawn alone, read after the walk (the twin's
    // lock is not re-entered).
    grid.name(&|id| s.twin.get(id).map(|e| super::display_name(&e)).unwrap_or_default());
    let (features, total) = grid.into_features();
    Ok(Json(
        json!({"type": "FeatureCollection", "total": total, "features": features}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(grid: &mut Grid, n: u32, at: [f64; 2], status: AssetStatus) {
        grid.add(at, status, || asset(n, at, status));
    }

    fn asset(n: u32, at: [f64; 2], status: AssetStatus) -> MapAsset {
        MapAsset {
            id: format!("urn:ngsi-ld:Streetlight:{n}"),
            entity_type: "Streetlight".into(),
            line: "lighting".into(),
            status,
            name: format!("Light {n}"),
            at,
        }
    }

    #[test]
    fn a_bbox_is_four_ordered_numbers() {
        assert!(BoundingBox::parse("4.9,47.2,5.2,47.4").is_ok());
        assert!(BoundingBox::parse("4.9,47.2,5.2").is_err());
        assert!(BoundingBox::parse("5.2,47.2,4.9,47.4").is_err());
        assert!(BoundingBox::parse("a,b,c,d").is_err());
        assert!(BoundingBox::parse("NaN,1,2,3").is_err());
        let world = BoundingBox::parse("-400,-90,400,90").expect("clamped");
        assert_eq!(world.min, [-180.0, -MAX_LAT]);
    }

    #[test]
    fn far_out_clusters_add_up_and_keep_the_most_urgent_status() {
        let mut grid = Grid::new(10.0, 16);
        for n in 0..1000 {
            let status = if n == 500 {
                AssetStatus::Fault
            } else {
                AssetStatus::Working
            };
            add(&mut grid, n, [5.04 + f64::from(n % 10) * 1e-4, 47.32], status);
        }
        add(&mut grid, 9999, [5.30, 47.50], AssetStatus::Working);
        let (features, total) = grid.into_features();
        assert_eq!(total, 1001);
        assert_eq!(features.len(), 2, "one cluster and one lone asset");
        let cluster = features
            .iter()
            .find(|f| f["properties"]["count"].is_number())
            .expect("a cluster");
        assert_eq!(cluster["properties"]["count"], 1000);
        assert_eq!(cluster["properties"]["s"], "fault");
        assert_eq!(cluster["properties"]["fault"], 1);
        let lone = features
            .iter()
            .find(|f| f["properties"]["id"].is_string())
            .expect("a point");
        assert_eq!(lone["properties"]["id"], "urn:ngsi-ld:Streetlight:9999");
    }

    #[test]
    fn close_up_every_asset_is_its_own_point_until_the_cap() {
        let mut grid = Grid::new(17.0, 16);
        for n in 0..100 {
            add(&mut grid, n, [5.04, 47.32], AssetStatus::Working);
        }
        let (features, total) = grid.into_features();
        assert_eq!((features.len(), total), (100, 100));

        let mut grid = Grid::new(17.0, 16);
        for n in 0..(MAX_POINTS as u32 + 1) {
            add(&mut grid, n, [5.0 + f64::from(n) * 1e-5, 47.32], AssetStatus::Working);
        }
        let (features, total) = grid.into_features();
        assert_eq!(total, MAX_POINTS + 1);
        assert!(features.len() < MAX_POINTS, "clustered once over the cap");
    }
}
