//! NGSI-LD subscriptions through the real server: the API (5.8, 6.10–6.11)
//! with its errors, notifications over HTTP and MQTT, at-least-once
//! delivery to an endpoint that is down, and across a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::TestServer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const LIGHT: &str = "urn:ngsi-ld:Streetlight:dijon:000001";

fn light(n: u32, power: &str) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"),
        "type": "Streetlight",
        "scope": "/dijon/lighting",
        "powerState": {"type": "Property", "value": power},
    })
}

/// An HTTP endpoint that hands every notification it receives to the test.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Value>,
}

async fn receiver_on(listener: TcpListener) -> Receiver {
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/notify",
            post(
                |State(tx): State<mpsc::UnboundedSender<Value>>, Json(body): Json<Value>| async move {
                    let _ = tx.send(body);
                },
            ),
        )
        .with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, rx }
}

/// A loopback address nobody listens on (yet): connections are refused.
async fn refusing_addr() -> std::net::SocketAddr {
    let parked = TcpListener::bind("127.0.0.1:0").await.unwrap();
    parked.local_addr().unwrap()
}

async fn receiver() -> Receiver {
    receiver_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

impl Receiver {
    /// The next notification, within `secs`.
    async fn next(&mut self, secs: u64) -> Value {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .expect("no notification in time")
            .expect("receiver closed")
    }

    /// Every entity notified until `n` have arrived, in order.
    async fn entities(&mut self, n: usize, secs: u64) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let notification = self.next(secs).await;
            assert_eq!(notification["type"], "Notification");
            out.extend(notification["data"].as_array().cloned().unwrap_or_default());
        }
        out
    }
}

fn subscription(uri: &str) -> Value {
    json!({
        "type": "Subscription",
        "entities": [{"type": "Streetlight"}],
        "watchedAttributes": ["powerState"],
        "q": "powerState==\"off\"",
        "notification": {"attributes": ["powerState"], "format": "keyValues", "endpoint": {"uri": uri}},
    })
}

async fn subscribe(s: &TestServer, body: &Value) -> String {
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/subscriptions"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    location.rsplit('/').next().unwrap().to_owned()
}

