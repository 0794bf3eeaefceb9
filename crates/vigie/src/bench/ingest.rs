//! Ingestion benchmarks: sustained QoS 1 MQTT ingest against raw SQLite
//! inserts of the same rows, and the 34,000-light burst.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio_util::sync::CancellationToken;
use vigie_server::{Config, Running};
use vigie_sim::{City, CityConfig, EquipmentKind};
use vigie_store_sqlite::baseline;

use super::{BENCH_GATEWAY, BenchArgs, Report, quantile, start_vigie_publishing, thousands, wait_until};
use vigie_core::credentials::Secret;

/// Attribute values in one light reading (status, power state, level, power, voltage).
const POINTS_PER_READING: u64 = 5;
/// Seconds of ingest before measuring, so queues and caches are warm.
const WARM_UP: Duration = Duration::from_secs(5);
/// Most messages in flight between the publishers and Vigie's commits. MQTT
/// has no end-to-end backpressure: a broker acknowledges publishers at once
/// and drops what overflows a subscriber's queue. The load generator is
/// closed-loop so it measures what Vigie sustains, not what a broker sheds.
const IN_FLIGHT: u64 = 16_384;

/// A Vigie with Dijon's 34,000 lights of `city` provisioned; returns their device ids.
pub(super) async fn lit_city(
    data: &Path,
    name: &str,
    city: &CityConfig,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<(Running, City, Vec<String>, Secret)> {
    let (running, secret) = start_vigie_publishing(data, name, tweak).await?;
    let city = City::generate(city);
    let lights = city.count(EquipmentKind::Streetlight);
    let devices = (0..lights)
        .filter_map(|ix| city.device(EquipmentKind::Streetlight, ix))
        .collect();
    running.provision(devices).await?;
    running
        .upsert(
            city.entities()
                .filter(|e| e.entity_type == EquipmentKind::Streetlight.entity_type())
                .collect(),
        )
        .await?;
    let ids = (0..lights)
        .filter_map(|ix| city.device_id(EquipmentKind::Streetlight, ix))
        .collect();
    Ok((running, city, ids, secret))
}

/// An MQTT v5 publisher on the embedded broker, with its event loop driven
/// in the background; `acked` counts PUBACKs.
pub(super) fn publisher(
    port: u16,
    id: &str,
    secret: &Secret,
    acked: Arc<AtomicU64>,
    stop: CancellationToken,
) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(BENCH_GATEWAY, secret.expose());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_outgoing_inflight_upper_limit(1_000);
    let (client, eventloop) = AsyncClient::new(options, 4_096);
    tokio::spawn(drive(eventloop, acked, stop));
    client
}

