//! Entity renderings beyond the plain normalized form: the concise (4.5.18)
//! and simplified (`keyValues`, 4.5.4) forms, the language filter `lang`
//! (4.15), and `pick` / `omit` projection of a rendered entity.

use serde_json::{Map, Value};

use super::concise::expand_instance;
use crate::entity::format_timestamp;
use crate::{Attribute, AttributeKind, Entity, is_language_tag};

/// Most language tags one `lang` filter may list.
pub const MAX_LANGUAGES: usize = 16;

/// Which representation of an entity is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Normalized,
    /// Lossless, without what input inference restores (v1.6+).
    Concise,
    /// Lossy: the values alone (`options=keyValues`, `format=simplified`).
    KeyValues,
}

/// How [`render`] shapes an entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderOptions {
    pub format: Format,
    /// `createdAt` / `modifiedAt` of the entity (`options=sysAttrs`).
    pub sys_attrs: bool,
    /// `lang`: LanguageProperties become Properties in the chosen language.
    pub lang: Option<LanguageFilter>,
}

/// The `lang` parameter (4.15): language tags in order of preference, from
/// `fr`, `fr,en`, `en;q=0.5,fr` or `*` (any language).
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageFilter {
    /// Tags by decreasing preference; `*` matches any language.
    tags: Vec<String>,
}

impl LanguageFilter {
    /// Parses `lang`: comma-separated tags, each with an optional `;q=`
    /// weight between 0 and 1 (1 when absent) ordering them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranked: Vec<(f64, String)> = Vec::new();
        for item in text.split(',') {
            if ranked.len() == MAX_LANGUAGES {
                return Err(format!("lang lists more than {MAX_LANGUAGES} languages"));
            }
            let (tag, weight) = match item.trim().split_once(';') {
                None => (item.trim(), 1.0),
                Some((tag, q)) => {
                    let weight = q
                        .trim()
                        .strip_prefix("q=")
                        .and_then(|w| w.parse::<f64>().ok())
                        .filter(|w| (0.0..=1.0).contains(w))
                        .ok_or_else(|| format!("lang has an invalid weight '{}' (expected q=0..1)", q.trim()))?;
                    (tag.trim(), weight)
                }
            };
            if tag != "*" && !is_language_tag(tag) {
                return Err(format!("lang has an invalid language tag '{tag}'"));
            }
            ranked.push((weight, tag.to_owned()));
        }
        // Stable: equal weights keep the order given.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(Self {
            tags: ranked.into_iter().map(|(_, tag)| tag).collect(),
        })
    }

    /// The entry of a languageMap this filter selects: the first preferred tag
    /// the map holds (tags compare without case, RFC 5646), else the `@none`
    /// entry, else the map's first entry: 4.15 asks for any language rather
    /// than none. `None` only for an empty map.
    pub fn choose<'m>(&self, map: &'m Map<String, Value>) -> Option<(&'m String, &'m Value)> {
        let preferred = self.tags.iter().find_map(|tag| {
            if tag == "*" {
                return map.iter().next();
            }
            map.iter().find(|(key, _)| key.eq_ignore_ascii_case(tag))
        });
        preferred
            .or_else(|| map.get_key_value("@none"))
            .or_else(|| map.iter().next())
    }
}

