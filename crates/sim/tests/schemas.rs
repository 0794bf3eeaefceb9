//! Every entity type with a FIWARE Smart Data Model validates, in key-values
//! form, against the offline schemas in `shared/smart-data-models/`.

use std::path::{Path, PathBuf};

use jsonschema::{Retrieve, Uri};
use serde_json::Value;
use vigie_core::ngsi::key_values as to_key_values;
use vigie_sim::{City, CityConfig, EquipmentKind};

/// Maps the schemas' URLs to the offline copy, as STANDARDS.md explains.
struct Offline(PathBuf);

impl Retrieve for Offline {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let url = uri.as_str();
        let rel = url
            .strip_prefix("https://smart-data-models.github.io/data-models/")
            .or_else(|| url.strip_prefix("https://smart-data-models.github.io/"))
            .ok_or_else(|| format!("refusing to fetch '{url}': offline"))?;
        let rel = rel.split('#').next().unwrap_or(rel);
        let path = self.0.join(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// `<repo>/../shared/smart-data-models`, or `VIGIE_SHARED_DIR/smart-data-models`
/// for checkouts laid out differently (git worktrees).
fn models_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("VIGIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = shared.join("smart-data-models");
    dir.is_dir().then_some(dir)
}

#[test]
fn entities_validate_against_smart_data_models() {
    let Some(dir) = models_dir() else {
        eprintln!(
            "!!!! SKIPPED: shared/smart-data-models not found beside the repository; schema validation did not run !!!!"
        );
        return;
    };
    let city = City::generate(&CityConfig::small(11));
    let schemas = [
        (
            EquipmentKind::Streetlight,
            "dataModel.Streetlighting/Streetlight/schema.json",
        ),
        (
            EquipmentKind::StreetlightControlCabinet,
            "dataModel.Streetlighting/StreetlightControlCabinet/schema.json",
        ),
        (
            EquipmentKind::StreetlightGroup,
            "dataModel.Streetlighting/StreetlightGroup/schema.json",
        ),
        (
            EquipmentKind::TrafficFlowObserved,
            "dataModel.Transportation/TrafficFlowObserved/schema.json",
        ),
        (EquipmentKind::Camera, "dataModel.Device/Camera/schema.json"),
        (EquipmentKind::Vehicle, "dataModel.Transportation/Vehicle/schema.json"),
        (
            EquipmentKind::WeatherObserved,
            "dataModel.Weather/WeatherObserved/schema.json",
        ),
        (
            EquipmentKind::OnStreetParking,
            "dataModel.Parking/OnStreetParking/schema.json",
        ),
        (EquipmentKind::ParkingSpot, "dataModel.Parking/ParkingSpot/schema.json"),
        (
            EquipmentKind::WasteContainer,
            "dataModel.WasteManagement/WasteContainer/schema.json",
        ),
    ];
    let mut failures = Vec::new();
    for (kind, file) in schemas {
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let validator = jsonschema::options()
            .with_retriever(Offline(dir.clone()))
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        // The validator does bite: a wrong `type` is refused.
        let mut wrong = to_key_values(&city.entity(kind, 0).unwrap());
        wrong["type"] = Value::String("NotThisModel".into());
        assert!(!validator.is_valid(&wrong), "{file} accepted a wrong type");
        let mut checked = 0;
        for ix in (0..city.count(kind)).step_by(7) {
            let entity = city.entity(kind, ix).unwrap();
            let kv = to_key_values(&entity);
            for error in validator.iter_errors(&kv) {
                failures.push(format!(
                    "{} {}: {error} at {}",
                    kind.entity_type(),
                    entity.id,
                    error.instance_path()
                ));
            }
            checked += 1;
        }
        eprintln!("{:>26}: {checked} entities checked against {file}", kind.entity_type());
        assert!(checked > 0, "{kind:?}");
    }
    failures.truncate(20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
