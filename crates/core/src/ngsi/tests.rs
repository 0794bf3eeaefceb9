use proptest::prelude::*;
use serde_json::json;

use super::query::MAX_QUERY_LEN;
use super::*;
use crate::{Attribute, AttributeKind, Entity, EntityId, Scope};

/// A Dijon streetlight as the simulator builds it, plus a few odd attributes.
fn streetlight() -> Entity {
    let at: crate::Timestamp = "2026-11-22T18:00:00Z".parse().unwrap();
    let cabinet = EntityId::new("urn:ngsi-ld:StreetlightControlCabinet:dijon:cab-0001").unwrap();
    let mut address = Attribute::property(json!({"streetAddress": "Rue de la Liberté", "postalCode": "21000"}));
    address
        .extra
        .insert("verified".into(), json!({"type": "Property", "value": true}));
    Entity::new(
        EntityId::new("urn:ngsi-ld:Streetlight:dijon:sl-000123").unwrap(),
        "Streetlight",
        Some(Scope::from_ngsi("/dijon/lighting").unwrap()),
    )
    .with("status", Attribute::property("defectiveLamp").observed(at))
    .with("powerState", Attribute::property("on").observed(at))
    .with("illuminanceLevel", Attribute::property(0.8).observed(at))
    .with("powerConsumption", Attribute::property(38.5).with_unit("WTT").observed(at))
    .with("lanternHeight", Attribute::property(8).with_unit("MTR"))
    .with("dateLastLampChange", Attribute::property("2021-03-04"))
    .with("dateServiceStarted", Attribute::property("2019-05-06T08:30:00Z"))
    .with("switchOnTime", Attribute::property("17:45:00"))
    .with("controllingMethod", Attribute::property("individual"))
    .with("lit", Attribute::property(true))
    .with("tags", Attribute::property(json!(["led", "heritage", 3])))
    .with("address", address)
    .with("refStreetlightControlCabinet", Attribute::relationship(&cabinet))
    .with(
        "refGroups",
        Attribute::of_kind(
            AttributeKind::ListRelationship,
            json!([{"object": "urn:ngsi-ld:StreetlightGroup:dijon:g-1"}, {"object": "urn:ngsi-ld:StreetlightGroup:dijon:g-2"}]),
        ),
    )
    .with("location", Attribute::point(5.0415, 47.3220))
}

fn q(text: &str) -> bool {
    Query::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .matches(&streetlight())
}

fn syntax_error(text: &str) -> (usize, String) {
    match Query::parse(text) {
        Err(QueryError::Syntax { position, message }) => (position, message),
        other => panic!("{text}: expected a syntax error, got {other:?}"),
    }
}

// ------------------------------------------------------------------ q

#[test]
fn each_operator_on_numbers() {
    assert!(q("illuminanceLevel==0.8"));
    assert!(!q("illuminanceLevel==0.9"));
    assert!(q("illuminanceLevel!=0.9"));
    assert!(!q("illuminanceLevel!=0.8"));
    assert!(q("powerConsumption>38"));
    assert!(!q("powerConsumption>38.5"));
    assert!(q("powerConsumption>=38.5"));
    assert!(q("powerConsumption<39"));
    assert!(!q("powerConsumption<38.5"));
    assert!(q("powerConsumption<=38.5"));
    assert!(q("lanternHeight==8"));
    assert!(q("lanternHeight==8.0"));
    assert!(q("lanternHeight>-1e3"));
}

#[test]
fn strings_compare_lexicographically_and_quoted_or_bare() {
    assert!(q("status==\"defectiveLamp\""));
    assert!(q("status==defectiveLamp"));
    assert!(!q("status==\"ok\""));
    assert!(q("status!=\"ok\""));
    assert!(q("status>\"abc\""));
    assert!(q("status<\"e\""));
    assert!(!q("status<\"abc\""));
    assert!(q("address.streetAddress==\"Rue de la Liberté\""));
}

