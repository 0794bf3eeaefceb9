//! The temporal API through the real server (5.7.3–5.7.4, 6.18–6.22):
//! instances from every write, simplified values, aggregation per period,
//! lastN, time ranges, 206 paging, and the errors.

mod common;

use common::TestServer;
use serde_json::{Value, json};

const LIGHT: &str = "urn:ngsi-ld:Streetlight:dijon:000001";

/// A light whose power was measured at 18:00, 18:10, ... (six readings: 10..60 W).
async fn light_with_history(s: &TestServer) {
    let e = json!({"id": LIGHT, "type": "Streetlight", "scope": "/dijon/lighting",
        "powerConsumption": {"type": "Property", "value": 0, "observedAt": "2026-11-22T17:00:00Z"}});
    assert_eq!(s.post_json("/ngsi-ld/v1/entities", &e).await.0, 201);
    for i in 1..=6 {
        let body = json!({"powerConsumption": {"type": "Property", "value": i * 10, "unitCode": "WTT",
            "observedAt": format!("2026-11-22T18:{:02}:00Z", (i - 1) * 10)}});
        let res = s
            .http
            .patch(s.url(&format!("/ngsi-ld/v1/entities/{LIGHT}/attrs")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
}

async fn get(s: &TestServer, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = s.http.get(s.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn instances_values_and_ranges() {
    let s = TestServer::http_only().await;
    light_with_history(&s).await;
    let base = format!("/ngsi-ld/v1/temporal/entities/{LIGHT}");

    let (status, _, t) = get(&s, &base).await;
    assert_eq!(status, 200);
    let instances = t["powerConsumption"].as_array().unwrap();
    assert_eq!(instances.len(), 7);
    assert_eq!(instances[1]["value"], 10);
    assert_eq!(instances[1]["observedAt"], "2026-11-22T18:00:00.000Z");
    assert_eq!(instances[1]["type"], "Property");

    let between = format!("{base}?timerel=between&timeAt=2026-11-22T18:05:00Z&endTimeAt=2026-11-22T18:35:00Z");
    let (_, _, t) = get(&s, &between).await;
    let values: Vec<&Value> = t["powerConsumption"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["value"])
        .collect();
    assert_eq!(values, [&json!(20), &json!(30), &json!(40)]);

    let (_, _, t) = get(&s, &format!("{base}?lastN=2&options=temporalValues")).await;
    assert_eq!(
        t["powerConsumption"]["values"],
        json!([[50, "2026-11-22T18:40:00.000Z"], [60, "2026-11-22T18:50:00.000Z"]])
    );

    let (_, _, t) = get(&s, &format!("{base}?timerel=before&timeAt=2026-11-22T18:00:00Z")).await;
    assert_eq!(t["powerConsumption"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn aggregation_per_period() {
    let s = TestServer::http_only().await;
    light_with_history(&s).await;
    let path = format!(
        "/ngsi-ld/v1/temporal/entities/{LIGHT}?options=aggregatedValues&aggrMethods=avg,min,max,totalCount\
         &aggrPeriodDuration=PT30M&timerel=between&timeAt=2026-11-22T18:00:00Z&endTimeAt=2026-11-22T19:00:00Z"
    );
    let (status, _, t) = get(&s, &path).await;
    assert_eq!(status, 200, "{t}");
    let p = &t["powerConsumption"];
    assert_eq!(p["avg"][0][0].as_f64(), Some(20.0), "{p}");
    assert_eq!(p["avg"][0][1], "2026-11-22T18:00:00.000Z");
    assert_eq!(p["avg"][0][2], "2026-11-22T18:30:00.000Z");
    assert_eq!(p["avg"][1][0].as_f64(), Some(50.0));
    assert_eq!(p["min"][1][0], 40);
    assert_eq!(p["max"][0][0], 30);
    assert_eq!(p["totalCount"][1][0], 3);

    // The query form: every Streetlight, one period.
    let q = "/ngsi-ld/v1/temporal/entities?type=Streetlight&options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration=P1D\
             &timerel=after&timeAt=2026-11-22T18:00:00Z";
    let (status, _, t) = get(&s, q).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t[0]["powerConsumption"]["sum"][0][0].as_f64(), Some(210.0), "{t}");
}

#[tokio::test]
async fn post_query_with_temporal_q() {
    let s = TestServer::http_only().await;
    light_with_history(&s).await;
    let body = json!({"type": "Query", "entities": [{"type": "Streetlight"}], "attrs": ["powerConsumption"],
        "temporalQ": {"timerel": "after", "timeAt": "2026-11-22T18:30:00Z"}});
    let (status, t) = s.post_json("/ngsi-ld/v1/temporal/entityOperations/query", &body).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t[0]["powerConsumption"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn long_histories_are_paged_with_content_range() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config_for(data.path(), None);
    config.api.max_page_size = 4;
    let s = TestServer::start_with(config, data).await;
    light_with_history(&s).await;
    let (status, headers, t) = get(&s, &format!("/ngsi-ld/v1/temporal/entities/{LIGHT}")).await;
    assert_eq!(status, 206, "{t}");
    assert_eq!(t["powerConsumption"].as_array().map(Vec::len), Some(4));
    let range = headers["content-range"].to_str().unwrap();
    assert!(range.starts_with("date-time "), "{range}");
    assert!(range.contains("2026-11-22T18:20:00.000Z"), "{range}");
}

#[tokio::test]
async fn errors_name_the_parameter() {
    let s = TestServer::http_only().await;
    light_with_history(&s).await;
    let base = format!("/ngsi-ld/v1/temporal/entities/{LIGHT}");
    for (query, status, problem) in [
        ("?timerel=between&timeAt=2026-11-22T18:00:00Z", 400, "BadRequestData"),
        ("?timerel=sometime&timeAt=2026-11-22T18:00:00Z", 400, "BadRequestData"),
        ("?lastN=0", 400, "BadRequestData"),
        ("?options=aggregatedValues", 400, "BadRequestData"),
        ("?options=aggregatedValues&aggrMethods=median", 400, "BadRequestData"),
        (
            "?options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT1S&timerel=between\
          &timeAt=2000-01-01T00:00:00Z&endTimeAt=2026-01-01T00:00:00Z",
            403,
            "TooComplexQuery",
        ),
        ("?timeproperty=modifiedAt", 422, "OperationNotSupported"),
    ] {
        let (got, _, body) = get(&s, &format!("{base}{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(
            body["type"],
            format!("https://uri.etsi.org/ngsi-ld/errors/{problem}"),
            "{query}"
        );
    }
    let (status, _, _) = get(&s, "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:X:none").await;
    assert_eq!(status, 404);

    // Deleting the temporal entity deletes the entity and its history.
    let res = s.http.delete(s.url(&base)).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(get(&s, &base).await.0, 404);
}

#[tokio::test]
async fn temporal_writes_add_instances() {
    let s = TestServer::http_only().await;
    let temporal = json!({
        "id": LIGHT, "type": "Streetlight", "scope": "/dijon/lighting",
        "powerConsumption": [
            {"type": "Property", "value": 12, "observedAt": "2026-11-22T18:00:00Z"},
            {"type": "Property", "value": 14, "observedAt": "2026-11-22T18:10:00Z"},
        ],
    });
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/temporal/entities"))
        .json(&temporal)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // The newest instance is the entity's state.
    let e = s.get_json(&format!("/ngsi-ld/v1/entities/{LIGHT}")).await.1;
    assert_eq!(e["powerConsumption"]["value"], 14);

    // An older instance goes to history only; a newer one becomes the state.
    let more = json!({"powerConsumption": [
        {"type": "Property", "value": 9, "observedAt": "2026-11-22T17:00:00Z"},
        {"type": "Property", "value": 16, "observedAt": "2026-11-22T18:20:00Z"},
    ]});
    let res = s
        .http
        .post(s.url(&format!("/ngsi-ld/v1/temporal/entities/{LIGHT}/attrs")))
        .json(&more)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, _, t) = get(
        &s,
        &format!("/ngsi-ld/v1/temporal/entities/{LIGHT}?options=temporalValues"),
    )
    .await;
    let values: Vec<i64> = t["powerConsumption"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v[0].as_i64())
        .collect();
    assert_eq!(values, [9, 12, 14, 16]);
    let e = s.get_json(&format!("/ngsi-ld/v1/entities/{LIGHT}")).await.1;
    assert_eq!(e["powerConsumption"]["value"], 16);

    // Existing entity through POST /temporal/entities: 204; errors.
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/temporal/entities"))
        .json(&temporal)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:X:none/attrs"))
        .json(&more)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let bad = json!({"id": LIGHT, "type": "Streetlight", "powerConsumption": [{"value": 1}]});
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/temporal/entities"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}
