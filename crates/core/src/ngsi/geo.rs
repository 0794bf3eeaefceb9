//! NGSI-LD geo-queries (ETSI GS CIM 009 §4.10): `georel`, `geometry`,
//! `coordinates` and `geoproperty`, checked against an entity's GeoProperty.
//!
//! Topological relations (`within`, `intersects`...) are computed in the
//! lon/lat plane, as GeoJSON defines them; distances (`near`) on a sphere
//! (haversine, meters), which is what a "within 300 m" question means.

use std::fmt;

use geo::{
    BoundingRect, Closest, Coord, Distance, Geometry, Haversine, HaversineClosestPoint, Intersects, LineString,
    MultiLineString, MultiPoint, MultiPolygon, Point, Polygon, Relate,
};
use serde_json::Value;

use crate::Entity;

/// Most positions in a query's geometry.
pub const MAX_POSITIONS: usize = 10_000;
/// Longest `coordinates` text accepted, in bytes (10,000 positions fit easily).
pub const MAX_COORDINATES_LEN: usize = 512 * 1024;
/// Mean Earth radius used by [`Haversine`] (GRS80), in meters.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeoQueryError {
    #[error("invalid georel '{georel}': {reason}")]
    Georel { georel: String, reason: String },
    #[error("invalid geometry: {0}")]
    Geometry(String),
    #[error("invalid coordinates: {0}")]
    Coordinates(String),
    #[error("invalid geoproperty '{0}': expected an attribute name")]
    GeoProperty(String),
    #[error("geo-query too complex: {what} exceeds the maximum of {max}")]
    TooComplex { what: &'static str, max: usize },
}

/// How the entity's geometry must relate to the query's geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeoRel {
    /// Within `max_distance` meters and/or beyond `min_distance` meters.
    Near {
        max_distance: Option<f64>,
        min_distance: Option<f64>,
    },
    Within,
    Contains,
    Intersects,
    Disjoint,
    Equals,
    Overlaps,
}

/// A parsed geo-query.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    pub georel: GeoRel,
    pub geometry: Geometry<f64>,
    /// The GeoProperty compared, `location` by default.
    pub geoproperty: String,
}

impl GeoQuery {
    /// Parses the four geo-query parameters (already percent-decoded).
    pub fn parse(
        georel: &str,
        geometry: &str,
        coordinates: &str,
        geoproperty: Option<&str>,
    ) -> Result<Self, GeoQueryError> {
        let georel = parse_georel(georel)?;
        if coordinates.len() > MAX_COORDINATES_LEN {
            return Err(GeoQueryError::TooComplex {
                what: "coordinates length in bytes",
                max: MAX_COORDINATES_LEN,
            });
        }
        let coords: Value = serde_json::from_str(coordinates).map_err(|e| GeoQueryError::Coordinates(e.to_string()))?;
        let geometry = to_geometry(geometry, &coords, MAX_POSITIONS)?;
        if matches!(georel, GeoRel::Within) && !matches!(geometry, Geometry::Polygon(_) | Geometry::MultiPolygon(_)) {
            return Err(GeoQueryError::Georel {
                georel: "within".into(),
                reason: "needs a Polygon or MultiPolygon geometry".into(),
            });
        }
        let geoproperty = match geoproperty {
            None => "location".to_owned(),
            Some(g)
                if !g.is_empty()
                    && g.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@')) =>
            {
                g.to_owned()
            }
            Some(g) => return Err(GeoQueryError::GeoProperty(g.chars().take(64).collect())),
        };
        Ok(Self {
            georel,
            geometry,
            geoproperty,
        })
    }

    /// Whether the entity's geoproperty stands in the asked relation to the
    /// query's geometry. An entity without a readable geometry never matches.
    pub fn matches(&self, entity: &Entity) -> bool {
        let Some(attr) = entity.attributes.get(&self.geoproperty) else {
            return false;
        };
        let Some(kind) = attr.value.get("type").and_then(Value::as_str) else {
            return false;
        };
        let Some(coords) = attr.value.get("coordinates") else {
            return false;
        };
        // Stored geometries are not capped: a district outline may be long.
        let Ok(own) = to_geometry(kind, coords, usize::MAX) else {
            return false;
        };
        self.relates(&own)
    }

    /// Whether `own` (an entity's geometry) satisfies the relation.
    pub fn relates(&self, own: &Geometry<f64>) -> bool {
        let q = &self.geometry;
        match self.georel {
            GeoRel::Near {
                max_distance,
                min_distance,
            } => {
                let d = distance_m(own, q);
                max_distance.is_none_or(|m| d <= m) && min_distance.is_none_or(|m| d >= m)
            }
            GeoRel::Within => own.relate(q).is_within(),
            GeoRel::Contains => own.relate(q).is_contains(),
            GeoRel::Intersects => own.intersects(q),
            GeoRel::Disjoint => !own.intersects(q),
            GeoRel::Equals => own.relate(q).is_equal_topo(),
            GeoRel::Overlaps => own.relate(q).is_overlaps(),
        }
    }

