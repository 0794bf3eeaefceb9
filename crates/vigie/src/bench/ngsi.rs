//! The NGSI-LD broker's figures (issue 4), through the real server over
//! HTTP, load generator in the same process: single-attribute PATCH
//! throughput, a `q` query by type over 100,000 entities, temporal
//! aggregation over 100,000 points of one entity and over 1,000 entities ×
//! 1,000 points, and notification latency at 10,000 updates/s with 100
//! subscriptions, with one endpoint down and across a restart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use vigie_core::{Attribute, Entity, EntityId, Scope, Timestamp};
use vigie_store::{HistoryPoint, WriteBatch};

use super::{BenchArgs, Report, authorized_client, quantile, reopen_vigie_with, start_vigie, thousands};

fn light(n: usize, off: bool) -> anyhow::Result<Entity> {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:07}"))?;
    let scope = Scope::from_ngsi("/dijon/lighting")?;
    let lon = 5.0 + (n % 1000) as f64 * 1e-4;
    let lat = 47.3 + (n / 1000) as f64 * 1e-4;
    Ok(Entity::new(id, "Streetlight", Some(scope))
        .with("location", Attribute::point(lon, lat))
        .with("powerState", Attribute::property(if off { "off" } else { "on" }))
        .with("powerConsumption", Attribute::property(38.5).with_unit("WTT"))
        .with("sentAt", Attribute::property(0)))
}

async fn load_lights(running: &vigie_server::Running, n: usize) -> anyhow::Result<()> {
    for first in (0..n).step_by(5_000) {
        let chunk = (first..(first + 5_000).min(n))
            .map(|i| light(i, i % 100 == 0))
            .collect::<anyhow::Result<Vec<_>>>()?;
        running.upsert(chunk).await?;
    }
    Ok(())
}

/// `PATCH /entities/{id}/attrs/powerConsumption` from `args.connections` connections.
pub(super) async fn patches(
    args: &BenchArgs,
    data: &Path,
    report: &mut Report,
    durability: &str,
) -> anyhow::Result<()> {
    println!("\n[ngsi] single-attribute PATCH, store.durability = {durability}…");
    // A directory per setting: the previous run's connections may still be closing.
    let dir = format!("ngsi-patch-{durability}");
    let running = super::start_vigie_with(data, &dir, |c| c.store.durability = durability.into()).await?;
    load_lights(&running, LEAN_LIGHTS).await?;
    let token = super::service_token(&running, None).await?;
    let host = running.http_addr;
    let (per_second, failures) = lean_rate(host, args.connections, 204, move |c, i| {
        let n = lean_light(c, i);
        let path = format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:{n:07}/attrs/powerConsumption");
        let body = format!(r#"{{"value":{}}}"#, (n % 70) as f64);
        super::load::json_request("PATCH", host, &path, &token, &body)
    })
    .await;
    report.add_rate(
        format!(
            "Single-attribute PATCH, {} connections, store.durability = {durability}, median of 1 s samples",
            args.connections
        ),
        &per_second,
        "/s",
        "≥ 20,000 /s",
        failures,
    );
    running.shutdown().await;
    Ok(())
}

/// `GET /entities/{id}` through the PATCH figure's generator, connections
/// and lights: what HTTP, routing, authorization and JSON cost on this
/// machine without a write, the ceiling a PATCH rate sits under.
pub(super) async fn reads(args: &BenchArgs, data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[ngsi] GET by id through the PATCH figure's generator…");
    let running = start_vigie(data, "ngsi-get").await?;
    load_lights(&running, LEAN_LIGHTS).await?;
    let token = super::service_token(&running, None).await?;
    let host = running.http_addr;
    let (per_second, failures) = lean_rate(host, args.connections, 200, move |c, i| {
        let path = format!(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:{:07}",
            lean_light(c, i)
        );
        super::load::json_request("GET", host, &path, &token, "")
    })
    .await;
    report.add_rate(
        format!(
            "GET entity by id, same generator, {} connections (no write: the ceiling for PATCH), median of 1 s samples",
            args.connections
        ),
        &per_second,
        "/s",
        "",
        failures,
    );
    running.shutdown().await;
    Ok(())
}

/// The lights the lean generator's figures address.
const LEAN_LIGHTS: usize = 10_000;

/// The light connection `c` addresses in its request `i`: spread so that
/// concurrent requests rarely meet on one light.
fn lean_light(c: usize, i: u64) -> usize {
    (c * 7_919 + i as usize * 104_729) % LEAN_LIGHTS
}

/// Requests per second (ten 1-second samples after 2 s of warm-up, sorted)
/// from the lean generator's `connections`, and the answers without `expect`.
async fn lean_rate(
    host: std::net::SocketAddr,
    connections: usize,
    expect: u16,
    request: impl Fn(usize, u64) -> Vec<u8> + Send + Sync + 'static,
) -> (Vec<f64>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = super::load::closed_loop(host, connections, expect, request, Arc::clone(&stop));
    let done = &tally.expected;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_second = Vec::new();
    let mut last = done.load(Ordering::Relaxed);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = done.load(Ordering::Relaxed);
        per_second.push((now - last) as f64);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    per_second.sort_by(f64::total_cmp);
    (per_second, tally.unexpected.load(Ordering::Relaxed))
}

/// p50 / p95 of `requests` sequential GETs.
async fn timed(client: &reqwest::Client, url: &str, requests: usize) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let res = client.get(url).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    ms.sort_by(f64::total_cmp);
    Ok((quantile(&ms, 0.5), quantile(&ms, 0.95)))
}