#[test]
fn booleans_and_mismatched_types() {
    assert!(q("lit==true"));
    assert!(!q("lit==false"));
    assert!(q("lit!=false"));
    // Mismatched types never compare (and never panic).
    assert!(!q("status==3"));
    assert!(!q("status>3"));
    assert!(!q("illuminanceLevel==\"0.8\""));
    assert!(!q("illuminanceLevel<\"z\""));
    assert!(!q("lit==\"true\""));
    assert!(!q("location>1"));
    // `!=` holds when the attribute exists and nothing equals.
    assert!(q("status!=3"));
    assert!(!q("missing!=3"));
}

#[test]
fn existence_and_absence() {
    assert!(q("status"));
    assert!(!q("brightness"));
    assert!(q("!brightness"));
    assert!(!q("!status"));
    assert!(q("address.postalCode"));
    assert!(q("!address.city"));
    assert!(q("powerConsumption.unitCode"));
    assert!(q("!status.unitCode"));
}

#[test]
fn and_binds_tighter_than_or() {
    // false;true|true  ==  (false;true)|true
    assert!(q("status==ok;powerState==on|lit==true"));
    // true|true;false  ==  true|(true;false)
    assert!(q("lit==true|powerState==on;status==ok"));
    assert!(!q("(lit==true|powerState==on);status==ok"));
    assert!(!q("status==ok;(powerState==on|lit==true)"));
    assert!(q("((status==defectiveLamp))"));
    assert!(q(" status == defectiveLamp ; powerState == on "));
}

#[test]
fn ranges_and_lists() {
    assert!(q("powerConsumption==30..40"));
    assert!(q("powerConsumption==38.5..40"));
    assert!(q("powerConsumption==30..38.5"));
    assert!(!q("powerConsumption==39..40"));
    assert!(q("powerConsumption!=39..40"));
    assert!(q("status==\"a\"..\"e\""));
    assert!(q("status==ok,defectiveLamp,\"noLamp\""));
    assert!(!q("status==ok,noLamp"));
    assert!(q("status!=ok,noLamp"));
    assert!(!q("status!=ok,defectiveLamp"));
    assert!(q("lanternHeight==1,8,\"x\""));
    assert!(q("dateLastLampChange==2021-01-01..2021-12-31"));
}

#[test]
fn times_compare_as_times() {
    assert!(q("dateLastLampChange==2021-03-04"));
    assert!(q("dateLastLampChange<2022-01-01"));
    assert!(q("dateLastLampChange>2021-03-03T23:00:00Z"));
    assert!(q("dateServiceStarted>2019-05-06T10:00:00+03:00"));
    assert!(!q("dateServiceStarted>2019-05-06T10:00:00+01:00"));
    assert!(q("dateServiceStarted==2019-05-06"));
    assert!(q("dateServiceStarted==2019-05-06T08:30:00"));
    assert!(q("switchOnTime>17:00"));
    assert!(q("switchOnTime==17:45:00"));
    assert!(!q("switchOnTime<17:45"));
    assert!(q("dateServiceStarted<09:00"));
    assert!(q("status.observedAt>=2026-11-22T18:00:00Z"));
    assert!(q("status.observedAt==2026-11-22T19:00:00+01:00"));
    assert!(!q("status.observedAt>2026-11-22T18:00:00.001Z"));
    assert!(q("status.observedAt==2026-11-22"));
    // A time literal against a non-time text does not compare.
    assert!(!q("status<2030-01-01"));
}

#[test]
fn metadata_members() {
    assert!(q("powerConsumption.unitCode==\"WTT\""));
    assert!(q("powerConsumption.unitCode==WTT"));
    assert!(!q("powerConsumption.unitCode==MTR"));
    assert!(!q("powerConsumption.datasetId"));
    assert!(!q("lanternHeight.observedAt"));
}

#[test]
fn paths_into_compound_values() {
    assert!(q("address.postalCode==\"21000\""));
    assert!(q("address[postalCode]==\"21000\""));
    assert!(q("address[postalCode]~=^21"));
    assert!(!q("address.postalCode==21000"));
    assert!(q("location.type==Point"));
    assert!(q("location[coordinates]>47"));
    assert!(q("location.coordinates==5.0415"));
    // A sub-attribute is found when the value has no such key.
    assert!(q("address.verified==true"));
    assert!(!q("address.nope.deeper"));
    assert!(!q("status.sub==1"));
}