/// The entity in the representation `options` ask for.
pub fn render(entity: &Entity, options: &RenderOptions) -> Value {
    let mut m = Map::with_capacity(5 + entity.attributes.instance_count());
    m.insert("id".into(), Value::String(entity.id.to_string()));
    m.insert("type".into(), Value::String(entity.entity_type.clone()));
    if let Some(scope) = &entity.scope {
        m.insert("scope".into(), Value::String(scope.to_ngsi()));
    }
    if options.sys_attrs {
        if let Some(t) = entity.created_at {
            m.insert("createdAt".into(), Value::String(format_timestamp(t)));
        }
        if let Some(t) = entity.modified_at {
            m.insert("modifiedAt".into(), Value::String(format_timestamp(t)));
        }
    }
    let lang = options.lang.as_ref();
    for (name, run) in entity.attributes.by_name() {
        let rendered = match (options.format, run) {
            (Format::KeyValues, [(_, one)]) => simplified(one, lang),
            // Several instances, simplified: `{"dataset": {datasetId | "@none": value}}`.
            (Format::KeyValues, many) => {
                let by_dataset = many
                    .iter()
                    .map(|(_, a)| {
                        (
                            a.dataset_id.clone().unwrap_or_else(|| "@none".into()),
                            simplified(a, lang),
                        )
                    })
                    .collect();
                Value::Object(Map::from_iter([("dataset".to_owned(), Value::Object(by_dataset))]))
            }
            (Format::Normalized, [(_, one)]) => normalized(one, lang),
            (Format::Normalized, many) => Value::Array(many.iter().map(|(_, a)| normalized(a, lang)).collect()),
            (Format::Concise, [(_, one)]) => concise(name, normalized(one, lang), true),
            // In an array, a bare value would read as a list value: objects only.
            (Format::Concise, many) => Value::Array(
                many.iter()
                    .map(|(_, a)| concise(name, normalized(a, lang), false))
                    .collect(),
            ),
        };
        m.insert(name.clone(), rendered);
    }
    Value::Object(m)
}

/// The entity in NGSI-LD simplified form: `id`, `type`, `scope` when it has
/// one, then each attribute's name mapped to its bare value (4.5.4). `id` and
/// `type` come first, as clients read them first.
pub fn key_values(entity: &Entity) -> Value {
    render(
        entity,
        &RenderOptions {
            format: Format::KeyValues,
            ..RenderOptions::default()
        },
    )
}

/// One instance in normalized form; with `lang`, a LanguageProperty becomes
/// a Property holding the chosen string and a `lang` naming its language.
fn normalized(attr: &Attribute, lang: Option<&LanguageFilter>) -> Value {
    let mut v = attr.to_normalized();
    if let (Some(filter), AttributeKind::LanguageProperty, Value::Object(m)) = (lang, attr.kind, &mut v) {
        let chosen = attr.value.as_object().and_then(|map| filter.choose(map));
        if let Some((tag, text)) = chosen {
            m.insert("type".into(), Value::String(AttributeKind::Property.name().to_owned()));
            m.insert("value".into(), text.clone());
            m.insert("lang".into(), Value::String(tag.clone()));
            m.shift_remove("languageMap");
        }
    }
    v
}

/// One attribute's bare value in simplified form (a relationship's target id),
/// as a notification's keyValues data shows it.
pub fn key_value(attr: &Attribute) -> Value {
    simplified(attr, None)
}

/// One instance in simplified form (4.5.4): a Property's or GeoProperty's
/// value, a Relationship's target, a ListRelationship's targets, a
/// ListProperty's values; LanguageProperty, VocabProperty and JsonProperty
/// keep their member's name (`{"languageMap": …}`, `{"vocab": …}`,
/// `{"json": …}`) as the specification asks, so that a keyValues payload sent
/// back is not read as a Property holding an object. With `lang`, a
/// LanguageProperty is its chosen string.
fn simplified(attr: &Attribute, lang: Option<&LanguageFilter>) -> Value {
    match attr.kind {
        AttributeKind::Property
        | AttributeKind::GeoProperty
        | AttributeKind::Relationship
        | AttributeKind::ListProperty => attr.value.clone(),
        AttributeKind::ListRelationship => Value::Array(
            attr.value
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o.get("object").cloned().unwrap_or_else(|| o.clone()))
                .collect(),
        ),
        AttributeKind::LanguageProperty => {
            let chosen = lang.zip(attr.value.as_object()).and_then(|(f, map)| f.choose(map));
            match chosen {
                Some((_, text)) => text.clone(),
                None => wrapped(attr),
            }
        }
        AttributeKind::VocabProperty | AttributeKind::JsonProperty => wrapped(attr),
    }
}

fn wrapped(attr: &Attribute) -> Value {
    Value::Object(Map::from_iter([(
        attr.kind.value_member().to_owned(),
        attr.value.clone(),
    )]))
}

