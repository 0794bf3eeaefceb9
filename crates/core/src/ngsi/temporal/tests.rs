use serde_json::{Value, json};

use super::*;
use crate::{Attribute, AttributeKind, Entity, EntityId, Scope};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn parse(pairs: &[(&str, &str)]) -> Result<TemporalQuery, TemporalError> {
    TemporalQuery::parse(&TemporalParams::from_lookup(|k| {
        pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| *v)
    }))
}

fn error_of(pairs: &[(&str, &str)]) -> String {
    parse(pairs).unwrap_err().to_string()
}

#[test]
fn defaults_are_the_whole_normalized_history() {
    let q = parse(&[]).unwrap();
    assert_eq!(q, TemporalQuery::default());
    assert_eq!(q.bounds(), (None, None));
    assert!(q.needs_extent());
}

#[test]
fn timerel_sets_half_open_bounds() {
    let t = "2018-08-01T12:00:00Z";
    let q = parse(&[("timerel", "before"), ("timeAt", t)]).unwrap();
    assert_eq!(q.bounds(), (None, Some(ts(t))));
    let q = parse(&[("timerel", "after"), ("timeAt", t)]).unwrap();
    assert_eq!(q.bounds(), (Some(ts(t)), None));
    let q = parse(&[
        ("timerel", "between"),
        ("timeAt", t),
        ("endTimeAt", "2018-08-01T14:00:00+01:00"),
    ])
    .unwrap();
    assert_eq!(q.timerel, Some(TimeRel::Between(ts(t), ts("2018-08-01T13:00:00Z"))));
    assert_eq!(q.bounds(), (Some(ts(t)), Some(ts("2018-08-01T13:00:00Z"))));
    assert!(!q.needs_extent());
}

#[test]
fn bad_parameters_are_named() {
    let t = "2018-08-01T12:00:00Z";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("timerel", "between"), ("timeAt", t)],
            "'endTimeAt' is required with timerel=between",
        ),
        (
            vec![
                ("timerel", "between"),
                ("timeAt", t),
                ("endTimeAt", "2018-08-01T11:00:00Z"),
            ],
            "'endTimeAt' must be later than timeAt",
        ),
        (
            vec![("timerel", "between"), ("timeAt", t), ("endTimeAt", t)],
            "'endTimeAt' must be later than timeAt",
        ),
        (vec![("timerel", "before")], "'timeAt' is required with timerel=before"),
        (vec![("timeAt", t)], "'timerel' is required"),
        (
            vec![("timerel", "during"), ("timeAt", t)],
            "'timerel' 'during' is not one of",
        ),
        (
            vec![("timerel", "after"), ("timeAt", "yesterday")],
            "'timeAt' 'yesterday' is not a DateTime",
        ),
        (
            vec![("timerel", "after"), ("timeAt", "2018-08-01T12:00:00")],
            "'timeAt'",
        ),
        (
            vec![("timerel", "after"), ("timeAt", t), ("endTimeAt", t)],
            "'endTimeAt' applies only to timerel=between",
        ),
        (
            vec![("timeproperty", "deletedAt")],
            "'timeproperty' 'deletedAt' is not one of",
        ),
        (vec![("lastN", "0")], "'lastN' '0' is not a positive integer"),
        (vec![("lastN", "-3")], "'lastN' '-3' is not a positive integer"),
        (vec![("lastN", "ten")], "'lastN' 'ten' is not a positive integer"),
        (vec![("lastN", "10001")], "'lastN' 10001 exceeds the maximum of 10000"),
        (vec![("lastN", "99999999999999999999999")], "exceeds the maximum"),
        (
            vec![("options", "aggregatedValues")],
            "'aggrMethods' is required with aggregatedValues",
        ),
        (
            vec![("options", "aggregatedValues"), ("aggrMethods", "avg,mean")],
            "'aggrMethods' 'mean' is not an aggregation method",
        ),
        (vec![("aggrMethods", "avg,,max")], "'aggrMethods' '' is not"),
        (vec![("aggrPeriodDuration", "1H")], "'aggrPeriodDuration'"),
        (
            vec![("options", "temporalValues,aggregatedValues")],
            "'options' cannot ask for both",
        ),
        (vec![("format", "concise")], "'format' 'concise' is not one of"),
    ];
    for (pairs, needle) in cases {
        let err = error_of(&pairs);
        assert!(err.contains(needle), "{pairs:?}: {err}");
        assert!(
            matches!(parse(&pairs), Err(TemporalError::Invalid { .. })),
            "{pairs:?} is a bad request"
        );
    }
    assert!(error_of(&[("aggrMethods", &"avg,".repeat(100))]).contains("longer than"));
}

