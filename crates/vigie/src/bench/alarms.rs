//! Alarms (issue 6). The storm: 20 cabinets lose power at once, their 800
//! lights with them. How many alarms are raised (the target is 20, one per
//! cabinet, with its lights as children) and how long until the board's API
//! shows them all; then the 800 lights report faults and no alarm is added.
//! The latency: telemetry to alarm at 50,000 points/s with 1,000 rules.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vigie_core::{Attribute, Entity, EntityId, Scope};
use vigie_sim::EquipmentKind;

use super::ingest::{lit_city, publisher, readings_at};
use super::{BENCH_GATEWAY, BenchArgs, Report, authorized_client, quantile, start_vigie, thousands, wait_until};

const CABINETS: usize = 20;
const LIGHTS_PER_CABINET: usize = 40;

fn cabinet(n: usize, volts: f64) -> anyhow::Result<Entity> {
    let id = EntityId::conventional("StreetlightControlCabinet", "dijon", &format!("{n:04}"))?;
    Ok(Entity::new(
        id,
        "StreetlightControlCabinet",
        Some(Scope::from_ngsi("/dijon/lighting")?),
    )
    .with("location", Attribute::point(5.0 + n as f64 * 1e-3, 47.3))
    .with("voltageR", Attribute::property(volts).with_unit("VLT")))
}

fn light(n: usize, status: &str) -> anyhow::Result<Entity> {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:06}"))?;
    let cabinet = EntityId::conventional(
        "StreetlightControlCabinet",
        "dijon",
        &format!("{:04}", n / LIGHTS_PER_CABINET),
    )?;
    Ok(
        Entity::new(id, "Streetlight", Some(Scope::from_ngsi("/dijon/lighting")?))
            .with("location", Attribute::point(5.0 + n as f64 * 1e-5, 47.31))
            .with("status", Attribute::property(status))
            .with("refStreetlightControlCabinet", Attribute::relationship(&cabinet)),
    )
}

fn lights(status: &str) -> anyhow::Result<Vec<Entity>> {
    (0..CABINETS * LIGHTS_PER_CABINET).map(|n| light(n, status)).collect()
}

