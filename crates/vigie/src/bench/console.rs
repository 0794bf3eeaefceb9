//! The console's live fan-out (issue 5): 50 open consoles, each a
//! server-sent event stream, while 1,000 state changes a second flow through
//! the writer (the path MQTT telemetry takes). Measures the delay from a
//! change's commit request to its arrival in every console, and the CPU the
//! fan-out costs (the same load run with and without the consoles).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_core::{Attribute, Entity, EntityId, Scope, Timestamp};

use super::{Report, authorized_client, quantile, start_vigie, thousands};

const LIGHTS: usize = 34_000;
const CONSOLES: usize = 50;
const CHANGES_PER_SECOND: usize = 1_000;
const SECONDS: u64 = 20;

/// A light whose name carries the instant it was sent, in microseconds
/// (the console's change events carry the name).
fn light(n: usize, sent: i64) -> anyhow::Result<Entity> {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:07}"))?;
    let lon = 5.0 + (n % 200) as f64 * 2e-4;
    let lat = 47.3 + (n / 200) as f64 * 2e-4;
    Ok(
        Entity::new(id, "Streetlight", Some(Scope::from_ngsi("/dijon/lighting")?))
            .with("location", Attribute::point(lon, lat))
            .with("name", Attribute::property(format!("t{sent}")))
            .with("status", Attribute::property("ok").observed(Timestamp::now())),
    )
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field overall, the 12th after ") ".
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

pub async fn fan_out(data: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[console] {CONSOLES} consoles, {CHANGES_PER_SECOND} changes/s over {LIGHTS} lights…");
    let interval = vigie_server::Config::load(None, std::env::vars())?
        .console
        .live_interval_ms;
    let (idle_cpu, _) = run(data, 0).await?;
    let (busy_cpu, latencies) = run(data, CONSOLES).await?;
    report.add(
        format!(
            "Console live changes: {CONSOLES} consoles, {} changes/s, delivery p50 / p99",
            thousands(CHANGES_PER_SECOND as f64)
        ),
        format!(
            "{:.0} / {:.0} ms",
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99)
        ),
        "visible < 1 s",
    );
    report.add(
        "Console live changes: process CPU without / with the consoles",
        format!("{idle_cpu:.2} / {busy_cpu:.2} cores"),
        "",
    );
    report.note(format!(
        "Console fan-out: {} change deliveries measured; changes are gathered per console and sent every \
         console.live_interval_ms ({interval} ms), which bounds the delay from below; the CPU includes the load generator \
         and the {CONSOLES} event-stream readers in the same process, so the difference is an upper bound of the \
         fan-out's cost.",
        thousands(latencies.len() as f64)
    ));
    Ok(())
}

/// One run: the city, `consoles` event streams, then the changes; returns
/// the process CPU in cores over the changes and the sorted delays (ms).
async fn run(data: &Path, consoles: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let running = start_vigie(data, "console-live").await?;
    for first in (0..LIGHTS).step_by(5_000) {
        let chunk = (first..(first + 5_000).min(LIGHTS))
            .map(|n| light(n, 0))
            .collect::<anyhow::Result<Vec<_>>>()?;
        running.upsert(chunk).await?;
    }
    let client = authorized_client(&running, consoles, None).await?;
    let url = format!("http://{}/console/events", running.http_addr);
    let mut readers = Vec::new();
    for _ in 0..consoles {
        let mut res = client.get(&url).send().await?;
        anyhow::ensure!(res.status().is_success(), "events: {}", res.status());
        readers.push(tokio::spawn(async move {
            let mut delays = Vec::new();
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                let now = Timestamp::now().as_microsecond();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                // Events end with a blank line; keep a partial one for later.
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(Value::Array(changes)) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    for c in changes {
                        if let Some(sent) = c["n"].as_str().and_then(|n| n.strip_prefix('t')?.parse::<i64>().ok())
                            && sent > 0
                        {
                            delays.push((now - sent) as f64 / 1000.0);
                        }
                    }
                }
            }
            delays
        }));
    }
    let per_tick = CHANGES_PER_SECOND / 10;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    for round in 0..(SECONDS * 10) as usize {
        tick.tick().await;
        let sent = Timestamp::now().as_microsecond();
        // Spread over the city, a different set each round.
        let batch = (0..per_tick)
            .map(|i| light((round + i * 337) % LIGHTS, sent))
            .collect::<anyhow::Result<Vec<_>>>()?;
        running.upsert(batch).await?;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let cores = (cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    running.shutdown().await;
    let mut delays = Vec::new();
    for r in readers {
        delays.extend(r.await?);
    }
    delays.sort_by(f64::total_cmp);
    Ok((cores, delays))
}