#[test]
fn multi_valued_attributes_match_any_element() {
    assert!(q("tags==led"));
    assert!(q("tags==3"));
    assert!(q("tags==\"heritage\",\"x\""));
    assert!(!q("tags==modern"));
    assert!(q("tags!=modern"));
    assert!(!q("tags!=led"));
    assert!(q("tags>2"));
    assert!(q("tags~=^her"));
}

#[test]
fn relationships_compare_their_target() {
    assert!(q(
        "refStreetlightControlCabinet==urn:ngsi-ld:StreetlightControlCabinet:dijon:cab-0001"
    ));
    assert!(q(
        "refStreetlightControlCabinet==\"urn:ngsi-ld:StreetlightControlCabinet:dijon:cab-0001\""
    ));
    assert!(q("refStreetlightControlCabinet~=cab-000[0-9]$"));
    assert!(q("refGroups==urn:ngsi-ld:StreetlightGroup:dijon:g-2"));
    assert!(!q("refGroups==urn:ngsi-ld:StreetlightGroup:dijon:g-3"));
}

#[test]
fn regular_expressions() {
    assert!(q("status~=defective"));
    assert!(q("status~=^defective.*$"));
    assert!(q("status~=(?i)DEFECTIVE"));
    assert!(q("status~=(ok|defectiveLamp)"));
    assert!(q("status~=\"Lamp$\""));
    assert!(q("status~=\"^\\w+$\""));
    assert!(!q("status~=^ok$"));
    assert!(q("status!~=^ok$"));
    assert!(!q("status!~=Lamp"));
    assert!(!q("missing!~=Lamp"));
    assert!(!q("illuminanceLevel~=0"));
    assert!(q("status~=ok|status~=Lamp"));
    assert!(q("status~=[;|)]|powerState==on"));
    let (pos, msg) = syntax_error("status~=(unclosed");
    assert_eq!(pos, 8);
    assert!(msg.contains("invalid regular expression"), "{msg}");
}

#[test]
fn errors_name_what_was_expected_and_where() {
    let (pos, msg) = syntax_error("brightness=5");
    assert_eq!((pos, msg.as_str()), (10, "expected an operator after 'brightness'"));
    assert_eq!(
        Query::parse("brightness=5").unwrap_err().to_string(),
        "expected an operator after 'brightness' at 10"
    );
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "expected an attribute name"),
        ("a==", 3, "expected a value after '=='"),
        ("a==1;", 5, "expected an attribute name"),
        ("a==1|", 5, "expected an attribute name"),
        ("(a==1", 5, "expected ')'"),
        ("a==1)", 4, "unbalanced ')'"),
        ("a==\"open", 3, "unterminated string"),
        ("a>true", 2, "true and false only go with"),
        ("a>1..3", 3, "a range or a list only goes with"),
        ("a<1,2", 3, "a range or a list only goes with"),
        ("a==1..\"x\"", 6, "a range's bounds must be of one kind"),
        ("a==true..false", 3, "a range needs numbers"),
        ("!a==1", 2, "tests that the attribute is absent"),
        ("a.==1", 2, "expected an attribute name after '.'"),
        ("a[b==1", 3, "expected ']'"),
        ("a[]==1", 2, "expected an attribute name after '['"),
        ("a.observedAt.x", 13, "metadata and has no members"),
        ("a==1 b", 5, "expected ';', '|', ')' or the end"),
        ("a==2026-13-01", 3, "invalid date"),
        ("a==25:00", 3, "invalid time"),
        ("a==1e999", 3, "out of range"),
        ("a~=", 3, "expected a regular expression"),
        ("a==\"x\"\"y\"", 6, "expected ';', '|', ')'"),
    ];
    for (text, pos, needle) in cases {
        let (p, m) = syntax_error(text);
        assert!(m.contains(needle), "{text}: {m}");
        assert_eq!(p, *pos, "{text}: {m}");
    }
}