#[test]
fn representation_comes_from_format_then_options() {
    assert_eq!(
        parse(&[("options", "sysAttrs,temporalValues")]).unwrap().representation,
        TemporalRepresentation::TemporalValues
    );
    assert_eq!(
        parse(&[("format", "temporalValues")]).unwrap().representation,
        TemporalRepresentation::TemporalValues
    );
    assert_eq!(
        parse(&[("format", "normalized"), ("options", "temporalValues")])
            .unwrap()
            .representation,
        TemporalRepresentation::Normalized,
        "format wins over options"
    );
    let q = parse(&[
        ("format", "aggregatedValues"),
        ("aggrMethods", "max, avg,max"),
        ("aggrPeriodDuration", "PT4M"),
        ("lastN", "2"),
        ("timeproperty", "modifiedAt"),
    ])
    .unwrap();
    assert_eq!(
        q.representation,
        TemporalRepresentation::Aggregated(Aggregation {
            methods: vec![AggrMethod::Max, AggrMethod::Avg],
            period: PeriodDuration::parse("PT4M").unwrap(),
        })
    );
    assert_eq!(q.last_n, Some(2));
    assert_eq!(q.time_property, TimeProperty::ModifiedAt);
}

#[test]
fn periods_close_open_ranges_with_the_data() {
    let hourly = |pairs: &[(&str, &str)]| {
        let mut all = vec![
            ("options", "aggregatedValues"),
            ("aggrMethods", "avg"),
            ("aggrPeriodDuration", "PT1H"),
        ];
        all.extend_from_slice(pairs);
        parse(&all).unwrap()
    };
    let extent = Some((ts("2026-11-22T18:10:00Z"), ts("2026-11-22T20:00:00Z")));

    let after = hourly(&[("timerel", "after"), ("timeAt", "2026-11-22T18:00:00Z")]);
    let p = after.periods(extent).unwrap();
    assert_eq!(p.len(), 3, "18h, 19h and the 20h period holding the last instant");
    assert_eq!(p.start(), Some(ts("2026-11-22T18:00:00Z")));

    let before = hourly(&[("timerel", "before"), ("timeAt", "2026-11-22T19:00:00Z")]);
    let p = before.periods(extent).unwrap();
    assert_eq!(
        p.iter().collect::<Vec<_>>(),
        [(ts("2026-11-22T18:10:00Z"), ts("2026-11-22T19:10:00Z"))]
    );
    assert!(before.periods(None).unwrap().is_empty(), "no data, no period");

    let between = hourly(&[
        ("timerel", "between"),
        ("timeAt", "2026-11-22T00:00:00Z"),
        ("endTimeAt", "2026-11-23T00:00:00Z"),
    ]);
    assert_eq!(between.periods(None).unwrap().len(), 24);

    let whole = parse(&[("options", "aggregatedValues"), ("aggrMethods", "sum")]).unwrap();
    assert_eq!(
        whole.periods(extent).unwrap().iter().collect::<Vec<_>>(),
        [(ts("2026-11-22T18:10:00Z"), ts("2026-11-22T20:00:00.000001Z"))]
    );

    let by_minute = parse(&[
        ("options", "aggregatedValues"),
        ("aggrMethods", "sum"),
        ("aggrPeriodDuration", "PT1S"),
        ("timerel", "between"),
        ("timeAt", "2026-01-01T00:00:00Z"),
        ("endTimeAt", "2026-02-01T00:00:00Z"),
    ])
    .unwrap();
    assert!(matches!(
        by_minute.periods(None),
        Err(TemporalError::TooManyPeriods { .. })
    ));
}

fn light() -> Entity {
    let cabinet = EntityId::new("urn:ngsi-ld:StreetlightControlCabinet:dijon:c1").unwrap();
    Entity::new(
        EntityId::new("urn:ngsi-ld:Streetlight:dijon:000001").unwrap(),
        "Streetlight",
        Some(Scope::from_ngsi("/dijon/lighting").unwrap()),
    )
    .with("powerConsumption", Attribute::property(38.5).with_unit("WTT"))
    .with("refCabinet", Attribute::relationship(&cabinet))
    .with(
        "name",
        Attribute::of_kind(AttributeKind::LanguageProperty, json!({"fr": "Lampe", "en": "Lamp"})),
    )
    .with(
        "refGroups",
        Attribute::of_kind(AttributeKind::ListRelationship, json!([{"object": "urn:g:1"}])),
    )
}

fn instance(value: Value, at: &str, unit: Option<&str>) -> Instance {
    Instance {
        observed_at: ts(at),
        value,
        unit_code: unit.map(str::to_owned),
    }
}

fn history() -> Vec<AttributeHistory> {
    vec![
        AttributeHistory {
            name: "powerConsumption".into(),
            instances: vec![
                instance(json!(120), "2018-08-01T12:03:00Z", Some("WTT")),
                instance(json!(80), "2018-08-01T12:05:00Z", None),
            ],
        },
        AttributeHistory {
            name: "refCabinet".into(),
            instances: vec![instance(json!("urn:c:1"), "2018-08-01T12:03:00Z", None)],
        },
        AttributeHistory {
            name: "name".into(),
            instances: vec![instance(json!({"fr": "oui"}), "2018-08-01T12:03:00Z", None)],
        },
        AttributeHistory {
            name: "refGroups".into(),
            instances: vec![instance(
                json!([{"object": "urn:g:1"}, {"object": "urn:g:2"}]),
                "2018-08-01T12:03:00Z",
                None,
            )],
        },
        AttributeHistory {
            name: "position".into(),
            instances: vec![instance(
                json!({"type": "Point", "coordinates": [5.0, 47.0]}),
                "2018-08-01T12:03:00Z",
                None,
            )],
        },
        AttributeHistory {
            name: "empty".into(),
            instances: vec![],
        },
    ]
}

