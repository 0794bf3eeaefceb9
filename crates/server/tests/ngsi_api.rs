//! The NGSI-LD API through the real server: writes, reads, paging and errors.

mod common;

use common::TestServer;
use serde_json::{Value, json};

fn light(n: u32, commune: &str) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Streetlight:{commune}:{n:06}"),
        "type": "Streetlight",
        "scope": format!("/{commune}/lighting"),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04 + f64::from(n) * 1e-4, 47.32]}},
        "powerState": {"type": "Property", "value": "on"},
        "powerConsumption": {"type": "Property", "value": 38.5, "unitCode": "WTT"}
    })
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("")
}

#[tokio::test]
async fn create_read_update_delete() {
    let s = TestServer::http_only().await;
    let e = light(1, "dijon");
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/entities"))
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001"
    );

    let (status, body) = s.post_json("/ngsi-ld/v1/entities", &e).await;
    assert_eq!((status, problem_type(&body)), (409, "AlreadyExists"));

    let (status, got) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["powerConsumption"]["unitCode"], "WTT");
    assert_eq!(got["scope"], "/dijon/lighting");

    let (_, kv) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001?options=keyValues&attrs=powerState")
        .await;
    assert_eq!(
        kv,
        json!({"id": "urn:ngsi-ld:Streetlight:dijon:000001", "type": "Streetlight", "scope": "/dijon/lighting", "powerState": "on"})
    );

    // PATCH updates existing attributes and reports the others (207).
    let res = s
        .http
        .patch(s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs"))
        .json(&json!({"powerState": {"type": "Property", "value": "off"}, "nope": {"type": "Property", "value": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 207);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["updated"], json!(["powerState"]));
    assert_eq!(body["notUpdated"][0]["attributeName"], "nope");

    // POST appends; noOverwrite keeps existing values.
    let (status, _) = s
        .post_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs",
            &json!({"illuminanceLevel": {"type": "Property", "value": 0.7}}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .post_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs?options=noOverwrite",
            &json!({"illuminanceLevel": {"type": "Property", "value": 0.1}}),
        )
        .await;
    assert_eq!(status, 207);
    let (_, got) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001?options=sysAttrs")
        .await;
    assert_eq!(got["powerState"]["value"], "off");
    assert_eq!(got["illuminanceLevel"]["value"], 0.7);
    assert!(got["createdAt"].is_string() && got["modifiedAt"].is_string());

    let res = s
        .http
        .delete(s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, body) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001")
        .await;
    assert_eq!((status, problem_type(&body)), (404, "ResourceNotFound"));
    let res = s
        .http
        .delete(s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    s.running.shutdown().await;
}

#[tokio::test]
async fn batch_upsert_and_stable_paging() {
    let s = TestServer::http_only().await;
    let batch: Vec<Value> = (0..250)
        .map(|n| light(n, if n % 2 == 0 { "dijon" } else { "talant" }))
        .collect();
    let (status, created) = s
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &Value::Array(batch.clone()))
        .await;
    assert_eq!(status, 201);
    assert_eq!(created.as_array().unwrap().len(), 250);
    let (status, _) = s
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &Value::Array(batch))
        .await;
    assert_eq!(status, 204, "all updated, none created");

    // One bad entity among good ones: 207 naming it.
    let mixed = json!([light(900, "dijon"), {"id": "not a uri", "type": "Streetlight"}]);
    let (status, body) = s.post_json("/ngsi-ld/v1/entityOperations/create", &mixed).await;
    assert_eq!(status, 207);
    assert_eq!(body["success"], json!(["urn:ngsi-ld:Streetlight:dijon:000900"]));
    assert_eq!(body["errors"][0]["entityId"], "not a uri");
    assert_eq!(problem_type(&body["errors"][0]["error"]), "BadRequestData");

    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let res = s
            .http
            .get(s.url(&format!(
                "/ngsi-ld/v1/entities?type=Streetlight&limit=40&offset={offset}&count=true"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["ngsild-results-count"], "251");
        let page: Vec<Value> = res.json().await.unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.into_iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        offset += 40;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 251);
    assert_eq!(seen, sorted, "every entity exactly once, in a stable order");

    let (_, talant) = s
        .get_json("/ngsi-ld/v1/entities?idPattern=.*:talant:.*&limit=1000")
        .await;
    assert_eq!(talant.as_array().unwrap().len(), 125);
    s.running.shutdown().await;
}

/// The `Link: <...>; rel="next"` of a response, if any.
fn next_link(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.ends_with("rel=\"next\""))
        .and_then(|v| Some(v[v.find('<')? + 1..v.find('>')?].to_owned()))
}

#[tokio::test]
async fn next_links_page_by_id_and_ignore_entities_created_behind() {
    let s = TestServer::http_only().await;
    let batch: Vec<Value> = (0..95).map(|n| light(n, "dijon")).collect();
    let (status, _) = s
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &Value::Array(batch))
        .await;
    assert_eq!(status, 201);

    let mut seen = Vec::new();
    let mut next = Some("/ngsi-ld/v1/entities?type=Streetlight&limit=20&options=keyValues".to_owned());
    let mut pages = 0;
    while let Some(url) = next.take() {
        let res = s.http.get(s.url(&url)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
        next = next_link(&res);
        let page: Vec<Value> = res.json().await.unwrap();
        seen.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        pages += 1;
        // An entity created where offsets would shift: the pages do not move.
        let (status, _) = s.post_json("/ngsi-ld/v1/entities", &light(pages, "ahuy")).await;
        assert_eq!(status, 201);
    }
    assert_eq!(pages, 5, "four full pages and the last, which has no next link");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 95);
    assert_eq!(seen, sorted, "every entity exactly once, in id order");
    assert!(seen.iter().all(|id| id.contains(":dijon:")));

    let (status, body) = s
        .get_json("/ngsi-ld/v1/entities?type=Streetlight&afterId=not%20a%20uri")
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem_type(&body), "BadRequestData");
    s.running.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_problem_details() {
    let s = TestServer::http_only().await;
    let raw = |body: &'static str| {
        s.http
            .post(s.url("/ngsi-ld/v1/entities"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = raw("{not json").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(problem_type(&res.json().await.unwrap()), "InvalidRequest");

    let (status, body) = s.post_json("/ngsi-ld/v1/entities", &json!({"id": "urn:x:1"})).await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    assert!(body["detail"].as_str().unwrap().contains("'type'"), "{body}");

    let huge = json!({"id": "urn:x:1", "type": "T", "blob": {"type": "Property", "value": "x".repeat(300_000)}});
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/entities"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    let (status, body) = s.get_json("/ngsi-ld/v1/entities?type=Streetlight&limit=5000").await;
    assert_eq!((status, problem_type(&body)), (403, "TooManyResults"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities?type=Streetlight&limit=ten").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities/not-a-uri").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities?idPattern=(unclosed").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));

    let (status, health) = s.get_json("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    s.running.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let s = TestServer::http_only().await;
    let (status, _) = s.post_json("/ngsi-ld/v1/entities", &light(7, "quetigny")).await;
    assert_eq!(status, 201);
    let TestServer { running, data, .. } = s;
    running.shutdown().await;

    let config = common::config_for(data.path(), None);
    let s = TestServer::start_with(config, data).await;
    let (status, got) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:quetigny:000007")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["powerConsumption"]["value"], 38.5);
    s.running.shutdown().await;
}

#[tokio::test]
async fn queries_filter_by_q_scope_and_geometry() {
    let s = TestServer::http_only().await;
    let mut lights: Vec<Value> = (1..=200).map(|n| light(n, "dijon")).collect();
    lights.extend((1..=50).map(|n| light(1_000 + n, "talant")));
    for (n, l) in lights.iter_mut().enumerate() {
        l["powerState"]["value"] = json!(if n % 2 == 0 { "on" } else { "off" });
        l["powerConsumption"]["value"] = json!(n as f64);
    }
    let (status, _) = s
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &Value::Array(lights))
        .await;
    assert_eq!(status, 201);
    let server = &s;
    let count = |path: String| async move {
        let res = server.http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res.headers()["ngsild-results-count"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };

    // Odd positions are off; the odd ones in 101..=249 draw more than 100 W: 75.
    let q = "/ngsi-ld/v1/entities?type=Streetlight&count=true&limit=0&q=";
    assert_eq!(
        count(format!("{q}powerState==%22off%22;powerConsumption%3E100")).await,
        75
    );
    assert_eq!(
        count(format!("{q}(powerState==%22off%22|powerConsumption==0..9)")).await,
        130
    );
    assert_eq!(count(format!("{q}powerConsumption.unitCode==%22WTT%22")).await, 250);
    assert_eq!(count(format!("{q}powerConsumption[unitCode]")).await, 0);
    assert_eq!(
        count("/ngsi-ld/v1/entities?count=true&limit=0&scopeQ=/talant/%23".into()).await,
        50
    );

    // Lights sit every 1e-4° of longitude (7.5 m at Dijon): 13 on each side of
    // light 50 are within 100 m.
    let near = "georel=near;maxDistance==100&geometry=Point&coordinates=[5.045,47.32]";
    assert_eq!(
        count(format!(
            "/ngsi-ld/v1/entities?type=Streetlight&count=true&limit=0&{near}"
        ))
        .await,
        27
    );
    let within = "georel=within&geometry=Polygon&coordinates=[[[5.04005,47.31],[5.04105,47.31],[5.04105,47.33],[5.04005,47.33],[5.04005,47.31]]]";
    let (status, found) = s
        .get_json(&format!(
            "/ngsi-ld/v1/entities?type=Streetlight&{within}&options=keyValues&pick=powerState"
        ))
        .await;
    assert_eq!(status, 200);
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 10);
    assert_eq!(
        found[0],
        json!({"id": "urn:ngsi-ld:Streetlight:dijon:000001", "type": "Streetlight", "powerState": "on"})
    );
    let (_, omitted) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001?omit=location,scope")
        .await;
    assert!(omitted.get("location").is_none() && omitted.get("scope").is_none() && omitted.get("powerState").is_some());

    // Bad queries name their problem.
    let (status, body) = s.get_json("/ngsi-ld/v1/entities?q=powerState%3D%3D").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    assert!(body["detail"].as_str().unwrap().contains(" at "), "{body}");
    let huge = vec!["powerState==%22on%22"; 65].join(";");
    let (status, body) = s.get_json(&format!("/ngsi-ld/v1/entities?q={huge}")).await;
    assert_eq!((status, problem_type(&body)), (403, "TooComplexQuery"));
    let (status, body) = s
        .get_json("/ngsi-ld/v1/entities?georel=near;maxDistance==100&geometry=Point")
        .await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s
        .get_json("/ngsi-ld/v1/entities?georel=near;maxDistance==100&geometry=Point&coordinates=[500,47]")
        .await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities?type=Streetlight&pick=a&omit=b").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    s.running.shutdown().await;
}