#[test]
fn limits_are_enforced() {
    let long = format!("a=={}", "1".repeat(MAX_QUERY_LEN));
    assert!(matches!(
        Query::parse(&long),
        Err(QueryError::TooComplex { max: 4096, .. })
    ));
    let many = vec!["a==1"; 65].join(";");
    assert!(matches!(
        Query::parse(&many),
        Err(QueryError::TooComplex { max: 64, .. })
    ));
    assert!(Query::parse(&vec!["a==1"; 64].join(";")).is_ok());
    let deep = format!("{}a{}", "(".repeat(17), ")".repeat(17));
    assert!(matches!(
        Query::parse(&deep),
        Err(QueryError::TooComplex { max: 16, .. })
    ));
    assert!(Query::parse(&format!("{}a{}", "(".repeat(16), ")".repeat(16))).is_ok());
    let pattern = format!("a~=\"{}\"", "x".repeat(1025));
    assert!(matches!(
        Query::parse(&pattern),
        Err(QueryError::TooComplex { max: 1024, .. })
    ));
    // Small text, huge automaton.
    assert!(matches!(
        Query::parse("a~=\\w{500}\\w{500}"),
        Err(QueryError::TooComplex { .. })
    ));
    // Unbalanced opening parentheses cannot exhaust the stack.
    assert!(Query::parse(&"(".repeat(4000)).is_err());
}

#[test]
fn display_is_normalized() {
    let cases = [
        ("a==1", "a==1"),
        (" a == 1 ; b ", "a==1;b"),
        ("(a|b);c", "(a|b);c"),
        ("a|(b;c)", "a|b;c"),
        ("((a|b)|c)", "a|b|c"),
        ("a;(b;c)", "a;b;c"),
        ("status==ok", "status==\"ok\""),
        ("a==1..5", "a==1..5"),
        ("a!=1,\"x\",true", "a!=1,\"x\",true"),
        ("a[b.c]==1", "a.b.c==1"),
        ("a[observedAt]==1", "a[observedAt]==1"),
        (
            "a.observedAt>2026-01-01T10:00:00+01:00",
            "a.observedAt>2026-01-01T09:00:00Z",
        ),
        ("a<2026-01-01", "a<2026-01-01"),
        ("a<17:45", "a<17:45:00"),
        ("a~=^x\\d", "a~=\"^x\\\\d\""),
        ("a==\"q\\\"uote\"", "a==\"q\\\"uote\""),
        ("!a", "!a"),
    ];
    for (text, shown) in cases {
        let parsed = Query::parse(text).unwrap();
        assert_eq!(parsed.to_string(), shown, "{text}");
        assert_eq!(Query::parse(shown).unwrap(), parsed, "{text}");
    }
}

// ------------------------------------------------------------------ scopeQ

fn sq(text: &str, scope: &str) -> bool {
    let e = Entity::new(
        EntityId::new("urn:ngsi-ld:Streetlight:dijon:1").unwrap(),
        "Streetlight",
        Some(Scope::from_ngsi(scope).unwrap()),
    );
    ScopeQuery::parse(text)
        .unwrap_or_else(|err| panic!("{text}: {err}"))
        .matches(&e)
}

#[test]
fn scope_patterns() {
    assert!(sq("/dijon/lighting", "/dijon/lighting"));
    assert!(!sq("/dijon/lighting", "/dijon/traffic"));
    assert!(!sq("/dijon", "/dijon/lighting"));
    assert!(sq("/dijon/#", "/dijon/lighting"));
    assert!(sq("/dijon/lighting/#", "/dijon/lighting"));
    assert!(!sq("/chenove/#", "/dijon/lighting"));
    assert!(sq("/#", "/chenove/waste"));
    assert!(sq("/+/lighting", "/chenove/lighting"));
    assert!(sq("/dijon/+", "/dijon/waste"));
    assert!(!sq("/+", "/dijon/waste"));
    assert!(sq("/+/#", "/dijon/waste"));
    assert!(!sq("/dijon/lighting/+", "/dijon/lighting"));
}

#[test]
fn scope_combinations() {
    assert!(sq("/dijon/lighting,/chenove/lighting", "/chenove/lighting"));
    assert!(!sq("/dijon/#;/+/traffic", "/dijon/lighting"));
    assert!(sq("/dijon/#;/+/lighting", "/dijon/lighting"));
    // ';' binds tighter than ','.
    assert!(sq("/chenove/#;/+/traffic,/dijon/lighting", "/dijon/lighting"));
    assert!(!sq("/chenove/#;(/+/traffic,/dijon/lighting)", "/dijon/lighting"));
    let no_scope = Entity::new(EntityId::new("urn:x:1").unwrap(), "T", None);
    assert!(!ScopeQuery::parse("/#").unwrap().matches(&no_scope));
}