pub(super) async fn query(data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[ngsi] q over 100,000 entities…");
    let running = start_vigie(data, "ngsi-query").await?;
    load_lights(&running, 100_000).await?;
    let client = authorized_client(&running, 1, None).await?;
    let base = format!("http://{}/ngsi-ld/v1/entities", running.http_addr);
    let page = format!("{base}?type=Streetlight&q=powerState==%22off%22&limit=100");
    timed(&client, &page, 20).await?;
    let (p50, p95) = timed(&client, &page, 300).await?;
    report.add(
        "type=Streetlight&q=powerState==\"off\" over 100,000 (1 % match, page of 100), p50 / p95",
        format!("{p50:.2} / {p95:.2} ms"),
        "p95 < 20 ms",
    );
    // Paging through every entity: each exactly once, in id order.
    let started = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut last = String::new();
    let mut in_order = true;
    for offset in (0..100_000).step_by(1_000) {
        let url = format!("{base}?type=Streetlight&limit=1000&offset={offset}&options=keyValues&attrs=powerState");
        let page: Vec<Value> = client.get(&url).send().await?.json().await?;
        for e in page {
            let id = e["id"].as_str().unwrap_or_default().to_owned();
            in_order &= id > last;
            last.clone_from(&id);
            seen.insert(id);
        }
    }
    report.add(
        "Paging through 100,000 entities by 1,000: distinct entities seen / in id order / time",
        super::paging_figure(seen.len(), in_order, started.elapsed()),
        "100,000, each once",
    );
    let origin = format!("http://{}", running.http_addr);
    let first = "/ngsi-ld/v1/entities?type=Streetlight&limit=1000&options=keyValues&attrs=powerState";
    let (seen, in_order, took) = super::follow_next_links(&client, &origin, first).await?;
    report.add(
        "the same following Link rel=\"next\" (afterId): seen / in id order / time",
        super::paging_figure(seen, in_order, took),
        "100,000, each once",
    );
    let counted = format!("{page}&count=true");
    let (p50, p95) = timed(&client, &counted, 100).await?;
    report.add(
        "the same with count=true (every entity examined), p50 / p95",
        format!("{p50:.2} / {p95:.2} ms"),
        "p95 < 20 ms",
    );
    running.shutdown().await;
    Ok(())
}

/// Writes `points` hourly-spread readings of `powerConsumption` per entity
/// straight to the store (history of a year of telemetry, loaded fast).
async fn history(running: &vigie_server::Running, ids: &[EntityId], points: usize) -> anyhow::Result<()> {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse()?;
    let mut batch = Vec::with_capacity(50_000);
    for id in ids {
        for i in 0..points {
            batch.push(HistoryPoint {
                entity_id: id.clone(),
                attribute: "powerConsumption".into(),
                observed_at: start + jiff::SignedDuration::from_secs(36 * i as i64),
                value: json!(20.0 + (i % 50) as f64),
                unit_code: None,
            });
            if batch.len() == 50_000 {
                running
                    .store
                    .write(&WriteBatch {
                        history: std::mem::take(&mut batch),
                        ..Default::default()
                    })
                    .await?;
            }
        }
    }
    running
        .store
        .write(&WriteBatch {
            history: batch,
            ..Default::default()
        })
        .await?;
    Ok(())
}

