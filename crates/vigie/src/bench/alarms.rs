//! The alarm storm (issue 6): 20 cabinets lose power at once, their 800
//! lights with them. How many alarms are raised (the target is 20, one per
//! cabinet, with its lights as children) and how long until the board's API
//! shows them all; then the 800 lights report faults and no alarm is added.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_core::{Attribute, Entity, EntityId, Scope};

use super::{Report, authorized_client, start_vigie};

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