#[test]
fn scope_errors_and_display() {
    for (text, pos, needle) in [
        ("", 0, "expected a scope starting with '/'"),
        ("dijon", 0, "expected a scope starting with '/'"),
        ("/", 1, "expected a scope level name"),
        ("/dijon/#/x", 8, "'#' must be the last level"),
        ("/dijon,", 7, "expected a scope starting"),
        ("(/dijon", 7, "expected ')'"),
        ("/dijon)", 6, "unbalanced ')'"),
        ("/dijon /x", 6, "expected ';', ','"),
    ] {
        match ScopeQuery::parse(text) {
            Err(QueryError::Syntax { position, message }) => {
                assert!(message.contains(needle), "{text}: {message}");
                assert_eq!(position, pos, "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let deep = format!("{}/a{}", "(".repeat(17), ")".repeat(17));
    assert!(matches!(ScopeQuery::parse(&deep), Err(QueryError::TooComplex { .. })));
    let many = vec!["/a"; 65].join(",");
    assert!(matches!(ScopeQuery::parse(&many), Err(QueryError::TooComplex { .. })));
    let q = ScopeQuery::parse("(/a/#,/b/+);((/c))").unwrap();
    assert_eq!(q.to_string(), "(/a/#,/b/+);/c");
    assert_eq!(ScopeQuery::parse(&q.to_string()).unwrap(), q);
}

// ------------------------------------------------------------------ geo

fn located(geometry: serde_json::Value) -> Entity {
    Entity::new(EntityId::new("urn:x:1").unwrap(), "T", None)
        .with("location", Attribute::of_kind(AttributeKind::GeoProperty, geometry))
}

/// Dijon's Place de la Libération and a square around the city centre.
const LIBERATION: [f64; 2] = [5.0415, 47.3220];
const CENTRE: &str = "[[[5.03,47.31],[5.05,47.31],[5.05,47.33],[5.03,47.33],[5.03,47.31]]]";

#[test]
fn near_uses_meters_on_the_sphere() {
    let gq = GeoQuery::parse("near;maxDistance==500", "Point", "[5.0415,47.3220]", None).unwrap();
    // ~0.004° of latitude is ~445 m; 0.006° of longitude at 47.3° is ~452 m.
    assert!(gq.matches(&located(json!({"type": "Point", "coordinates": [5.0415, 47.3260]}))));
    assert!(gq.matches(&located(json!({"type": "Point", "coordinates": [5.0475, 47.3220]}))));
    assert!(!gq.matches(&located(json!({"type": "Point", "coordinates": [5.0415, 47.3270]}))));
    assert!(!gq.matches(&located(json!({"type": "Point", "coordinates": [5.0490, 47.3220]}))));
    assert!(gq.matches(&streetlight()));
    let far = GeoQuery::parse("near;minDistance==500", "Point", "[5.0415,47.3220]", None).unwrap();
    assert!(far.matches(&located(json!({"type": "Point", "coordinates": [5.0415, 47.3270]}))));
    assert!(!far.matches(&streetlight()));
    assert_eq!(far.bounding_box(), None);
    // A street (line) 300 m away from the point.
    let street = located(json!({"type": "LineString", "coordinates": [[5.03, 47.3247], [5.06, 47.3247]]}));
    assert!(gq.matches(&street));
    let tight = GeoQuery::parse("near;maxDistance==250", "Point", "[5.0415,47.3220]", None).unwrap();
    assert!(!tight.matches(&street));
}

#[test]
fn within_and_intersects_polygons() {
    let within = GeoQuery::parse("within", "Polygon", CENTRE, None).unwrap();
    assert!(within.matches(&streetlight()));
    assert!(!within.matches(&located(json!({"type": "Point", "coordinates": [5.06, 47.32]}))));
    let inner = json!({"type": "Polygon", "coordinates": [[[5.035,47.315],[5.04,47.315],[5.04,47.32],[5.035,47.315]]]});
    assert!(within.matches(&located(inner.clone())));
    let crossing = json!({"type": "LineString", "coordinates": [[5.04, 47.32], [5.10, 47.32]]});
    assert!(!within.matches(&located(crossing.clone())));
    let intersects = GeoQuery::parse("intersects", "Polygon", CENTRE, None).unwrap();
    assert!(intersects.matches(&located(crossing.clone())));
    assert!(intersects.matches(&streetlight()));
    let disjoint = GeoQuery::parse("disjoint", "Polygon", CENTRE, None).unwrap();
    assert!(!disjoint.matches(&located(crossing)));
    assert!(disjoint.matches(&located(json!({"type": "Point", "coordinates": [6.0, 47.0]}))));
    assert_eq!(disjoint.bounding_box(), None);
    let contains = GeoQuery::parse("contains", "Point", "[5.0375,47.3160]", None).unwrap();
    assert!(contains.matches(&located(inner)));
    let equals = GeoQuery::parse("equals", "Point", "[5.0415,47.322]", None).unwrap();
    assert!(equals.matches(&streetlight()));
    let overlaps = GeoQuery::parse("overlaps", "Polygon", CENTRE, None).unwrap();
    let half_out =
        json!({"type": "Polygon", "coordinates": [[[5.04,47.32],[5.06,47.32],[5.06,47.34],[5.04,47.34],[5.04,47.32]]]});
    assert!(overlaps.matches(&located(half_out)));
    assert!(!overlaps.matches(&streetlight()));
}

#[test]
fn geoproperty_and_missing_geometry() {
    let gq = GeoQuery::parse("intersects", "Polygon", CENTRE, Some("area")).unwrap();
    assert_eq!(gq.geoproperty, "area");
    assert!(!gq.matches(&streetlight()));
    let bad = Entity::new(EntityId::new("urn:x:1").unwrap(), "T", None).with("location", Attribute::property("here"));
    assert!(
        !GeoQuery::parse("intersects", "Polygon", CENTRE, None)
            .unwrap()
            .matches(&bad)
    );
    let out_of_range = located(json!({"type": "Point", "coordinates": [500.0, 47.0]}));
    assert!(
        !GeoQuery::parse("disjoint", "Polygon", CENTRE, None)
            .unwrap()
            .matches(&out_of_range)
    );
}

#[test]
fn geo_errors() {
    let err = |r: &str, g: &str, c: &str| GeoQuery::parse(r, g, c, None).unwrap_err().to_string();
    assert!(err("nearby", "Point", "[5,47]").contains("expected near"));
    assert!(err("near", "Point", "[5,47]").contains("maxDistance"));
    assert!(err("near;maxDistance==-1", "Point", "[5,47]").contains("non-negative"));
    assert!(err("near;maxDistance=1", "Point", "[5,47]").contains("maxDistance"));
    assert!(err("near;maxDistance==1;maxDistance==2", "Point", "[5,47]").contains("twice"));
    assert!(err("within;x", "Polygon", CENTRE).contains("only near"));
    assert!(err("within", "Point", "[5,47]").contains("Polygon"));
    assert!(err("intersects", "Circle", "[5,47]").contains("'Circle'"));
    assert!(err("intersects", "Point", "[5,47").contains("coordinates"));
    assert!(err("intersects", "Point", "[181,47]").contains("longitude"));
    assert!(err("intersects", "Point", "[5,-91]").contains("latitude"));
    assert!(err("intersects", "Point", "[5]").contains("position"));
    assert!(err("intersects", "Point", "[\"5\",47]").contains("position"));
    assert!(err("intersects", "Polygon", "[[[5,47],[6,47],[6,48],[5,47.5]]]").contains("closed"));
    assert!(err("intersects", "Polygon", "[[[5,47],[6,47],[5,47]]]").contains("4 positions"));
    assert!(err("intersects", "Polygon", "[]").contains("at least one ring"));
    assert!(err("intersects", "LineString", "[[5,47]]").contains("2 positions"));
    let many = format!("[{}]", vec!["[5,47]"; 10_001].join(","));
    assert!(matches!(
        GeoQuery::parse("intersects", "LineString", &many, None),
        Err(GeoQueryError::TooComplex { max: 10_000, .. })
    ));
    assert!(matches!(
        GeoQuery::parse("intersects", "Point", "[5,47]", Some("bad name")),
        Err(GeoQueryError::GeoProperty(_))
    ));
}

#[test]
fn bounding_boxes_contain_every_match() {
    let within = GeoQuery::parse("within", "Polygon", CENTRE, None).unwrap();
    assert_eq!(within.bounding_box(), Some(([5.03, 47.31], [5.05, 47.33])));
    let near = GeoQuery::parse("near;maxDistance==1000", "Point", "[5.0415,47.3220]", None).unwrap();
    let ([lon0, lat0], [lon1, lat1]) = near.bounding_box().unwrap();
    // 1 km is ~0.009° of latitude and ~0.0132° of longitude at 47.3°N.
    assert!((lat1 - LIBERATION[1] - 0.009).abs() < 0.0002, "{lat1}");
    assert!((lon1 - LIBERATION[0] - 0.0132).abs() < 0.0003, "{lon1}");
    assert!(lon0 < LIBERATION[0] && lat0 < LIBERATION[1]);
    // Near a pole every longitude is in reach; across the antimeridian too.
    let polar = GeoQuery::parse("near;maxDistance==200000", "Point", "[10,89]", None).unwrap();
    assert_eq!(polar.bounding_box().map(|b| (b.0[0], b.1[0])), Some((-180.0, 180.0)));
    let dateline = GeoQuery::parse("near;maxDistance==1000", "Point", "[179.999,0]", None).unwrap();
    assert_eq!(dateline.bounding_box().map(|b| (b.0[0], b.1[0])), Some((-180.0, 180.0)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn near_matches_lie_in_the_bounding_box(
        lon in -179.0f64..179.0, lat in -85.0f64..85.0,
        bearing in 0.0f64..360.0, fraction in 0.0f64..1.0, meters in 1.0f64..50_000.0,
    ) {
        use ::geo::{Destination, Haversine, Point};
        let gq = GeoQuery::parse(&format!("near;maxDistance=={meters}"), "Point", &format!("[{lon},{lat}]"), None).unwrap();
        let p = Haversine.destination(Point::new(lon, lat), bearing, meters * fraction);
        let e = located(json!({"type": "Point", "coordinates": [p.x(), p.y()]}));
        prop_assume!((-180.0..=180.0).contains(&p.x()));
        prop_assert!(gq.matches(&e));
        let ([x0, y0], [x1, y1]) = gq.bounding_box().unwrap();
        prop_assert!(x0 <= p.x() && p.x() <= x1 && y0 <= p.y() && p.y() <= y1, "{:?} outside", p);
    }
}

// ------------------------------------------------------------------ render

#[test]
fn key_values_and_projection() {
    let e = streetlight();
    let mut v = key_values(&e);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys[..3], ["id", "type", "scope"]);
    assert_eq!(v["scope"], "/dijon/lighting");
    assert_eq!(v["status"], "defectiveLamp");
    assert_eq!(
        v["refStreetlightControlCabinet"],
        "urn:ngsi-ld:StreetlightControlCabinet:dijon:cab-0001"
    );
    assert_eq!(v["location"]["type"], "Point");
    let no_scope = Entity::new(EntityId::new("urn:x:1").unwrap(), "T", None);
    assert!(key_values(&no_scope).get("scope").is_none());

    let names = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let pick = ["status".to_owned(), "powerState".to_owned()];
    project(&mut v, Some(&pick), None);
    assert_eq!(names(&v), ["id", "type", "powerState", "status"]);
    project(&mut v, None, Some(&["type".to_owned(), "status".to_owned()]));
    assert_eq!(names(&v), ["id", "powerState"]);
    let mut normalized = e.to_normalized(false);
    project(&mut normalized, Some(&["id".to_owned()]), Some(&["id".to_owned()]));
    assert_eq!(names(&normalized), ["type"]);
    let mut not_an_object = json!([1]);
    project(&mut not_an_object, Some(&pick), Some(&pick));
    assert_eq!(not_an_object, json!([1]));
}

// ------------------------------------------------------------------ properties

/// Query text built from the grammar, with optional extra parentheses and spaces.
fn query_text() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "status",
        "powerState",
        "illuminanceLevel",
        "tags",
        "address",
        "a-b",
        "x_1",
    ]);
    let path = (
        name,
        prop::option::of(prop::sample::select(vec![
            ".postalCode",
            "[k.l]",
            ".observedAt",
            ".unitCode",
            "[observedAt]",
            ".a.b",
        ])),
    )
        .prop_map(|(n, s)| format!("{n}{}", s.unwrap_or("")));
    let literal = prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        any::<i32>().prop_map(|i| i.to_string()),
        "[a-zA-Z][a-zA-Z0-9:_-]{0,8}".prop_filter("not a keyword", |s| s != "true" && s != "false"),
        "[ -~é]{0,8}".prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("2026-11-22T18:00:00.250Z".to_owned()),
        Just("2021-03-04".to_owned()),
        Just("17:45:30".to_owned()),
    ];
    let comparable = prop_oneof![
        any::<i16>().prop_map(|i| i.to_string()),
        Just("\"ok\"".to_owned()),
        Just("2021-03-04".to_owned()),
    ];
    let term = prop_oneof![
        path.clone(),
        path.clone().prop_map(|p| format!("!{p}")),
        (
            path.clone(),
            prop::sample::select(vec!["==", "!="]),
            prop::collection::vec(literal, 1..4)
        )
            .prop_map(|(p, op, vs)| format!("{p}{op}{}", vs.join(","))),
        (path.clone(), prop::sample::select(vec!["==", "!="]), comparable.clone())
            .prop_map(|(p, op, v)| format!("{p}{op}{v}..{v}")),
        (
            path.clone(),
            prop::sample::select(vec![">", ">=", "<", "<="]),
            comparable
        )
            .prop_map(|(p, op, v)| format!("{p}{op}{v}")),
        (
            path,
            prop::sample::select(vec!["~=", "!~="]),
            prop::sample::select(vec!["^ok$", "(?i)lamp", "\"a\\\"b\"", "(a|b)", "[;|)]"])
        )
            .prop_map(|(p, op, r)| format!("{p}{op}{r}")),
    ];
    term.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(";")),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join("|")),
            inner.prop_map(|t| format!("( {t} )")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn parser_never_panics(text in "\\PC{0,200}") {
        let _ = Query::parse(&text);
        let _ = ScopeQuery::parse(&text);
    }

    #[test]
    fn parser_never_panics_on_query_alphabet(text in "[a-z0-9!=<>~;|().,\\[\\]\"\\\\:+#/ -]{0,120}") {
        if let Ok(q) = Query::parse(&text) {
            let _ = q.matches(&streetlight());
            prop_assert_eq!(Query::parse(&q.to_string()), Ok(q));
        }
        if let Ok(s) = ScopeQuery::parse(&text) {
            prop_assert_eq!(ScopeQuery::parse(&s.to_string()), Ok(s));
        }
    }

    #[test]
    fn display_round_trips(text in query_text()) {
        let parsed = Query::parse(&text);
        prop_assume!(!matches!(parsed, Err(QueryError::TooComplex { .. })));
        let q = parsed.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let shown = q.to_string();
        prop_assert_eq!(Query::parse(&shown), Ok(q.clone()), "{} shown as {}", text, shown);
        // matches never panics, and the printed form means the same.
        let e = streetlight();
        prop_assert_eq!(q.matches(&e), Query::parse(&shown).map(|r| r.matches(&e)).unwrap_or(!q.matches(&e)));
    }

    #[test]
    fn geo_parse_never_panics(
        rel in "(near;maxDistance==[0-9]{1,6}|near;minDistance==1|within|intersects|disjoint|equals|contains|overlaps|[a-z;=]{0,12})",
        kind in "(Point|Polygon|LineString|MultiPolygon|MultiPoint|[A-Za-z]{0,6})",
        coords in "[\\[\\]0-9.,\\- ]{0,60}",
    ) {
        if let Ok(gq) = GeoQuery::parse(&rel, &kind, &coords, None) {
            let _ = gq.matches(&streetlight());
            let _ = gq.bounding_box();
        }
    }
}