pub(super) async fn temporal(data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[ngsi] temporal aggregation…");
    let running = start_vigie(data, "ngsi-temporal").await?;
    let meters: Vec<Entity> = (0..1_001)
        .map(|n| {
            let id = EntityId::conventional("EnergyMeter", "dijon", &format!("{n:05}"))?;
            let kind = if n == 0 { "OneMeter" } else { "EnergyMeter" };
            // The reading the meter is created with is the first of its history.
            let first = Attribute::property(0.0).observed("2025-12-31T23:00:00Z".parse()?);
            Ok(Entity::new(id, kind, None).with("powerConsumption", first))
        })
        .collect::<anyhow::Result<_>>()?;
    let ids: Vec<EntityId> = meters.iter().map(|e| e.id.clone()).collect();
    running.upsert(meters).await?;
    history(&running, &ids[..1], 100_000).await?;
    history(&running, &ids[1..], 1_000).await?;
    let client = authorized_client(&running, 1, None).await?;
    let base = format!("http://{}/ngsi-ld/v1/temporal/entities", running.http_addr);
    let aggregate = "options=aggregatedValues&aggrMethods=avg,min,max&aggrPeriodDuration=PT1H";
    let one = format!("{base}/{}?{aggregate}", ids[0]);
    timed(&client, &one, 5).await?;
    let (p50, p95) = timed(&client, &one, 50).await?;
    report.add(
        "Temporal avg,min,max PT1H over 100,000 points of one entity, p50 / p95",
        format!("{p50:.1} / {p95:.1} ms"),
        "p95 < 30 ms",
    );
    let many = format!("{base}?type=EnergyMeter&limit=1000&{aggregate}");
    timed(&client, &many, 2).await?;
    let (p50, p95) = timed(&client, &many, 10).await?;
    report.add(
        "Temporal avg,min,max PT1H over 1,000 entities × 1,000 points, p50 / p95",
        format!("{p50:.0} / {p95:.0} ms"),
        "",
    );
    running.shutdown().await;
    Ok(())
}

/// What the notification endpoints received: per entity id, the `sentAt`
/// values seen, and the latencies measured.
#[derive(Default)]
struct Received {
    latencies_ms: Vec<f64>,
    seen: HashMap<String, u64>,
}

type Shared = Arc<Mutex<Received>>;

async fn receive(State(shared): State<Shared>, Json(n): Json<Value>) {
    let now = Timestamp::now().as_microsecond();
    let mut r = shared.lock().unwrap_or_else(PoisonError::into_inner);
    for e in n["data"].as_array().into_iter().flatten() {
        let (Some(id), Some(sent)) = (e["id"].as_str(), e["sentAt"].as_i64()) else {
            continue;
        };
        r.latencies_ms.push((now - sent) as f64 / 1e3);
        let entry = r.seen.entry(id.to_owned()).or_insert(0);
        *entry = (*entry).max(sent as u64);
    }
}

async fn endpoint(listener: tokio::net::TcpListener, shared: Shared) {
    let app = axum::Router::new()
        .route("/notify", axum::routing::post(receive))
        .with_state(shared);
    let _ = axum::serve(listener, app).await;
}