    /// A lon/lat rectangle `([min_lon, min_lat], [max_lon, max_lat])` that
    /// every matching geometry intersects, to pick candidates from a spatial
    /// index before [`GeoQuery::matches`]; `None` when matches are unbounded.
    pub fn bounding_box(&self) -> Option<([f64; 2], [f64; 2])> {
        let rect = self.geometry.bounding_rect()?;
        let (min, max) = (rect.min(), rect.max());
        match self.georel {
            GeoRel::Disjoint => None,
            GeoRel::Near { max_distance: None, .. } => None,
            GeoRel::Near {
                max_distance: Some(d), ..
            } => Some(expand(min, max, d)),
            _ => Some(([min.x, min.y], [max.x, max.y])),
        }
    }
}

/// Grows a lon/lat rectangle by `meters` on every side. Latitude degrees are
/// of constant length; longitude degrees shrink by cos(latitude), so the
/// latitude farthest from the equator gives the widest (safe) margin.
fn expand(min: Coord<f64>, max: Coord<f64>, meters: f64) -> ([f64; 2], [f64; 2]) {
    // A little slack so rounding never drops a point lying right on the circle.
    let dlat = (meters / EARTH_RADIUS_M).to_degrees() * 1.001 + 1e-9;
    let (lat_lo, lat_hi) = (min.y - dlat, max.y + dlat);
    if lat_lo <= -90.0 || lat_hi >= 90.0 {
        // A pole is within reach: every longitude is.
        return ([-180.0, lat_lo.max(-90.0)], [180.0, lat_hi.min(90.0)]);
    }
    let widest = lat_lo.abs().max(lat_hi.abs());
    let dlon = dlat / widest.to_radians().cos();
    let (lon_lo, lon_hi) = (min.x - dlon, max.x + dlon);
    if lon_lo < -180.0 || lon_hi > 180.0 {
        // Crossing the antimeridian: a single rectangle must span all longitudes.
        return ([-180.0, lat_lo], [180.0, lat_hi]);
    }
    ([lon_lo, lat_lo], [lon_hi, lat_hi])
}

/// The great-circle distance between two geometries, in meters (0 when they touch).
fn distance_m(a: &Geometry<f64>, b: &Geometry<f64>) -> f64 {
    if a.intersects(b) {
        return 0.0;
    }
    let from_points = |points: &Geometry<f64>, other: &Geometry<f64>| -> f64 {
        point_list(points)
            .into_iter()
            .map(|p| point_distance_m(p, other))
            .fold(f64::INFINITY, f64::min)
    };
    // Disjoint shapes are closest at a vertex of one of them (exactly in the
    // plane, closely enough on a city's scale).
    from_points(a, b).min(from_points(b, a))
}

fn point_distance_m(p: Point<f64>, g: &Geometry<f64>) -> f64 {
    match g.haversine_closest_point(&p) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(c) => Haversine.distance(p, c),
        Closest::Indeterminate => point_list(g)
            .into_iter()
            .map(|v| Haversine.distance(p, v))
            .fold(f64::INFINITY, f64::min),
    }
}

fn point_list(g: &Geometry<f64>) -> Vec<Point<f64>> {
    use geo::CoordsIter;
    g.coords_iter().map(Point::from).collect()
}

fn parse_georel(text: &str) -> Result<GeoRel, GeoQueryError> {
    let bad = |reason: &str| GeoQueryError::Georel {
        georel: text.chars().take(64).collect(),
        reason: reason.to_owned(),
    };
    let mut parts = text.split(';');
    let name = parts.next().unwrap_or_default();
    let rel = match name {
        "near" => {
            let (mut max_distance, mut min_distance) = (None, None);
            for modifier in parts.by_ref() {
                let (key, value) = modifier
                    .split_once("==")
                    .ok_or_else(|| bad("expected 'maxDistance==<meters>' or 'minDistance==<meters>' after 'near;'"))?;
                let meters = value
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.0)
                    .ok_or_else(|| bad("a distance must be a non-negative number of meters"))?;
                let slot = match key {
                    "maxDistance" => &mut max_distance,
                    "minDistance" => &mut min_distance,
                    _ => return Err(bad("near takes maxDistance or minDistance")),
                };
                if slot.replace(meters).is_some() {
                    return Err(bad("a distance is given twice"));
                }
            }
            if max_distance.is_none() && min_distance.is_none() {
                return Err(bad("near needs maxDistance==<meters> or minDistance==<meters>"));
            }
            return Ok(GeoRel::Near {
                max_distance,
                min_distance,
            });
        }
        "within" => GeoRel::Within,
        "contains" => GeoRel::Contains,
        "intersects" => GeoRel::Intersects,
        "disjoint" => GeoRel::Disjoint,
        "equals" => GeoRel::Equals,
        "overlaps" => GeoRel::Overlaps,
        _ => {
            return Err(bad(
                "expected near;maxDistance==M, near;minDistance==M, within, contains, intersects, disjoint, equals or overlaps",
            ));
        }
    };
    if parts.next().is_some() {
        return Err(bad("only near takes modifiers"));
    }
    Ok(rel)
}

