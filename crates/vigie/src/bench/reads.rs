//! Read benchmarks over HTTP: NGSI-LD GET by id, then geo and `q` queries
//! over a million live entities, and the memory those entities take.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigie_core::{Attribute, Entity, EntityId};
use vigie_sim::{City, CityConfig, EquipmentKind};

use super::{BenchArgs, Report, authorized_client, quantile, resident_bytes, start_vigie, thousands};

/// GET /ngsi-ld/v1/entities/{id} from `args.connections` keep-alive connections.
pub async fn by_id(args: &BenchArgs, data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[reads] loading the city…");
    let running = start_vigie(data, "reads").await?;
    let city = City::generate(&CityConfig::default());
    running.upsert(city.entities().collect()).await?;
    let lights = city.count(EquipmentKind::Streetlight);
    let urls: Arc<Vec<String>> = Arc::new(
        (0..lights)
            .filter_map(|ix| city.entity_id(EquipmentKind::Streetlight, ix))
            .map(|id| format!("http://{}/ngsi-ld/v1/entities/{id}", running.http_addr))
            .collect(),
    );
    let client = authorized_client(&running, args.connections, None).await?;
    let (per_second, failures) = throughput(&client, &urls, args.connections, Duration::from_secs(2), 10).await;
    running.shutdown().await;
    report.add_rate(
        format!(
            "GET entity by id, {} connections, median of 1 s samples",
            args.connections
        ),
        &per_second,
        "req/s",
        "≥ 20,000 req/s",
        failures,
    );
    Ok(())
}