/// One instance in concise form, from its normalized form: drops `type`, and
/// reduces a lone value to the bare value, exactly when input inference
/// ([`expand_instance`]) restores what was dropped, so the form stays
/// lossless whatever the value holds (a Property whose value is a geometry
/// keeps its `type`, one whose value is an object with an `object` member
/// keeps its `value`). Sub-attributes are made concise the same way.
fn concise(name: &str, normalized: Value, bare_allowed: bool) -> Value {
    let Value::Object(full) = &normalized else {
        return normalized;
    };
    let mut short = Map::with_capacity(full.len());
    for (member, value) in full {
        let value = match value {
            Value::Object(sub) if super::concise::is_sub_attribute(member) && sub.contains_key("type") => {
                concise(member, value.clone(), true)
            }
            _ => value.clone(),
        };
        short.insert(member.clone(), value);
    }
    let restores = |candidate: &Value| expand_instance(name, candidate).is_ok_and(|back| back == normalized);
    let mut untyped = short.clone();
    untyped.shift_remove("type");
    if bare_allowed
        && untyped.len() == 1
        && let Some(bare) = untyped.get("value")
        && restores(bare)
    {
        return bare.clone();
    }
    let untyped = Value::Object(untyped);
    if restores(&untyped) {
        untyped
    } else {
        Value::Object(short)
    }
}