pub async fn storm(data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "\n[alarms] a power cut on {CABINETS} cabinets ({} lights) at once…",
        CABINETS * LIGHTS_PER_CABINET
    );
    let running = start_vigie(data, "alarm-storm").await?;
    let mut city = (0..CABINETS)
        .map(|n| cabinet(n, 231.0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    city.extend(lights("ok")?);
    running.upsert(city).await?;
    let client = authorized_client(&running, 1, None).await?;
    let board = format!("http://{}/api/v1/alarms", running.http_addr);

    let started = Instant::now();
    running
        .upsert(
            (0..CABINETS)
                .map(|n| cabinet(n, 0.0))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
        .await?;
    let mut shown = None;
    let mut alarms: Vec<Value> = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        alarms = client.get(&board).send().await?.json().await?;
        if alarms.iter().filter(|a| a["type"] == "power-cut").count() >= CABINETS {
            shown = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The lights, unpowered, report faults: folded into their cabinet's alarm.
    running.upsert(lights("defectiveLamp")?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<Value> = client.get(&board).send().await?.json().await?;
    let children: usize = after
        .iter()
        .filter_map(|a| a["children"].as_array())
        .map(Vec::len)
        .sum();
    report.add(
        format!(
            "Alarm storm: {CABINETS} cabinets cut at once ({} lights): alarms raised",
            CABINETS * LIGHTS_PER_CABINET
        ),
        format!("{} ({children} lights as children)", after.len()),
        format!("{CABINETS}, one per cabinet"),
    );
    report.add(
        "Alarm storm: time until the board's API shows every alarm",
        shown.map_or_else(
            || format!("not within 30 s ({} shown)", alarms.len()),
            |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        ),
        "",
    );
    running.shutdown().await;
    Ok(())
}

/// The metropolis' 1,000 rules, shared with the rules engine's criterion
/// bench so both figures describe the same rule set.
#[path = "../../../core/benches/support/metropolis_rules.rs"]
mod metropolis_rules;

/// Issue 6: telemetry to alarm at this offered rate, with 1,000 rules.
const LATENCY_POINTS_PER_S: u64 = 50_000;
/// Readings per message (a concentrator's buffer, as in the ingest bench).
const LATENCY_SETS: usize = 10;
/// Points per message: 5 measures a reading.
const POINTS_PER_MESSAGE: u64 = 5 * LATENCY_SETS as u64;
const LATENCY_WARM_UP: Duration = Duration::from_secs(5);
const LATENCY_RUN: Duration = Duration::from_secs(30);
/// One message in this many carries an over-voltage, on a light that had none.
const TRIGGER_EVERY: u64 = 100;
/// Above the rules' 253 V (EN 50160's +10 %), below their 264 V (critical).
const OVER_VOLTAGE: f64 = 262.0;
/// How often the bench reads the board's API, like a console refreshing.
const POLL: Duration = Duration::from_millis(10);
/// How often the publishing loop wakes to send what is due.
const PACE: Duration = Duration::from_millis(5);

/// When the bench saw an alarm on the board and when the server says it was raised.
#[derive(Clone, Copy)]
struct Seen {
    on_board: jiff::Timestamp,
    raised_at: jiff::Timestamp,
}

/// Reads the board every [`POLL`] until `stop`: the first sighting of each
/// over-voltage alarm by source, and how many alarms of other types showed.
async fn watch_board(
    client: reqwest::Client,
    board: String,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    others: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let mut polls = 0;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        tick.tick().await;
        let alarms: Vec<Value> = client.get(&board).send().await?.error_for_status()?.json().await?;
        let on_board = jiff::Timestamp::now();
        polls += 1;
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        for a in &alarms {
            let source = a["source"].as_str().unwrap_or_default();
            if a["type"] != "over-voltage" {
                others
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(format!("{} {source}", a["type"].as_str().unwrap_or_default()));
                continue;
            }
            if seen.contains_key(source) {
                continue;
            }
            let raised_at = a["raisedAt"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .context("an alarm without a raisedAt time")?;
            seen.insert(source.to_owned(), Seen { on_board, raised_at });
        }
    }
    Ok(polls)
}

/// Telemetry-to-alarm latency (issue 6): Dijon's 34,000 lights report over
/// MQTT at 50,000 points/s, open loop (a city's devices do not wait for
/// Vigie), with the metropolis' 1,000 rules loaded; one message in
/// [`TRIGGER_EVERY`] carries an over-voltage that a rule of the light's
/// commune turns into an alarm. Latency: from handing the message to the
/// MQTT client to the alarm showing in `GET /api/v1/alarms` (the board's
/// API), and to its `raisedAt` (the server's stamp when the desk raised it).
pub async fn latency(args: &BenchArgs, data: &Path, report: &mut Report) -> anyhow::Result<()> {
    let communes: Vec<&str> = vigie_sim::DIJON_METROPOLE.iter().map(|c| c.slug).collect();
    let rules = metropolis_rules::metropolis_rules(&communes);
    let rules_file = data.join("alarm-latency-rules.toml");
    std::fs::write(&rules_file, rules).with_context(|| format!("cannot write {}", rules_file.display()))?;
    let applicable = metropolis_rules::applicable("Streetlight");
    println!(
        "\n[alarms] telemetry to alarm at {} points/s, 1,000 rules ({applicable} per light change); provisioning 34,000 lights…",
        thousands(LATENCY_POINTS_PER_S as f64)
    );
    let rules_path = rules_file.display().to_string();
    // Commissioned now: lights last heard months ago would be silent, and
    // the rules' absence triggers would raise thousands of alarms at once.
    let commissioned = vigie_sim::CityConfig {
        commissioned: jiff::Timestamp::now(),
        ..vigie_sim::CityConfig::default()
    };
    let (running, city, devices, secret) = lit_city(data, "alarm-latency", &commissioned, |config| {
        config.alarms.rules_file = rules_path;
    })
    .await?;
    let sources: Vec<String> = (0..devices.len())
        .map(|ix| {
            city.entity_id(EquipmentKind::Streetlight, ix)
                .map(|id| id.to_string())
                .context("a light without an entity id")
        })
        .collect::<anyhow::Result<_>>()?;
    let port = running.mqtt_addr.context("the embedded broker did not start")?.port();
    let client = authorized_client(&running, 1, None).await?;
    let board = format!("http://{}/api/v1/alarms", running.http_addr);

    let stop = CancellationToken::new();
    let acked = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..args.publishers.max(1))
        .map(|p| {
            publisher(
                port,
                &format!("{BENCH_GATEWAY}-latency-{p}"),
                &secret,
                Arc::clone(&acked),
                stop.clone(),
            )
        })
        .collect();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let others = Arc::new(Mutex::new(HashSet::new()));
    let watching = CancellationToken::new();
    let watcher = tokio::spawn(watch_board(
        client,
        board,
        Arc::clone(&seen),
        Arc::clone(&others),
        watching.clone(),
    ));

    let metrics = Arc::clone(&running.metrics);
    let points = || metrics.points_written.load(Ordering::Relaxed);
    let messages_per_s = LATENCY_POINTS_PER_S as f64 / POINTS_PER_MESSAGE as f64;
    // Light index → when its over-voltage was handed to the MQTT client. A
    // light keeps reporting the over-voltage afterwards: one alarm each.
    let mut sent_at: HashMap<usize, jiff::Timestamp> = HashMap::new();
    let started = Instant::now();
    let (mut sent, mut window) = (0_u64, None);
    loop {
        let elapsed = started.elapsed();
        if window.is_none() && elapsed >= LATENCY_WARM_UP {
            window = Some((Instant::now(), sent, points()));
            println!("[alarms] measuring for {} s…", LATENCY_RUN.as_secs());
        }
        if elapsed >= LATENCY_WARM_UP + LATENCY_RUN {
            break;
        }
        // Open loop: every message due by now is sent, whatever Vigie's pace.
        let due = (elapsed.as_secs_f64() * messages_per_s) as u64;
        while sent < due {
            let light = usize::try_from(sent).unwrap_or(usize::MAX) % devices.len();
            let trigger = window.is_some() && sent % TRIGGER_EVERY == 0 && !sent_at.contains_key(&light);
            let volts = if trigger || sent_at.contains_key(&light) {
                OVER_VOLTAGE
            } else {
                229.0 + (sent % 5) as f64 * 0.4
            };
            // Readings of the last milliseconds: a light heard now is not silent.
            let first_ms = jiff::Timestamp::now().as_millisecond() - LATENCY_SETS as i64;
            let payload = readings_at(LATENCY_SETS, first_ms, sent, volts);
            let topic = format!("/lighting/{}/attrs", devices[light]);
            let publisher = &publishers[usize::try_from(sent).unwrap_or(0) % publishers.len()];
            if trigger {
                sent_at.insert(light, jiff::Timestamp::now());
            }
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .context("latency publish")?;
            sent += 1;
        }
        tokio::time::sleep(PACE).await;
    }
    let (window_start, sent_before, points_before) = window.context("the run ended before its warm-up")?;
    let window_secs = window_start.elapsed().as_secs_f64();
    let (offered_messages, stored_points) = (sent - sent_before, points() - points_before);

    // Every trigger's alarm should show; give the slowest 30 s.
    let expected = sent_at.len();
    wait_until(Duration::from_secs(30), || {
        seen.lock().unwrap_or_else(PoisonError::into_inner).len() >= expected
    })
    .await;
    watching.cancel();
    let polls = watcher.await.context("the board watcher panicked")??;
    // Every published message stored too (the broker sheds what overflows).
    let all_sent = sent;
    wait_until(Duration::from_secs(30), || {
        metrics.mqtt_messages.load(Ordering::Relaxed) >= all_sent
    })
    .await;
    let stored_messages = metrics.mqtt_messages.load(Ordering::Relaxed);
    stop.cancel();
    running.shutdown().await;

    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (mut on_board, mut raised) = (Vec::new(), Vec::new());
    let mut communes_hit = HashSet::new();
    for (light, at) in &sent_at {
        let source = &sources[*light];
        if let Some(s) = seen.get(source) {
            on_board.push(s.on_board.duration_since(*at).as_secs_f64() * 1000.0);
            raised.push(s.raised_at.duration_since(*at).as_secs_f64() * 1000.0);
            communes_hit.insert(source.split(':').nth(3).unwrap_or_default().to_owned());
        }
    }
    on_board.sort_by(f64::total_cmp);
    raised.sort_by(f64::total_cmp);
    let triggered = sources_of(&sent_at, &sources);
    let unexpected = seen.keys().filter(|s| !triggered.contains(*s)).count();
    let others = others.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut other_types: Vec<String> = others
        .iter()
        .filter_map(|o| o.split(' ').next())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    other_types.sort();
    let others = if others.is_empty() {
        "0".to_owned()
    } else {
        format!("{} ({})", others.len(), other_types.join(", "))
    };
    let offered = offered_messages as f64 * POINTS_PER_MESSAGE as f64 / window_secs;
    let achieved = stored_points as f64 / window_secs;
    let ms = |v: f64| format!("{v:.1} ms");
    report.add(
        "Telemetry to alarm, 1,000 rules, on the board's API: p50",
        ms(quantile(&on_board, 0.5)),
        "",
    );
    report.add("same, p95", ms(quantile(&on_board, 0.95)), "");
    report.add("same, p99", ms(quantile(&on_board, 0.99)), "< 100 ms");
    report.add(
        "Telemetry to the alarm's raisedAt (server stamp): p50 / p95 / p99",
        format!(
            "{} / {} / {}",
            ms(quantile(&raised, 0.5)),
            ms(quantile(&raised, 0.95)),
            ms(quantile(&raised, 0.99))
        ),
        "",
    );
    report.add(
        "Telemetry to alarm: points/s offered → stored (ratio)",
        format!(
            "{} → {} ({:.3})",
            thousands(offered),
            thousands(achieved),
            achieved / offered
        ),
        "50,000 points/s",
    );
    report.add(
        "Telemetry to alarm: alarms expected / raised",
        format!("{expected} / {}", on_board.len()),
        "none lost",
    );
    report.note(format!(
        "Alarm latency: {} publishers open loop at {messages_per_s:.0} msg/s of {LATENCY_SETS} readings \
         ({POINTS_PER_MESSAGE} points), {} s measured after {} s of warm-up, over 34,000 lights; \
         1,000 rules (40 per commune × 24 communes, 40 metropolis-wide; {applicable} apply to a light's change); \
         one message in {TRIGGER_EVERY} carries {OVER_VOLTAGE} V on a light not yet in over-voltage \
         ({expected} triggers over {} communes); the board's API read every {} ms ({polls} reads, \
         so a sighting is up to one period late); {unexpected} unexpected over-voltage alarms, \
         {others} alarms of other types; {} of {} messages stored after the run.",
        publishers.len(),
        LATENCY_RUN.as_secs(),
        LATENCY_WARM_UP.as_secs(),
        communes_hit.len(),
        POLL.as_millis(),
        thousands(stored_messages as f64),
        thousands(sent as f64),
    ));
    let _ = std::fs::remove_file(&rules_file);
    Ok(())
}

/// The entity ids of the triggered lights.
fn sources_of<'a>(sent_at: &HashMap<usize, jiff::Timestamp>, sources: &'a [String]) -> HashSet<&'a String> {
    sent_at.keys().filter_map(|ix| sources.get(*ix)).collect()
}
