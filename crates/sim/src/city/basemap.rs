//! The city's base map as GeoJSON, for the console: its street network and
//! its communes' boundaries (the demo has no real map tiles offline).

use serde_json::{Value, json};

use super::City;

/// Five decimals (~1 m) are plenty for a base map and halve its size.
fn round5(v: f64) -> f64 {
    (v * 1e5).round() / 1e5
}

impl City {
    /// Every street segment, one LineString per edge of each commune's grid.
    pub fn streets_geojson(&self) -> Value {
        let features: Vec<Value> = self
            .communes
            .iter()
            .flat_map(|c| {
                c.streets.edges().filter_map(move |e| {
                    let a = c.streets.node(e.a)?.to_lonlat();
                    let b = c.streets.node(e.b)?.to_lonlat();
                    Some(json!({
                        "type": "Feature",
                        "geometry": {"type": "LineString", "coordinates": [
                            [round5(a.lon), round5(a.lat)], [round5(b.lon), round5(b.lat)]]},
                        "properties": {"name": c.streets.street_name(e.street)},
                    }))
                })
            })
            .collect();
        json!({"type": "FeatureCollection", "features": features})
    }

    /// Each commune's boundary, with its id and name.
    pub fn communes_geojson(&self) -> Value {
        let features: Vec<Value> = self
            .communes
            .iter()
            .map(|c| {
                let ring: Vec<[f64; 2]> = c.boundary.iter().map(|p| [round5(p.lon), round5(p.lat)]).collect();
                json!({
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {"id": c.id.as_str(), "name": c.name, "postalCode": c.postal_code},
                })
            })
            .collect();
        json!({"type": "FeatureCollection", "features": features})
    }
}

#[cfg(test)]
mod tests {
    use crate::{City, CityConfig};

    #[test]
    fn the_base_map_covers_every_commune_and_street() {
        let city = City::generate(&CityConfig::small(7));
        let communes = city.communes_geojson();
        assert_eq!(communes["features"].as_array().map(Vec::len), Some(24));
        assert_eq!(communes["features"][0]["properties"]["id"], "dijon");
        let streets = city.streets_geojson();
        let n = streets["features"].as_array().map_or(0, Vec::len);
        assert!(n > 100, "{n} street segments");
        assert_eq!(streets["features"][0]["geometry"]["type"], "LineString");
    }
}