/// Reads GeoJSON `coordinates` for the geometry `kind`, validating every
/// position and ring, with at most `max_positions` positions.
pub fn to_geometry(kind: &str, coords: &Value, max_positions: usize) -> Result<Geometry<f64>, GeoQueryError> {
    let mut reader = Reader {
        positions: 0,
        max_positions,
    };
    let geometry = match kind {
        "Point" => Geometry::Point(Point::from(reader.position(coords)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint::new(
            reader
                .list(coords)?
                .iter()
                .map(|c| reader.position(c).map(Point::from))
                .collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(reader.line(coords)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString::new(
            reader
                .list(coords)?
                .iter()
                .map(|c| reader.line(c))
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(reader.polygon(coords)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon::new(
            reader
                .list(coords)?
                .iter()
                .map(|c| reader.polygon(c))
                .collect::<Result<_, _>>()?,
        )),
        other => {
            return Err(GeoQueryError::Geometry(format!(
                "'{}' is not one of Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon",
                other.chars().take(64).collect::<String>()
            )));
        }
    };
    Ok(geometry)
}

struct Reader {
    positions: usize,
    max_positions: usize,
}

impl Reader {
    fn list<'v>(&self, v: &'v Value) -> Result<&'v Vec<Value>, GeoQueryError> {
        v.as_array()
            .ok_or_else(|| GeoQueryError::Coordinates(format!("expected an array, found {}", short(v))))
    }

    fn position(&mut self, v: &Value) -> Result<Coord<f64>, GeoQueryError> {
        self.positions += 1;
        if self.positions > self.max_positions {
            return Err(GeoQueryError::TooComplex {
                what: "number of positions",
                max: self.max_positions,
            });
        }
        let bad =
            || GeoQueryError::Coordinates(format!("expected a [longitude, latitude] position, found {}", short(v)));
        let items = v.as_array().ok_or_else(bad)?;
        if !(2..=3).contains(&items.len()) {
            return Err(bad());
        }
        let lon = items[0].as_f64().ok_or_else(bad)?;
        let lat = items[1].as_f64().ok_or_else(bad)?;
        if !(-180.0..=180.0).contains(&lon) {
            return Err(GeoQueryError::Coordinates(format!(
                "longitude {lon} is outside -180..180"
            )));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(GeoQueryError::Coordinates(format!("latitude {lat} is outside -90..90")));
        }
        Ok(Coord { x: lon, y: lat })
    }

    fn line(&mut self, v: &Value) -> Result<LineString<f64>, GeoQueryError> {
        let coords = self
            .list(v)?
            .iter()
            .map(|c| self.position(c))
            .collect::<Result<Vec<_>, _>>()?;
        if coords.len() < 2 {
            return Err(GeoQueryError::Coordinates(
                "a LineString needs at least 2 positions".into(),
            ));
        }
        Ok(LineString::new(coords))
    }

    fn polygon(&mut self, v: &Value) -> Result<Polygon<f64>, GeoQueryError> {
        let mut rings = Vec::new();
        for ring in self.list(v)? {
            let coords = self
                .list(ring)?
                .iter()
                .map(|c| self.position(c))
                .collect::<Result<Vec<_>, _>>()?;
            if coords.len() < 4 {
                return Err(GeoQueryError::Coordinates(
                    "a polygon ring needs at least 4 positions".into(),
                ));
            }
            if coords.first() != coords.last() {
                return Err(GeoQueryError::Coordinates(
                    "a polygon ring must be closed: its last position repeats its first".into(),
                ));
            }
            rings.push(LineString::new(coords));
        }
        let mut rings = rings.into_iter();
        let exterior = rings
            .next()
            .ok_or_else(|| GeoQueryError::Coordinates("a Polygon needs at least one ring".into()))?;
        Ok(Polygon::new(exterior, rings.collect()))
    }
}

/// A value cut short for an error message.
fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let cut = (0..=40).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl fmt::Display for GeoRel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Near {
                max_distance,
                min_distance,
            } => {
                f.write_str("near")?;
                if let Some(m) = max_distance {
                    write!(f, ";maxDistance=={m}")?;
                }
                if let Some(m) = min_distance {
                    write!(f, ";minDistance=={m}")?;
                }
                Ok(())
            }
            Self::Within => f.write_str("within"),
            Self::Contains => f.write_str("contains"),
            Self::Intersects => f.write_str("intersects"),
            Self::Disjoint => f.write_str("disjoint"),
            Self::Equals => f.write_str("equals"),
            Self::Overlaps => f.write_str("overlaps"),
        }
    }
}