/// Requests per second, one sample per second after `warmup`, sorted, of
/// GETs cycling through `urls` from `connections` keep-alive connections;
/// and how many requests failed.
pub async fn throughput(
    client: &reqwest::Client,
    urls: &Arc<Vec<String>>,
    connections: usize,
    warmup: Duration,
    samples: usize,
) -> (Vec<f64>, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let (client, urls, done, failed, stop) = (
            client.clone(),
            Arc::clone(urls),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = c * 7_919;
            while !stop.load(Ordering::Relaxed) {
                n = (n + 104_729) % urls.len().max(1);
                let ok = match client.get(&urls[n]).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    let mut per_second = Vec::with_capacity(samples);
    let mut last = done.load(Ordering::Relaxed);
    for _ in 0..samples {
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
    (per_second, failed.load(Ordering::Relaxed))
}

/// Attributes the copied lights keep (what the queries read, and a light's
/// live state): a million full Dijon lights would not fit this machine's
/// memory today (see BENCHMARKS.md).
const COPIED_ATTRIBUTES: [&str; 6] = [
    "location",
    "status",
    "powerState",
    "powerRating",
    "illuminanceLevel",
    "powerConsumption",
];

/// Light `n` of the query benchmark: Dijon's own lights first, then copies
/// spread over a metropolis about five times its extent; one in a hundred
/// has a defective lamp.
fn bench_light(base: &[Entity], n: usize, rng: &mut ChaCha8Rng) -> Option<Entity> {
    let template = base.get(n % base.len().max(1))?;
    let mut e = if n < base.len() {
        template.clone()
    } else {
        let id = EntityId::new(format!("urn:ngsi-ld:Streetlight:bench:{n:07}")).ok()?;
        let mut e = Entity::new(id, template.entity_type.clone(), template.scope.clone());
        for name in COPIED_ATTRIBUTES {
            if let Some(a) = template.attributes.get(name) {
                e.attributes.insert(name.to_owned(), a.clone());
            }
        }
        if let Some((lon, lat)) = template.point() {
            let (dlon, dlat) = (rng.random_range(-0.12..0.12), rng.random_range(-0.08..0.08));
            e.attributes
                .insert("location".into(), Attribute::point(lon + dlon, lat + dlat));
        }
        e
    };
    let status = if n % 100 == 42 { "defectiveLamp" } else { "ok" };
    e.attributes.insert("status".into(), Attribute::property(status));
    Some(e)
}

/// Latencies in milliseconds of `requests` GETs of the URLs `next` yields.
async fn latencies(
    client: &reqwest::Client,
    requests: usize,
    mut next: impl FnMut(usize) -> String,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut ms = Vec::with_capacity(requests);
    let mut results = 0;
    for i in 0..requests {
        let url = next(i);
        let started = Instant::now();
        let res = client.get(&url).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        results += usize::from(body.len() > 2);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms, results))
}

/// Reports the p50 and p99 of sorted latencies; `p99_target` is the issue's.
fn add_latencies(report: &mut Report, query: &str, sorted_ms: &[f64], p99_target: &str) {
    report.add(
        format!("{query}, p50"),
        format!("{:.2} ms", quantile(sorted_ms, 0.5)),
        "",
    );
    report.add(
        format!("{query}, p99"),
        format!("{:.2} ms", quantile(sorted_ms, 0.99)),
        p99_target,
    );
}

/// Geo and `q` queries over `args.entities` live entities; resident memory.
pub async fn queries(args: &BenchArgs, data: &Path, report: &mut Report) -> anyhow::Result<()> {
    let running = start_vigie(data, "query").await?;
    let city = City::generate(&CityConfig::default());
    let rss_before = resident_bytes().unwrap_or(0);
    println!("\n[query] loading {} lights…", thousands(args.entities as f64));
    let base: Vec<Entity> = city
        .entities()
        .filter(|e| e.entity_type == EquipmentKind::Streetlight.entity_type())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1_000_000);
    let mut points = Vec::new();
    let started = Instant::now();
    // In chunks, so the generated entities never sit beside the twin's copy.
    for first in (0..args.entities).step_by(10_000) {
        let chunk: Vec<Entity> = (first..(first + 10_000).min(args.entities))
            .filter_map(|n| bench_light(&base, n, &mut rng))
            .collect();
        points.extend(chunk.iter().step_by(97).filter_map(Entity::point));
        running.upsert(chunk).await?;
    }
    let load = started.elapsed();
    anyhow::ensure!(
        running.twin.len() >= args.entities,
        "the twin holds {} entities",
        running.twin.len()
    );
    let rss = resident_bytes().unwrap_or(0);
    report.add(
        format!(
            "Load {} entities through the writer (SQLite, fsync)",
            thousands(args.entities as f64)
        ),
        format!("{:.1} s", load.as_secs_f64()),
        "",
    );
    report.add(
        format!(
            "Resident memory with {} live entities",
            thousands(running.twin.len() as f64)
        ),
        format!("{:.0} MiB", rss as f64 / 1_048_576.0),
        "< 2 GB",
    );
    report.note(format!(
        "Memory: the whole process's resident set after loading ({:.0} MiB before); Dijon's {} lights \
         carry all their attributes, the copies {} ({}).",
        rss_before as f64 / 1_048_576.0,
        thousands(base.len() as f64),
        COPIED_ATTRIBUTES.len(),
        COPIED_ATTRIBUTES.join(", ")
    ));

    let client = authorized_client(&running, 1, None).await?;
    let base = format!("http://{}/ngsi-ld/v1/entities", running.http_addr);
    let pick = |i: usize| points[(i * 7_919) % points.len().max(1)];
    anyhow::ensure!(!points.is_empty(), "no located entities");
    let near = |i: usize| {
        let (lon, lat) = pick(i);
        format!(
            "{base}?type=Streetlight&georel=near;maxDistance==200&geometry=Point&coordinates=[{lon:.6},{lat:.6}]&limit=100"
        )
    };
    latencies(&client, 200, near).await.context("near query warm-up")?;
    let (ms, found) = latencies(&client, 2_000, near).await?;
    add_latencies(report, "type=Streetlight&georel=near;maxDistance==200", &ms, "< 20 ms");
    report.note(format!("Near queries: {found} of 2,000 found lights (page of 100)."));

    let selective = format!("{base}?type=Streetlight&q=status==%22defectiveLamp%22&limit=100&count=true");
    let (ms, _) = latencies(&client, 100, |_| selective.clone()).await?;
    add_latencies(
        report,
        "type=Streetlight&q=status==\"defectiveLamp\"&count=true (1 % match, full scan)",
        &ms,
        "",
    );
    let common = format!("{base}?type=Streetlight&q=powerState==%22off%22;powerRating%3E=40&limit=20");
    let (ms, _) = latencies(&client, 500, |_| common.clone()).await?;
    report.add(
        "type=Streetlight&q=powerState==\"off\";powerRating>=40 (first page of 20), p99",
        format!("{:.2} ms", quantile(&ms, 0.99)),
        "",
    );
    // Paging through every entity (issue 4): each exactly once, in id order.
    let started = Instant::now();
    let (mut seen, mut in_order, mut last) = (0usize, true, String::new());
    let mut offset = 0;
    loop {
        let url = format!("{base}?type=Streetlight&attrs=status&options=keyValues&limit=1000&offset={offset}");
        let page: Vec<serde_json::Value> = client.get(&url).send().await?.json().await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            let id = e["id"].as_str().unwrap_or_default();
            in_order &= id > last.as_str();
            last = id.to_owned();
        }
        seen += page.len();
        offset += page.len();
    }
    report.add(
        format!(
            "Paging through {} entities by 1,000 (limit/offset): seen / in id order / time",
            thousands(running.twin.len() as f64)
        ),
        super::paging_figure(seen, in_order, started.elapsed()),
        "each entity exactly once",
    );
    let origin = format!("http://{}", running.http_addr);
    let first = "/ngsi-ld/v1/entities?type=Streetlight&attrs=status&options=keyValues&limit=1000";
    let (seen, in_order, took) = super::follow_next_links(&client, &origin, first).await?;
    report.add(
        format!(
            "Paging through {} entities by 1,000 (Link rel=\"next\", afterId): seen / in id order / time",
            thousands(running.twin.len() as f64)
        ),
        super::paging_figure(seen, in_order, took),
        "each entity exactly once",
    );
    running.shutdown().await;
    Ok(())
}