#[test]
fn normalized_lists_instances_with_their_metadata() {
    let v = render_instances(&light(), &history(), false);
    assert_eq!(v["id"], "urn:ngsi-ld:Streetlight:dijon:000001");
    assert_eq!(v["type"], "Streetlight");
    assert_eq!(v["scope"], "/dijon/lighting");
    assert_eq!(
        v["powerConsumption"],
        json!([
            {"type": "Property", "value": 120, "observedAt": "2018-08-01T12:03:00.000Z", "unitCode": "WTT"},
            {"type": "Property", "value": 80, "observedAt": "2018-08-01T12:05:00.000Z"}
        ])
    );
    assert_eq!(
        v["refCabinet"],
        json!([{"type": "Relationship", "object": "urn:c:1", "observedAt": "2018-08-01T12:03:00.000Z"}])
    );
    assert_eq!(v["name"][0]["languageMap"], json!({"fr": "oui"}));
    assert_eq!(
        v["position"][0]["type"], "GeoProperty",
        "a vanished attribute's kind is guessed"
    );
    assert!(v.get("empty").is_none(), "attributes without instances are left out");
}

#[test]
fn temporal_values_use_each_kinds_member() {
    let v = render_instances(&light(), &history(), true);
    assert_eq!(
        v["powerConsumption"],
        json!({"type": "Property", "values": [[120, "2018-08-01T12:03:00.000Z"], [80, "2018-08-01T12:05:00.000Z"]]})
    );
    assert_eq!(
        v["refCabinet"],
        json!({"type": "Relationship", "objects": [["urn:c:1", "2018-08-01T12:03:00.000Z"]]})
    );
    assert_eq!(
        v["name"],
        json!({"type": "LanguageProperty", "languageMaps": [[{"languageMap": {"fr": "oui"}}, "2018-08-01T12:03:00.000Z"]]})
    );
    assert_eq!(
        v["refGroups"],
        json!({"type": "ListRelationship", "objectLists": [[["urn:g:1", "urn:g:2"], "2018-08-01T12:03:00.000Z"]]})
    );
    assert_eq!(v["position"]["values"][0][0]["type"], "Point");
}

#[test]
fn aggregated_values_match_the_specification_example() {
    // Annex C.5.14: max and avg of speed by periods of 4 minutes.
    let q = parse(&[
        ("timerel", "between"),
        ("timeAt", "2018-08-01T12:00:00Z"),
        ("endTimeAt", "2018-08-01T12:08:00Z"),
        ("aggrMethods", "max,avg"),
        ("aggrPeriodDuration", "PT4M"),
        ("format", "aggregatedValues"),
    ])
    .unwrap();
    let TemporalRepresentation::Aggregated(aggregation) = &q.representation else {
        panic!("aggregated")
    };
    let periods = q.periods(None).unwrap();
    let speed = history().remove(0);
    let more = [instance(json!(100), "2018-08-01T12:07:00Z", None)];
    let stats = aggregate(
        speed.instances.iter().chain(&more).map(|i| (i.observed_at, &i.value)),
        &periods,
    );
    let aggregates = [
        AttributeAggregate {
            name: "powerConsumption".into(),
            periods: stats,
        },
        AttributeAggregate {
            name: "refCabinet".into(),
            periods: vec![],
        },
    ];
    let v = render_aggregated(&light(), &aggregates, &periods, &aggregation.methods, None);
    assert_eq!(
        v["powerConsumption"],
        json!({
            "type": "Property",
            "max": [[120, "2018-08-01T12:00:00.000Z", "2018-08-01T12:04:00.000Z"],
                    [100, "2018-08-01T12:04:00.000Z", "2018-08-01T12:08:00.000Z"]],
            "avg": [[120, "2018-08-01T12:00:00.000Z", "2018-08-01T12:04:00.000Z"],
                    [90, "2018-08-01T12:04:00.000Z", "2018-08-01T12:08:00.000Z"]]
        })
    );
    assert_eq!(
        v["refCabinet"]["max"],
        json!([
            [null, "2018-08-01T12:00:00.000Z", "2018-08-01T12:04:00.000Z"],
            [null, "2018-08-01T12:04:00.000Z", "2018-08-01T12:08:00.000Z"]
        ]),
        "every period appears, null where nothing applies"
    );
    assert_eq!(v["scope"], "/dijon/lighting");

    let last = render_aggregated(&light(), &aggregates, &periods, &[AggrMethod::Max], Some(1));
    assert_eq!(
        last["powerConsumption"]["max"],
        json!([[100, "2018-08-01T12:04:00.000Z", "2018-08-01T12:08:00.000Z"]]),
        "lastN keeps the most recent periods"
    );
}
