//! NGSI-LD conformance, written from ETSI GS CIM 009 v1.8's text: for each
//! endpoint, its status codes, headers and body shapes, error paths included.
//! Clause numbers refer to the specification.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const LIGHT: &str = "urn:ngsi-ld:Streetlight:dijon:000001";

fn light(n: u32) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"),
        "type": "Streetlight",
        "scope": "/dijon/lighting",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04, 47.32]}},
        "powerState": {"type": "Property", "value": "on", "observedAt": "2026-11-22T18:00:00.000Z"},
        "powerConsumption": {"type": "Property", "value": 38.5, "unitCode": "WTT",
            "maxPower": {"type": "Property", "value": 70}},
    })
}

/// A response: status, headers, JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .unwrap_or("")
            .strip_prefix("https://uri.etsi.org/ngsi-ld/errors/")
            .unwrap_or("")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn call(s: &TestServer, method: Method, path: &str, body: Option<Value>, tenant: Option<&str>) -> Answer {
    let mut req = s.http.request(method, s.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = tenant {
        req = req.header("NGSILD-Tenant", t);
    }
    answer(req).await
}

/// Sends a request and reads its answer.
async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer { status, headers, body }
}

async fn get(s: &TestServer, path: &str) -> Answer {
    call(s, Method::GET, path, None, None).await
}

