//! Geo-query parsing and matching: the input is split on newlines into
//! georel, geometry, coordinates and an optional geoproperty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use vigie_core::ngsi::GeoQuery;
use vigie_core::{Attribute, AttributeKind, Entity, EntityId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let (Some(georel), Some(geometry), Some(coordinates)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let geoproperty = parts.next();
    let Ok(gq) = GeoQuery::parse(georel, geometry, coordinates, geoproperty) else {
        return;
    };
    let _ = gq.bounding_box();
    let Ok(id) = EntityId::new("urn:x:1") else {
        return;
    };
    // The query's own geometry as an entity, and a few fixed shapes.
    let shapes = [
        json!({"type": geometry, "coordinates": serde_json::from_str::<serde_json::Value>(coordinates).ok()}),
        json!({"type": "Point", "coordinates": [5.0415, 47.322]}),
        json!({"type": "Polygon", "coordinates": [[[5.03, 47.31], [5.05, 47.31], [5.05, 47.33], [5.03, 47.31]]]}),
        json!({"type": "LineString", "coordinates": [[5.0, 47.0], [5.0, 47.0]]}),
    ];
    for shape in shapes {
        let name = geoproperty.unwrap_or("location");
        let e = Entity::new(id.clone(), "T", None).with(name, Attribute::of_kind(AttributeKind::GeoProperty, shape));
        let _ = gq.matches(&e);
    }
});