async fn set_power(s: &TestServer, n: u32, value: &str) {
    let id = format!("urn:ngsi-ld:Streetlight:dijon:{n:06}");
    let res = s
        .http
        .patch(s.url(&format!("/ngsi-ld/v1/entities/{id}/attrs")))
        .json(&json!({"powerState": {"type": "Property", "value": value}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

async fn with_lights(n: u32) -> TestServer {
    let s = TestServer::http_only().await;
    let lights: Vec<Value> = (1..=n).map(|i| light(i, "on")).collect();
    let (status, _) = s.post_json("/ngsi-ld/v1/entityOperations/create", &json!(lights)).await;
    assert_eq!(status, 201);
    s
}

#[tokio::test]
async fn a_matching_change_is_notified_once_in_the_asked_form() {
    let s = with_lights(2).await;
    let mut endpoint = receiver().await;
    let id = subscribe(&s, &subscription(&endpoint.url)).await;

    set_power(&s, 1, "off").await;
    let n = endpoint.next(5).await;
    assert_eq!(n["subscriptionId"], id.as_str());
    assert_eq!(
        n["data"],
        json!([{"id": LIGHT, "type": "Streetlight", "scope": "/dijon/lighting", "powerState": "off"}])
    );
    assert!(n["notifiedAt"].is_string());

    // Not matching q, and not a watched attribute: nothing.
    set_power(&s, 2, "on").await;
    let res = s
        .http
        .post(s.url(&format!("/ngsi-ld/v1/entities/{LIGHT}/attrs")))
        .json(&json!({"dimmingLevel": {"type": "Property", "value": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), endpoint.rx.recv())
            .await
            .is_err(),
        "no notification for a change the subscription does not watch"
    );

    // Status members count the delivery.
    let (status, got) = s.get_json(&format!("/ngsi-ld/v1/subscriptions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "active");
    assert_eq!(got["notification"]["timesSent"], 1);
    assert_eq!(got["notification"]["status"], "ok");
}

#[tokio::test]
async fn the_api_answers_every_operation_and_error() {
    let s = with_lights(1).await;
    let endpoint = receiver().await;
    let id = subscribe(&s, &subscription(&endpoint.url)).await;
    let path = format!("/ngsi-ld/v1/subscriptions/{id}");

    let (status, list) = s.get_json("/ngsi-ld/v1/subscriptions").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    let mut with_id = subscription(&endpoint.url);
    with_id["id"] = json!(id);
    let (status, body) = s.post_json("/ngsi-ld/v1/subscriptions", &with_id).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"))
    );

    for bad in [
        json!({"type": "Subscription", "notification": {"endpoint": {"uri": endpoint.url}}}),
        json!({"type": "Subscription", "entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "ftp://x/y"}}}),
        json!({"type": "Subscription", "entities": [{"type": "T"}], "q": "a==",
               "notification": {"endpoint": {"uri": endpoint.url}}}),
        json!([]),
    ] {
        let (status, body) = s.post_json("/ngsi-ld/v1/subscriptions", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
    }

    let res = s
        .http
        .patch(s.url(&path))
        .json(&json!({"isActive": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, got) = s.get_json(&path).await;
    assert_eq!(
        (got["isActive"].as_bool(), got["status"].as_str()),
        (Some(false), Some("paused"))
    );
    let res = s
        .http
        .patch(s.url(&path))
        .json(&json!({"id": "urn:x:other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Another caller does not see it.
    let other = s.client_as(vigie_core::Role::Operator, "dijon", "*").await;
    let res = other.get(s.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let res = s.http.delete(s.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(s.get_json(&path).await.0, 404);
    assert_eq!(s.http.delete(s.url(&path)).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn notifications_wait_for_a_dead_endpoint_and_arrive_in_order() {
    let s = with_lights(5).await;
    let addr = refusing_addr().await;
    let url = format!("http://{addr}/notify");
    let mut sub = subscription(&url);
    sub["q"] = json!("powerState==\"off\"|powerState==\"on\"");
    subscribe(&s, &sub).await;
    // A healthy subscriber beside it is not held up.
    let mut healthy = receiver().await;
    subscribe(&s, &subscription(&healthy.url)).await;

    for n in 1..=5 {
        set_power(&s, n, "off").await;
    }
    assert_eq!(healthy.entities(5, 5).await.len(), 5);

    let mut late = receiver_on(TcpListener::bind(addr).await.unwrap()).await;
    let got = late.entities(5, 20).await;
    let ids: Vec<&str> = got.iter().filter_map(|e| e["id"].as_str()).collect();
    let expected: Vec<String> = (1..=5)
        .map(|n| format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"))
        .collect();
    assert_eq!(ids, expected, "every change, once, in order");
}

// Several threads, as in production, and busy cores, as after a restart
// under load: each subscription's worker starts on another thread while the
// subscriptions are being loaded, and may run first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_notifications_of_every_subscription_survive_a_restart() {
    const SUBSCRIPTIONS: usize = 40;
    let s = with_lights(3).await;
    let addr = refusing_addr().await;
    for _ in 0..SUBSCRIPTIONS {
        subscribe(&s, &subscription(&format!("http://{addr}/notify"))).await;
    }
    for n in 1..=3 {
        set_power(&s, n, "off").await;
    }
    let TestServer { running, data, .. } = s;
    running.shutdown().await;

    let mut endpoint = receiver_on(TcpListener::bind(addr).await.unwrap()).await;
    let config = common::config_for(data.path(), None);
    let busy = Arc::new(AtomicBool::new(true));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let busy = Arc::clone(&busy);
            std::thread::spawn(move || {
                while busy.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let _s = TestServer::start_with(config, data).await;
    busy.store(false, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    let got = endpoint.entities(3 * SUBSCRIPTIONS, 20).await;
    assert_eq!(got.len(), 3 * SUBSCRIPTIONS, "each subscription's three changes");
}

/// Shutdown waits for the delivery workers' last writes, and a send in
/// progress does not hold it: a failure counted just before is saved, the
/// notification held by an endpoint that never answers stays pending.
#[tokio::test]
async fn shutdown_saves_delivery_counters_and_is_not_held_by_a_silent_endpoint() {
    let s = with_lights(2).await;
    // Refuses connections: the failure is counted at once.
    let refused = refusing_addr().await;
    let failing = subscribe(&s, &subscription(&format!("http://{refused}/notify"))).await;
    // Accepts connections and never answers (the send times out after 10 s).
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut silent_sub = subscription(&format!("http://{}/notify", silent.local_addr().unwrap()));
    silent_sub["entities"] = json!([{"id": "urn:ngsi-ld:Streetlight:dijon:000002", "type": "Streetlight"}]);
    subscribe(&s, &silent_sub).await;
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    set_power(&s, 1, "off").await;
    set_power(&s, 2, "off").await;
    // The failure is counted (and kept only in memory: counters are saved every 5 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let TestServer { running, data, .. } = s;
    let stopping = std::time::Instant::now();
    running.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    held.abort();

    let config = common::config_for(data.path(), None);
    let s = TestServer::start_with(config, data).await;
    let (status, body) = s.get_json(&format!("/ngsi-ld/v1/subscriptions/{failing}")).await;
    assert_eq!(status, 200, "{body}");
    let notification = &body["notification"];
    assert_eq!(notification["status"], "failed", "{body}");
    assert!(notification["timesFailed"].as_u64().unwrap_or(0) >= 1, "{body}");
}

#[tokio::test]
async fn notifications_reach_an_mqtt_endpoint() {
    let s = TestServer::with_embedded_broker_and(|c| c.mqtt.require_device_auth = false).await;
    let (status, _) = s.post_json("/ngsi-ld/v1/entities", &light(1, "on")).await;
    assert_eq!(status, 201);
    let port = s.running.mqtt_addr.expect("broker").port();

    let mut options = rumqttc::MqttOptions::new("notification-reader", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    client
        .subscribe("city/alerts", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    let _ = tx.send(rumqttc::Publish::new("suback", rumqttc::QoS::AtMostOnce, vec![]));
                }
                _ => {}
            }
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.topic, "suback");

    let uri = format!("mqtt://127.0.0.1:{port}/city/alerts");
    let mut sub = subscription(&uri);
    sub["notification"]["endpoint"]["notifierInfo"] = json!([{"key": "MQTT-QoS", "value": "1"}]);
    subscribe(&s, &sub).await;
    set_power(&s, 1, "off").await;

    let message = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.topic, "city/alerts");
    let payload: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(payload["body"]["type"], "Notification");
    assert_eq!(payload["body"]["data"][0]["powerState"], "off");
    assert!(payload["metadata"].is_object(), "{payload}");
}