async fn with_lights(n: u32) -> TestServer {
    let s = TestServer::http_only().await;
    let batch: Vec<Value> = (1..=n).map(light).collect();
    let a = call(
        &s,
        Method::POST,
        "/ngsi-ld/v1/entityOperations/create",
        Some(json!(batch)),
        None,
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    s
}

fn entity_path(id: &str) -> String {
    format!("/ngsi-ld/v1/entities/{id}")
}

// 5.6.18 Replace Entity: 204; everything but id and createdAt replaced.
#[tokio::test]
async fn replace_entity() {
    let s = with_lights(1).await;
    let new = json!({"type": "Streetlight", "powerState": {"type": "Property", "value": "off"}});
    let a = call(&s, Method::PUT, &entity_path(LIGHT), Some(new), None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerState"]["value"], "off");
    assert!(e.get("powerConsumption").is_none(), "replaced attributes are gone: {e}");
    assert_eq!(
        e["scope"], "/dijon/lighting",
        "an entity sent without scope keeps its own"
    );

    let other_id = json!({"id": "urn:ngsi-ld:Streetlight:dijon:999", "type": "Streetlight"});
    let a = call(&s, Method::PUT, &entity_path(LIGHT), Some(other_id), None).await;
    assert_eq!((a.status, a.problem()), (400, "BadRequestData"));
    let a = call(
        &s,
        Method::PUT,
        &entity_path("urn:ngsi-ld:X:none"),
        Some(json!({"type": "X"})),
        None,
    )
    .await;
    assert_eq!((a.status, a.problem()), (404, "ResourceNotFound"));
}

// 5.6.17 Merge Entity: 204; attributes merged, the null marker deletes.
#[tokio::test]
async fn merge_entity() {
    let s = with_lights(1).await;
    let fragment = json!({
        "powerState": {"type": "Property", "value": "off"},
        "powerConsumption": {"type": "Property", "value": "urn:ngsi-ld:null"},
        "dimmingLevel": {"type": "Property", "value": 40},
    });
    let a = call(&s, Method::PATCH, &entity_path(LIGHT), Some(fragment), None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerState"]["value"], "off");
    assert_eq!(
        e["powerState"]["observedAt"], "2026-11-22T18:00:00.000Z",
        "members not sent are kept"
    );
    assert_eq!(e["dimmingLevel"]["value"], 40);
    assert!(e.get("powerConsumption").is_none(), "{e}");

    let a = call(
        &s,
        Method::PATCH,
        &entity_path(LIGHT),
        Some(json!({"type": "Other"})),
        None,
    )
    .await;
    // Merging another type would make the entity multi-typed, which Vigie does not hold.
    assert_eq!((a.status, a.problem()), (422, "OperationNotSupported"));
    let a = call(
        &s,
        Method::PATCH,
        &entity_path("urn:ngsi-ld:X:none"),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!((a.status, a.problem()), (404, "ResourceNotFound"));
    let a = call(&s, Method::PATCH, &entity_path(LIGHT), Some(json!([1])), None).await;
    assert_eq!((a.status, a.problem()), (400, "BadRequestData"));
}

// 5.6.4 Partial Attribute Update, 5.6.19 Replace Attribute, 5.6.5 Delete Attribute.
#[tokio::test]
async fn attribute_operations() {
    let s = with_lights(1).await;
    let attr = |name: &str| format!("{}/attrs/{name}", entity_path(LIGHT));

    let a = call(
        &s,
        Method::PATCH,
        &attr("powerConsumption"),
        Some(json!({"value": 12.5})),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.body);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerConsumption"]["value"], 12.5);
    assert_eq!(
        e["powerConsumption"]["unitCode"], "WTT",
        "a partial update keeps other members"
    );
    assert_eq!(e["powerConsumption"]["maxPower"]["value"], 70);

    let a = call(&s, Method::PATCH, &attr("nope"), Some(json!({"value": 1})), None).await;
    assert_eq!((a.status, a.problem()), (404, "ResourceNotFound"));
    let a = call(
        &s,
        Method::PATCH,
        &attr("powerConsumption"),
        Some(json!({"type": "Relationship"})),
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.problem()),
        (400, "BadRequestData"),
        "a Relationship needs an object"
    );

    let a = call(
        &s,
        Method::PUT,
        &attr("powerConsumption"),
        Some(json!({"type": "Property", "value": 1})),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.body);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerConsumption"], json!({"type": "Property", "value": 1}));
    let a = call(
        &s,
        Method::PUT,
        &attr("nope"),
        Some(json!({"type": "Property", "value": 1})),
        None,
    )
    .await;
    assert_eq!((a.status, a.problem()), (404, "ResourceNotFound"));
    let bad = json!({"type": "Relationship", "object": "not a uri"});
    let a = call(&s, Method::PUT, &attr("powerConsumption"), Some(bad), None).await;
    assert_eq!(
        (a.status, a.problem()),
        (400, "BadRequestData"),
        "a Relationship points to a URI"
    );
    // Concise (v1.6+): the type is inferred.
    let a = call(
        &s,
        Method::PUT,
        &attr("powerConsumption"),
        Some(json!({"value": 2})),
        None,
    )
    .await;
    assert_eq!(a.status, 204);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerConsumption"], json!({"type": "Property", "value": 2}));

    let a = call(&s, Method::DELETE, &attr("powerConsumption"), None, None).await;
    assert_eq!(a.status, 204);
    assert!(
        get(&s, &entity_path(LIGHT))
            .await
            .body
            .get("powerConsumption")
            .is_none()
    );
    let a = call(&s, Method::DELETE, &attr("powerConsumption"), None, None).await;
    assert_eq!((a.status, a.problem()), (404, "ResourceNotFound"));
}

// 5.6.3 Append Entity Attributes: 204, or 207 with noOverwrite.
#[tokio::test]
async fn append_with_no_overwrite_reports_what_was_kept() {
    let s = with_lights(1).await;
    let body = json!({
        "powerState": {"type": "Property", "value": "off"},
        "colorTemperature": {"type": "Property", "value": 3000},
    });
    let path = format!("{}/attrs?options=noOverwrite", entity_path(LIGHT));
    let a = call(&s, Method::POST, &path, Some(body), None).await;
    assert_eq!(a.status, 207);
    assert_eq!(a.body["updated"], json!(["colorTemperature"]));
    assert_eq!(a.body["notUpdated"][0]["attributeName"], "powerState");
    assert_eq!(get(&s, &entity_path(LIGHT)).await.body["powerState"]["value"], "on");
}

// 5.6.9 Batch Update, 5.6.20 Batch Merge, 5.6.10 Batch Delete: 204, or 207 per entity.
#[tokio::test]
async fn batch_update_merge_and_delete() {
    let s = with_lights(3).await;
    let ops = "/ngsi-ld/v1/entityOperations";
    let update = json!([
        {"id": LIGHT, "powerState": {"type": "Property", "value": "off"}},
        {"id": "urn:ngsi-ld:Streetlight:dijon:000404", "type": "Streetlight",
         "powerState": {"type": "Property", "value": "off"}},
    ]);
    let a = call(&s, Method::POST, &format!("{ops}/update"), Some(update), None).await;
    assert_eq!(a.status, 207, "{}", a.body);
    assert_eq!(a.body["success"], json!([LIGHT]));
    assert_eq!(a.body["errors"][0]["entityId"], "urn:ngsi-ld:Streetlight:dijon:000404");
    assert_eq!(a.body["errors"][0]["error"]["status"], 404);

    let no_overwrite = json!([{"id": LIGHT, "powerState": {"type": "Property", "value": "on"}}]);
    let a = call(
        &s,
        Method::POST,
        &format!("{ops}/update?options=noOverwrite"),
        Some(no_overwrite),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(get(&s, &entity_path(LIGHT)).await.body["powerState"]["value"], "off");

    let merge = json!([{"id": LIGHT, "type": "Streetlight", "powerConsumption": {"type": "Property", "value": 5}}]);
    let a = call(&s, Method::POST, &format!("{ops}/merge"), Some(merge), None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerConsumption"]["value"], 5);
    assert_eq!(e["powerConsumption"]["unitCode"], "WTT");

    let ids = json!([
        LIGHT,
        "urn:ngsi-ld:Streetlight:dijon:000002",
        "urn:ngsi-ld:X:none",
        "not a uri"
    ]);
    let a = call(&s, Method::POST, &format!("{ops}/delete"), Some(ids), None).await;
    assert_eq!(a.status, 207, "{}", a.body);
    assert_eq!(a.body["success"].as_array().unwrap().len(), 2);
    assert_eq!(a.body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(get(&s, &entity_path(LIGHT)).await.status, 404);

    let a = call(
        &s,
        Method::POST,
        &format!("{ops}/delete"),
        Some(json!(["urn:ngsi-ld:Streetlight:dijon:000003"])),
        None,
    )
    .await;
    assert_eq!(a.status, 204);
    let a = call(
        &s,
        Method::POST,
        &format!("{ops}/delete"),
        Some(json!({"id": LIGHT})),
        None,
    )
    .await;
    assert_eq!((a.status, a.problem()), (400, "BadRequestData"));
}

// 5.7.2 Query Entity via POST (6.23): the Query data type in the body.
#[tokio::test]
async fn query_by_post() {
    let s = with_lights(5).await;
    let q = json!({
        "type": "Query",
        "entities": [{"type": "Streetlight", "idPattern": ".*00000[12]$"}],
        "attrs": ["powerState"],
        "q": "powerState==\"on\"",
    });
    let a = call(
        &s,
        Method::POST,
        "/ngsi-ld/v1/entityOperations/query?count=true",
        Some(q),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("NGSILD-Results-Count"), "2");
    let got = a.body.as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        got[0].get("powerConsumption").is_none(),
        "attrs limits the attributes shown"
    );

    let near = json!({
        "type": "Query",
        "geoQ": {"geometry": "Point", "coordinates": [5.04, 47.32], "georel": "near;maxDistance==10"},
    });
    let a = call(
        &s,
        Method::POST,
        "/ngsi-ld/v1/entityOperations/query?limit=2",
        Some(near),
        None,
    )
    .await;
    assert_eq!((a.status, a.body.as_array().map(Vec::len)), (200, Some(2)));

    for (bad, problem) in [
        (json!({"type": "Query"}), "BadRequestData"),
        (
            json!({"type": "Subscription", "entities": [{"type": "T"}]}),
            "BadRequestData",
        ),
        (json!({"entities": [{"id": LIGHT}]}), "BadRequestData"),
        (json!({"entities": [{"type": "T"}], "q": "a=="}), "BadRequestData"),
        (
            json!({"entities": [{"type": "T"}], "temporalQ": {}}),
            "OperationNotSupported",
        ),
    ] {
        let a = call(
            &s,
            Method::POST,
            "/ngsi-ld/v1/entityOperations/query",
            Some(bad.clone()),
            None,
        )
        .await;
        assert_eq!(a.problem(), problem, "{bad}: {}", a.body);
    }
}

// 6.3.x paging: limit bounded, limit=0 only with count.
#[tokio::test]
async fn paging_bounds() {
    let s = with_lights(3).await;
    let a = get(&s, "/ngsi-ld/v1/entities?type=Streetlight&limit=0&count=true").await;
    assert_eq!((a.status, a.header("NGSILD-Results-Count")), (200, "3"));
    assert_eq!(a.body, json!([]));
    let a = get(&s, "/ngsi-ld/v1/entities?type=Streetlight&limit=0").await;
    assert_eq!((a.status, a.problem()), (400, "BadRequestData"));
    let a = get(&s, "/ngsi-ld/v1/entities?type=Streetlight&limit=1000000").await;
    assert_eq!((a.status, a.problem()), (403, "TooManyResults"));
    let a = get(&s, "/ngsi-ld/v1/entities?type=Streetlight|Cabinet&limit=2&offset=2").await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1));
}

// 5.7.5–5.7.8 discovery: types and attributes over every entity.
#[tokio::test]
async fn types_and_attributes() {
    let s = with_lights(3).await;
    let cabinet = json!({"id": "urn:ngsi-ld:StreetlightControlCabinet:dijon:1", "type": "StreetlightControlCabinet",
        "powerState": {"type": "Property", "value": "on"}});
    assert_eq!(
        call(&s, Method::POST, "/ngsi-ld/v1/entities", Some(cabinet), None)
            .await
            .status,
        201
    );

    let a = get(&s, "/ngsi-ld/v1/types").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["type"], "EntityTypeList");
    assert_eq!(a.body["typeList"], json!(["Streetlight", "StreetlightControlCabinet"]));
    assert!(
        a.body["id"]
            .as_str()
            .unwrap()
            .starts_with("urn:ngsi-ld:EntityTypeList:")
    );

    let a = get(&s, "/ngsi-ld/v1/types?details=true").await;
    assert_eq!(a.body[0]["type"], "EntityType");
    assert_eq!(a.body[0]["typeName"], "Streetlight");
    assert_eq!(
        a.body[0]["id"],
        "https://uri.etsi.org/ngsi-ld/default-context/Streetlight"
    );

    let a = get(&s, "/ngsi-ld/v1/types/Streetlight").await;
    assert_eq!(a.body["type"], "EntityTypeInfo");
    assert_eq!(a.body["entityCount"], 3);
    let location = a.body["attributeDetails"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["attributeName"] == "location")
        .cloned()
        .unwrap();
    assert_eq!(location["attributeTypes"], json!(["GeoProperty"]));
    assert_eq!(get(&s, "/ngsi-ld/v1/types/Nope").await.status, 404);

    let a = get(&s, "/ngsi-ld/v1/attributes").await;
    assert_eq!(a.body["type"], "AttributeList");
    assert!(
        a.body["attributeList"]
            .as_array()
            .unwrap()
            .contains(&json!("powerState"))
    );
    let a = get(&s, "/ngsi-ld/v1/attributes/powerState").await;
    assert_eq!(a.body["attributeCount"], 4);
    assert_eq!(a.body["typeNames"], json!(["Streetlight", "StreetlightControlCabinet"]));
    let a = get(&s, "/ngsi-ld/v1/attributes?details=true").await;
    assert!(a.body.as_array().unwrap().iter().all(|d| d["type"] == "Attribute"));
    assert_eq!(
        get(&s, "/ngsi-ld/v1/attributes/nope").await.problem(),
        "ResourceNotFound"
    );
}

// Tenants (4.14): created on first write, isolated, NonexistentTenant on reads.
#[tokio::test]
async fn tenants_appear_on_first_write_and_stay_apart() {
    let s = with_lights(1).await;
    let a = call(&s, Method::GET, &entity_path(LIGHT), None, Some("chenove")).await;
    assert_eq!((a.status, a.problem()), (404, "NonexistentTenant"));
    let a = call(&s, Method::GET, "/ngsi-ld/v1/types", None, Some("chenove")).await;
    assert_eq!(a.problem(), "NonexistentTenant");

    let mut other = light(1);
    other["powerState"]["value"] = json!("off");
    let a = call(&s, Method::POST, "/ngsi-ld/v1/entities", Some(other), Some("chenove")).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = call(&s, Method::GET, &entity_path(LIGHT), None, Some("chenove")).await;
    assert_eq!(a.body["powerState"]["value"], "off");
    assert_eq!(get(&s, &entity_path(LIGHT)).await.body["powerState"]["value"], "on");

    let a = call(&s, Method::DELETE, &entity_path(LIGHT), None, Some("chenove")).await;
    assert_eq!(a.status, 204);
    assert_eq!(
        get(&s, &entity_path(LIGHT)).await.status,
        200,
        "the default tenant is untouched"
    );

    let a = call(&s, Method::GET, &entity_path(LIGHT), None, Some("../etc")).await;
    assert_eq!((a.status, a.problem()), (400, "BadRequestData"));
}

const SDM_LIGHTING: &str = "https://smart-data-models.github.io/dataModel.Streetlighting/context.jsonld";
const SDM_POWER: &str = "https://smartdatamodels.org/dataModel.Streetlighting/powerState";

fn link(url: &str) -> String {
    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
}

// 5.5.7 / 6.3.5: @context by Link header, names translated both ways, offline.
#[tokio::test]
async fn a_link_context_translates_names_both_ways() {
    let s = TestServer::http_only().await;
    let e = json!({"id": LIGHT, "type": "Streetlight", "powerState": {"type": "Property", "value": "on"}});
    let res = answer(
        s.http
            .post(s.url("/ngsi-ld/v1/entities"))
            .header("Link", link(SDM_LIGHTING))
            .json(&e),
    )
    .await;
    assert_eq!(res.status, 201);

    // Without the context, the name is the IRI the context gave it.
    let plain = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(plain[SDM_POWER]["value"], "on", "{plain}");
    assert!(plain.get("powerState").is_none());

    let res = answer(
        s.http
            .get(s.url(&format!("{}?attrs=powerState", entity_path(LIGHT))))
            .header("Link", link(SDM_LIGHTING)),
    )
    .await;
    let answer_link = res.header("link").to_owned();
    let body = res.body;
    assert_eq!(body["powerState"]["value"], "on", "{body}");
    assert!(answer_link.contains(SDM_LIGHTING), "{answer_link}");

    let q = "/ngsi-ld/v1/entities?type=Streetlight&attrs=powerState";
    let res = answer(s.http.get(s.url(q)).header("Link", link(SDM_LIGHTING))).await;
    let body = res.body;
    assert_eq!(body[0]["powerState"]["value"], "on", "{body}");
}

// 6.3.5: application/ld+json carries @context in the body, both ways.
#[tokio::test]
async fn json_ld_bodies_and_answers() {
    let s = TestServer::http_only().await;
    let e = json!({"id": LIGHT, "type": "Streetlight", "@context": [SDM_LIGHTING],
        "powerState": {"type": "Property", "value": "on"}});
    let res = answer(
        s.http
            .post(s.url("/ngsi-ld/v1/entities"))
            .header("Content-Type", "application/ld+json")
            .body(e.to_string()),
    )
    .await;
    assert_eq!(res.status, 201);
    let res = answer(
        s.http
            .get(s.url(&entity_path(LIGHT)))
            .header("Accept", "application/ld+json"),
    )
    .await;
    assert_eq!(res.header("content-type"), "application/ld+json");
    assert!(res.headers.get("link").is_none());
    let body = res.body;
    assert_eq!(
        body["@context"],
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    );
    assert_eq!(body[SDM_POWER]["value"], "on");

    // A JSON-LD body without @context, or with a Link too, is refused.
    let no_ctx = json!({"id": "urn:ngsi-ld:X:2", "type": "X"});
    let res = answer(
        s.http
            .post(s.url("/ngsi-ld/v1/entities"))
            .header("Content-Type", "application/ld+json")
            .body(no_ctx.to_string()),
    )
    .await;
    assert_eq!(res.status, 400);
    let res = answer(
        s.http
            .post(s.url("/ngsi-ld/v1/entities"))
            .header("Content-Type", "application/ld+json")
            .header("Link", link(SDM_LIGHTING))
            .body(e.to_string()),
    )
    .await;
    assert_eq!(res.status, 400);
    let res = answer(s.http.get(s.url(&entity_path(LIGHT))).header("Accept", "text/html")).await;
    assert_eq!(res.status, 406);
}

// An unreachable remote context fails fast with LdContextNotAvailable.
#[tokio::test]
async fn an_unreachable_context_fails_fast() {
    let s = with_lights(1).await;
    let started = std::time::Instant::now();
    let res = answer(
        s.http
            .get(s.url(&entity_path(LIGHT)))
            .header("Link", link("http://127.0.0.1:9/missing-context.jsonld")),
    )
    .await;
    assert_eq!(res.status, 503);
    let body = res.body;
    assert_eq!(
        body["type"],
        "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let res = answer(s.http.get(s.url(&entity_path(LIGHT))).header("Link", "not a link")).await;
    assert_eq!(res.status, 400);
}

// 5.13 / 6.30 jsonldContexts: list, host, serve (publicly), use, delete.
#[tokio::test]
async fn hosted_contexts() {
    let s = with_lights(1).await;
    let a = get(&s, "/ngsi-ld/v1/jsonldContexts").await;
    assert!(a.body.as_array().unwrap().contains(&json!(
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    )));

    let doc = json!({"@context": {"watts": "https://vigie.example/watts"}});
    let a = call(&s, Method::POST, "/ngsi-ld/v1/jsonldContexts", Some(doc.clone()), None).await;
    assert_eq!(a.status, 201);
    let location = a.header("location").to_owned();
    let public = reqwest::get(s.url(&location)).await.unwrap();
    assert_eq!(public.status(), 200, "contexts are served without a login");
    assert_eq!(public.json::<Value>().await.unwrap(), doc);

    let hosted = format!("{}{location}", s.base);
    let body = json!({"watts": {"type": "Property", "value": 30}});
    let res = answer(
        s.http
            .post(s.url(&format!("{}/attrs", entity_path(LIGHT))))
            .header("Link", link(&hosted))
            .json(&body),
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        get(&s, &entity_path(LIGHT)).await.body["https://vigie.example/watts"]["value"],
        30
    );

    let id = location.rsplit('/').next().unwrap();
    assert_eq!(
        call(
            &s,
            Method::DELETE,
            &format!("/ngsi-ld/v1/jsonldContexts/{id}"),
            None,
            None
        )
        .await
        .status,
        204
    );
    let core = "https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.8.jsonld";
    assert_eq!(
        call(
            &s,
            Method::DELETE,
            &format!("/ngsi-ld/v1/jsonldContexts/{core}"),
            None,
            None
        )
        .await
        .status,
        400
    );
    let bad = call(
        &s,
        Method::POST,
        "/ngsi-ld/v1/jsonldContexts",
        Some(json!({"a": 1})),
        None,
    )
    .await;
    assert_eq!(bad.problem(), "BadRequestData");
}

// 4.5.x representations: concise output and input, lang on LanguageProperty.
#[tokio::test]
async fn concise_and_language_representations() {
    let s = TestServer::http_only().await;
    // Concise input: bare values are Properties, "object" a Relationship.
    let concise = json!({
        "id": LIGHT, "type": "Streetlight",
        "powerState": "on",
        "refCabinet": {"object": "urn:ngsi-ld:Cabinet:1"},
        "name": {"languageMap": {"fr": "Lampadaire", "en": "Street light"}},
    });
    let a = call(&s, Method::POST, "/ngsi-ld/v1/entities", Some(concise), None).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let e = get(&s, &entity_path(LIGHT)).await.body;
    assert_eq!(e["powerState"], json!({"type": "Property", "value": "on"}));
    assert_eq!(e["refCabinet"]["type"], "Relationship");
    assert_eq!(e["name"]["type"], "LanguageProperty");

    let c = get(&s, &format!("{}?options=concise", entity_path(LIGHT))).await.body;
    assert!(c["refCabinet"].get("type").is_none(), "{c}");
    assert_eq!(c["refCabinet"]["object"], "urn:ngsi-ld:Cabinet:1");

    let fr = get(&s, &format!("{}?lang=fr", entity_path(LIGHT))).await.body;
    assert_eq!(
        fr["name"],
        json!({"type": "Property", "value": "Lampadaire", "lang": "fr"})
    );
    let kv = get(&s, &format!("{}?lang=en&options=keyValues", entity_path(LIGHT)))
        .await
        .body;
    assert_eq!(kv["name"], "Street light");
    let bad = get(&s, &format!("{}?format=fancy", entity_path(LIGHT))).await;
    assert_eq!(bad.problem(), "BadRequestData");
}