pub(super) async fn notifications(data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[ngsi] notifications at 10,000 updates/s with 100 subscriptions…");
    let running = start_vigie(data, "ngsi-notify").await?;
    let lights = 10_000;
    load_lights(&running, lights).await?;
    let client = authorized_client(&running, 4, None).await?;
    let api = format!("http://{}/ngsi-ld/v1", running.http_addr);

    let shared: Shared = Arc::default();
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let live_url = format!("http://{}/notify", live.local_addr()?);
    tokio::spawn(endpoint(live, Arc::clone(&shared)));
    // Subscription 00's endpoint is down for the whole run.
    let parked = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let down_addr = parked.local_addr()?;
    drop(parked);
    for k in 0..100 {
        let uri = if k == 0 {
            format!("http://{down_addr}/notify")
        } else {
            live_url.clone()
        };
        let sub = json!({
            "type": "Subscription",
            "entities": [{"type": "Streetlight", "idPattern": format!("{k:02}$")}],
            "watchedAttributes": ["sentAt"],
            "notification": {"attributes": ["sentAt"], "format": "keyValues", "endpoint": {"uri": uri}},
        });
        let res = client.post(format!("{api}/subscriptions")).json(&sub).send().await?;
        anyhow::ensure!(res.status().as_u16() == 201, "subscription: {}", res.text().await?);
    }

    // 10,000 updates/s: every 50 ms, a batch update of 500 lights (sent
    // without waiting for the previous one, as independent clients would).
    let seconds = 10;
    let per_tick = 500;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut next = 0usize;
    let mut last_sent: HashMap<String, i64> = HashMap::new();
    let mut requests = Vec::new();
    let started = Instant::now();
    for _ in 0..(seconds * 20) {
        tick.tick().await;
        let sent = Timestamp::now().as_microsecond();
        let batch: Vec<Value> = (0..per_tick)
            .map(|i| {
                let n = (next + i) % lights;
                let id = format!("urn:ngsi-ld:Streetlight:dijon:{n:07}");
                last_sent.insert(id.clone(), sent);
                json!({"id": id, "type": "Streetlight", "sentAt": {"type": "Property", "value": sent}})
            })
            .collect();
        next += per_tick;
        let request = client
            .post(format!("{api}/entityOperations/update"))
            .json(&batch)
            .send();
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            request.await.map(|r| (r.status().as_u16(), sent.elapsed()))
        }));
    }
    let offered = (seconds * 20 * per_tick) as f64 / started.elapsed().as_secs_f64();
    let mut answered_ms = Vec::with_capacity(requests.len());
    for r in requests {
        let (status, took) = r.await??;
        anyhow::ensure!(status == 204, "batch update answered {status}");
        answered_ms.push(took.as_secs_f64() * 1e3);
    }
    answered_ms.sort_by(f64::total_cmp);
    // Every light's last update delivered (or 30 s passed).
    let delivered = |seen: &HashMap<String, u64>, down: bool| {
        last_sent
            .iter()
            .filter(|(id, _)| id.ends_with("00") == down)
            .filter(|(id, sent)| seen.get(*id).copied().unwrap_or(0) < **sent as u64)
            .count()
    };
    let all_in = super::wait_until(Duration::from_secs(30), || {
        delivered(&shared.lock().unwrap_or_else(PoisonError::into_inner).seen, false) == 0
    })
    .await;
    let (mut latencies, seen) = {
        let r = shared.lock().unwrap_or_else(PoisonError::into_inner);
        (r.latencies_ms.clone(), r.seen.clone())
    };
    latencies.sort_by(f64::total_cmp);
    let lost = delivered(&seen, false);
    report.add(
        format!(
            "Update → notification, {} updates/s offered, 100 subscriptions, p50 / p99",
            thousands(offered)
        ),
        format!(
            "{:.1} / {:.1} ms",
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99)
        ),
        "p99 < 50 ms",
    );
    report.add(
        "Batch update of 500 lights answered (durable, notifications queued), p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            quantile(&answered_ms, 0.5),
            quantile(&answered_ms, 0.99)
        ),
        "",
    );
    report.add(
        "Notifications lost (live endpoints: latest state of each light not delivered)",
        format!("{lost}{}", if all_in { "" } else { " (timed out waiting)" }),
        "0",
    );
    report.note(format!(
        "Notifications: {} entity notifications received for {} updates to live subscriptions; \
         pending changes of one subscription are grouped into one notification.",
        thousands(latencies.len() as f64),
        thousands((seconds * 20 * per_tick) as f64 * 0.99)
    ));

    // The dead endpoint's notifications wait in the outbox; Vigie restarts; they arrive.
    let pending = running.store.count_pending_notifications().await?;
    running.shutdown().await;
    let late: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind(down_addr)
        .await
        .context("cannot take over the dead endpoint's port")?;
    tokio::spawn(endpoint(listener, Arc::clone(&late)));
    let restarted = Instant::now();
    let running = reopen_vigie_with(data, "ngsi-notify", |_| {}).await?;
    let expected_down = last_sent.keys().filter(|id| id.ends_with("00")).count();
    let all_late = super::wait_until(Duration::from_secs(60), || {
        delivered(&late.lock().unwrap_or_else(PoisonError::into_inner).seen, true) == 0
    })
    .await;
    let took = restarted.elapsed();
    let lost_down = delivered(&late.lock().unwrap_or_else(PoisonError::into_inner).seen, true);
    report.add(
        "Endpoint down during the run, Vigie restarted, endpoint up: lost",
        format!(
            "{lost_down} of {} lights ({} notifications were pending; all in {:.1} s{})",
            expected_down,
            thousands(pending as f64),
            took.as_secs_f64(),
            if all_late { "" } else { ", timed out" }
        ),
        "0",
    );
    running.shutdown().await;
    Ok(())
}