async fn drive(mut eventloop: EventLoop, acked: Arc<AtomicU64>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(rumqttc::v5::Incoming::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "bench publisher connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
}

/// One message of `sets` readings of a light, at distinct instants from `first_ms`.
fn readings(sets: usize, first_ms: i64, n: u64) -> String {
    readings_at(sets, first_ms, n, 229.0 + (n % 5) as f64 * 0.4)
}

/// The same, with the supply at `volts`.
pub(super) fn readings_at(sets: usize, first_ms: i64, n: u64, volts: f64) -> String {
    let mut out = String::with_capacity(sets * 110 + 2);
    out.push('[');
    for k in 0..sets {
        let at = jiff::Timestamp::from_millisecond(first_ms + k as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        if k > 0 {
            out.push(',');
        }
        let power = 40.0 + (n % 17) as f64 * 0.5;
        out.push_str(&format!(
            r#"{{"TimeInstant":"{}","st":"ok","ps":"on","il":1,"p":{power:.1},"v":{volts:.1}}}"#,
            vigie_core::entity::format_timestamp(at),
        ));
    }
    out.push(']');
    out
}

/// Sustained ingest for `args.duration` seconds, then raw SQLite inserts of
/// as many rows, in the same run.
pub async fn sustained(args: &BenchArgs, data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[ingest] provisioning 34,000 lights…");
    let (running, _city, ids, secret) = lit_city(data, "ingest", &CityConfig::default(), |_| {}).await?;
    let receive_window = running.config().mqtt.receive_maximum;
    let port = running.mqtt_addr.context("the embedded broker did not start")?.port();
    let sets = args.sets_per_message.max(1);
    let stop = CancellationToken::new();
    let acked = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(ids);
    let publishers = args.publishers.max(1);
    let published = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let client = publisher(
            port,
            &format!("{BENCH_GATEWAY}-ingest-{p}"),
            &secret,
            Arc::clone(&acked),
            stop.clone(),
        );
        let (ids, stop) = (Arc::clone(&ids), stop.clone());
        let (published, metrics) = (Arc::clone(&published), Arc::clone(&running.metrics));
        tasks.push(tokio::spawn(async move {
            // Each light's readings advance one millisecond per set, from 2026-06-01.
            let mut round: i64 = 0;
            'publish: loop {
                for (n, device) in ids.iter().enumerate().skip(p).step_by(publishers) {
                    let first_ms = 1_780_272_000_000 + round * sets as i64;
                    let payload = readings(sets, first_ms, n as u64);
                    while published.load(Ordering::Relaxed).saturating_sub(metrics.mqtt_messages.load(Ordering::Relaxed)) > IN_FLIGHT {
                        if stop.is_cancelled() {
                            break 'publish;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    tokio::select! {
                        () = stop.cancelled() => break 'publish,
                        sent = client.publish(format!("/lighting/{device}/attrs"), QoS::AtLeastOnce, false, payload) => {
                            if sent.is_err() {
                                break 'publish;
                            }
                            published.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                round += 1;
            }
            let _ = client.disconnect().await;
        }));
    }

    let metrics = Arc::clone(&running.metrics);
    let points = || metrics.points_written.load(Ordering::Relaxed);
    tokio::time::sleep(WARM_UP).await;
    println!("[ingest] measuring for {} s…", args.duration);
    let mut per_second = Vec::new();
    let (start_points, started) = (points(), Instant::now());
    let mut last = start_points;
    for _ in 0..args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = points();
        per_second.push((now - last) as f64);
        last = now;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let measured = last - start_points;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    // Let what is in flight drain: every published message should be stored.
    let sent = published.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(60), || {
        metrics.mqtt_messages.load(Ordering::Relaxed) >= sent
    })
    .await;
    let history_rows = running.store.count_history().await?;
    let committed = metrics.mqtt_messages.load(Ordering::Relaxed);
    running.shutdown().await;
    let lost = published.load(Ordering::Relaxed).saturating_sub(committed);

    per_second.sort_by(f64::total_cmp);
    let median = quantile(&per_second, 0.5);
    let mean = measured as f64 / elapsed;
    report.add(
        format!(
            "MQTT ingest, QoS 1, {sets} readings/message, sustained over {} s",
            args.duration
        ),
        format!("{} points/s", thousands(mean)),
        "≥ 100,000 points/s",
    );
    report.add(
        "MQTT ingest, same run, messages/s",
        format!("{} msg/s", thousands(mean / (sets as f64 * POINTS_PER_READING as f64))),
        "",
    );
    report.add(
        "MQTT ingest, median of 1 s samples (commits land in whole batches)",
        format!("{} points/s", thousands(median)),
        "",
    );

    println!("[ingest] raw SQLite inserts of the same number of rows…");
    // The same rows, in the same grouping: messages of `sets` readings,
    // committed a receive window at a time, over as many messages as the run stored.
    let load = baseline::Load {
        messages: usize::try_from(committed).unwrap_or(usize::MAX).clamp(1_000, 4_000_000),
        entities: ids.len(),
        readings: sets,
        per_commit: usize::from(receive_window),
    };
    let raw = baseline::raw_history_inserts(&data.join("raw").join("raw.db"), load).await?;
    let ratio = mean / raw.rows_per_second();
    report.add(
        "Raw SQLite inserts of the same rows (same schema, WAL, fsync per commit)",
        format!("{} rows/s", thousands(raw.rows_per_second())),
        "",
    );
    report.add("Ingest / raw SQLite ratio", format!("{ratio:.2}"), "≥ 0.5");
    report.add("MQTT ingest: messages published but not stored", lost.to_string(), "0");
    report.note(format!(
        "Ingest: {publishers} publishers, closed loop (at most {IN_FLIGHT} messages between publish and commit), \
         {} PUBACKs; {} history rows stored in all.",
        thousands(acked.load(Ordering::Relaxed) as f64),
        thousands(history_rows as f64)
    ));
    let _ = std::fs::remove_dir_all(data.join("raw"));
    Ok(())
}

/// 34,000 light messages published at once: time until all are durable, and losses.
pub async fn burst(data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[burst] provisioning 34,000 lights…");
    let (running, city, _, secret) = lit_city(data, "burst", &CityConfig::default(), |_| {}).await?;
    let port = running.mqtt_addr.context("the embedded broker did not start")?.port();
    let messages = city.all_lights_messages(jiff::Timestamp::now());
    let expected = messages.len() as u64;
    let history_before = running.store.count_history().await?;
    let metrics = Arc::clone(&running.metrics);
    let received_before = metrics.mqtt_messages.load(Ordering::Relaxed);

    let stop = CancellationToken::new();
    let acked = Arc::new(AtomicU64::new(0));
    let client = publisher(
        port,
        &format!("{BENCH_GATEWAY}-burst"),
        &secret,
        Arc::clone(&acked),
        stop.clone(),
    );
    let started = Instant::now();
    for m in messages {
        client
            .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
            .await
            .context("burst publish")?;
    }
    let published = started.elapsed();
    let drained = wait_until(Duration::from_secs(180), || {
        metrics.mqtt_messages.load(Ordering::Relaxed) - received_before >= expected
    })
    .await;
    let drain = started.elapsed();
    stop.cancel();
    let stored = running.store.count_history().await? - history_before;
    running.shutdown().await;

    let lost = expected.saturating_sub(stored / POINTS_PER_READING);
    report.add(
        format!(
            "Burst: {} light messages at once, time to drain",
            thousands(expected as f64)
        ),
        if drained {
            format!("{:.2} s", drain.as_secs_f64())
        } else {
            "not drained in 180 s".into()
        },
        "",
    );
    report.add("Burst: messages lost", lost.to_string(), "0");
    report.note(format!(
        "Burst: publishing took {:.2} s; {} history rows stored for {} messages.",
        published.as_secs_f64(),
        thousands(stored as f64),
        thousands(expected as f64)
    ));
    Ok(())
}