/// Keeps (`pick`) and then removes (`omit`) members of a rendered entity.
/// `id` and `type` stay unless `omit` names them: an entity without them
/// cannot be told apart, so `pick` keeps them whether or not it names them.
/// Anything but a JSON object is left as it is.
pub fn project(value: &mut Value, pick: Option<&[String]>, omit: Option<&[String]>) {
    let Value::Object(members) = value else {
        return;
    };
    if let Some(pick) = pick {
        members.retain(|name, _| name == "id" || name == "type" || pick.iter().any(|p| p == name));
    }
    if let Some(omit) = omit {
        members.retain(|name, _| !omit.iter().any(|o| o == name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntityId;
    use crate::ngsi::entity_from_concise;
    use serde_json::json;

    fn sample() -> Entity {
        let v = json!({
            "id": "urn:ngsi-ld:Streetlight:dijon:1",
            "type": "Streetlight",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04, 47.32]}},
            "powerState": {"type": "Property", "value": "on"},
            "power": {"type": "Property", "value": 38.5, "unitCode": "WTT",
                      "accuracy": {"type": "Property", "value": 0.5}},
            "shape": {"type": "Property", "value": {"type": "Point", "coordinates": [1.0, 2.0]}},
            "odd": {"type": "Property", "value": {"object": "urn:x:1"}},
            "refCabinet": {"type": "Relationship", "object": "urn:ngsi-ld:Cabinet:dijon:1"},
            "route": {"type": "ListRelationship", "objectList": [{"object": "urn:x:1"}, {"object": "urn:x:2"}]},
            "name": {"type": "LanguageProperty", "languageMap": {"fr": "Lampadaire", "en": "Streetlight"}},
            "lampType": {"type": "VocabProperty", "vocab": "led"},
            "config": {"type": "JsonProperty", "json": {"id": "raw", "dim": [1, 2]}},
            "levels": {"type": "ListProperty", "valueList": [10, 50, 100]},
            "illuminance": [
                {"type": "Property", "value": 12},
                {"type": "Property", "value": 14, "datasetId": "urn:ngsi-ld:dataset:lux"}
            ]
        });
        entity_from_concise(&v).unwrap()
    }

    fn with(format: Format, lang: Option<&str>) -> RenderOptions {
        RenderOptions {
            format,
            sys_attrs: false,
            lang: lang.map(|l| LanguageFilter::parse(l).unwrap()),
        }
    }

    #[test]
    fn concise_drops_only_what_inference_restores() {
        let e = sample();
        let v = render(&e, &with(Format::Concise, None));
        assert_eq!(v["powerState"], "on");
        assert_eq!(v["location"], json!({"type": "Point", "coordinates": [5.04, 47.32]}));
        assert_eq!(v["power"], json!({"value": 38.5, "unitCode": "WTT", "accuracy": 0.5}));
        // A Property holding a geometry would read back as a GeoProperty.
        assert_eq!(v["shape"]["type"], "Property");
        assert_eq!(v["odd"], json!({"value": {"object": "urn:x:1"}}));
        assert_eq!(v["refCabinet"], json!({"object": "urn:ngsi-ld:Cabinet:dijon:1"}));
        assert_eq!(
            v["route"],
            json!({"objectList": [{"object": "urn:x:1"}, {"object": "urn:x:2"}]})
        );
        assert_eq!(v["lampType"], json!({"vocab": "led"}));
        assert_eq!(
            v["illuminance"],
            json!([{"value": 12}, {"value": 14, "datasetId": "urn:ngsi-ld:dataset:lux"}])
        );
        // Lossless: read back, it is the same entity.
        assert_eq!(entity_from_concise(&v), Ok(e));
    }

    #[test]
    fn key_values_of_every_kind() {
        let v = key_values(&sample());
        assert_eq!(v["location"]["type"], "Point");
        assert_eq!(v["power"], 38.5);
        assert_eq!(v["refCabinet"], "urn:ngsi-ld:Cabinet:dijon:1");
        assert_eq!(v["route"], json!(["urn:x:1", "urn:x:2"]));
        assert_eq!(
            v["name"],
            json!({"languageMap": {"fr": "Lampadaire", "en": "Streetlight"}})
        );
        assert_eq!(v["lampType"], json!({"vocab": "led"}));
        assert_eq!(v["config"], json!({"json": {"id": "raw", "dim": [1, 2]}}));
        assert_eq!(v["levels"], json!([10, 50, 100]));
        assert_eq!(
            v["illuminance"],
            json!({"dataset": {"@none": 12, "urn:ngsi-ld:dataset:lux": 14}})
        );
    }

    #[test]
    fn lang_picks_one_language() {
        let e = sample();
        let normalized = render(&e, &with(Format::Normalized, Some("en")));
        assert_eq!(
            normalized["name"],
            json!({"type": "Property", "value": "Streetlight", "lang": "en"})
        );
        assert_eq!(key_values(&e)["name"]["languageMap"]["fr"], "Lampadaire");
        assert_eq!(
            render(&e, &with(Format::KeyValues, Some("de,FR")))["name"],
            "Lampadaire"
        );
        assert_eq!(
            render(&e, &with(Format::KeyValues, Some("fr;q=0.4,en;q=0.9")))["name"],
            "Streetlight"
        );
        assert_eq!(
            render(&e, &with(Format::Concise, Some("fr")))["name"],
            json!({"value": "Lampadaire", "lang": "fr"})
        );

        let map = |v: Value| v.as_object().cloned().unwrap();
        let filter = LanguageFilter::parse("de").unwrap();
        let with_none = map(json!({"fr": "a", "@none": "b"}));
        assert_eq!(filter.choose(&with_none).map(|(t, _)| t.as_str()), Some("@none"));
        let without = map(json!({"it": "x", "fr": "y"}));
        assert_eq!(
            filter.choose(&without).map(|(t, _)| t.as_str()),
            Some("it"),
            "any language rather than none"
        );
        assert_eq!(filter.choose(&Map::new()), None);
    }

    #[test]
    fn bad_lang_filters_are_named() {
        for (text, needle) in [
            ("fr,", "invalid language tag ''"),
            ("fr;q=2", "invalid weight 'q=2'"),
            ("fr;w=1", "invalid weight"),
            ("français", "invalid language tag 'français'"),
        ] {
            let err = LanguageFilter::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let many = vec!["fr"; MAX_LANGUAGES + 1].join(",");
        assert!(LanguageFilter::parse(&many).unwrap_err().contains("more than 16"));
        assert!(LanguageFilter::parse("*").is_ok());
    }

    #[test]
    fn normalized_rendering_matches_the_entity_own() {
        let e = sample();
        assert_eq!(render(&e, &RenderOptions::default()), e.to_normalized(false));
        let mut e = Entity::new(EntityId::new("urn:x:1").unwrap(), "T", None);
        e.created_at = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let sys = RenderOptions {
            sys_attrs: true,
            ..RenderOptions::default()
        };
        assert_eq!(render(&e, &sys), e.to_normalized(true));
    }
}
