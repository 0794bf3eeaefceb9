//! `vigie simulate`: plays the simulated city onto any MQTT broker, and can
//! provision it into a running Vigie through its public APIs first.

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigie_sim::{City, CityConfig, FaultRequest, PublishOptions, Qos, Simulator};

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The MQTT broker to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// Seed of the simulated city (same seed, same city).
    #[arg(long, default_value_t = 21000)]
    seed: u64,
    /// Simulated seconds per real second (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Provision the city's devices and entities into this Vigie first (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    vigie: Option<String>,
    /// A token of that Vigie allowed to manage devices and write entities
    /// everywhere (`vigie admin issue-token simulator --role administrator`).
    #[arg(long, env = "VIGIE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Write the IoT Agent provisioning document to this file and exit.
    #[arg(long)]
    write_provisioning: Option<std::path::PathBuf>,
    /// Inject a fault at start: KIND or KIND:ENTITY-ID (e.g. cabinet-power-cut). Repeatable.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// MQTT client id of the simulator.
    #[arg(long, default_value = "vigie-simulator")]
    client_id: String,
    /// MQTT username: on a broker enforcing device credentials, a gateway
    /// allowed on the device topics (see docs/mqtt.md). Empty: anonymous.
    #[arg(long, default_value = "")]
    username: String,
    /// MQTT password of --username (better given in the environment).
    #[arg(long, env = "VIGIE_SIMULATE_PASSWORD", hide_env_values = true, default_value = "")]
    password: String,
}

/// Provisions through the public APIs: IoT Agent devices, then NGSI-LD batch upserts.
async fn provision(base: &str, token: Option<&str>, city: &City) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder().default_headers(headers).build()?;
    let base = base.trim_end_matches('/');
    for chunk in city.devices().chunks(5_000) {
        let res = http
            .post(format!("{base}/iot/devices"))
            .json(&json!({"devices": chunk}))
            .send()
            .await
            .with_context(|| format!("cannot reach Vigie at {base}"))?;
        anyhow::ensure!(
            res.status().is_success(),
            "provisioning refused: {}",
            res.text().await.unwrap_or_default()
        );
    }
    let entities: Vec<Value> = city.entities().map(|e| e.to_normalized(false)).collect();
    for chunk in entities.chunks(500) {
        let res = http
            .post(format!("{base}/ngsi-ld/v1/entityOperations/upsert"))
            .json(&chunk)
            .send()
            .await
            .with_context(|| format!("cannot reach Vigie at {base}"))?;
        anyhow::ensure!(
            res.status().is_success(),
            "upsert refused: {}",
            res.text().await.unwrap_or_default()
        );
    }
    println!(
        "provisioned {} devices and {} entities into {base}",
        city.devices().len(),
        entities.len()
    );
    Ok(())
}

pub async fn run(args: SimulateArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let city = City::generate(&CityConfig {
        seed: args.seed,
        ..CityConfig::default()
    });
    if let Some(path) = &args.write_provisioning {
        let doc = json!({"devices": city.devices()});
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {} devices to {}", city.devices().len(), path.display());
        return Ok(());
    }
    if let Some(base) = &args.vigie {
        provision(base, args.token.as_deref(), &city).await?;
    }
    let mut sim = Simulator::new(city, args.seed, jiff::Timestamp::now());
    let (fault_tx, fault_rx) = mpsc::channel(64);
    for text in &args.faults {
        let fault = match text.parse::<FaultRequest>()? {
            FaultRequest::On(f) => f,
            FaultRequest::Random(kind) => sim
                .random_fault_target(kind)
                .with_context(|| format!("'{}' needs a target entity id", kind.slug()))?,
        };
        println!("fault: {} on {}", fault.kind().slug(), fault.entity());
        fault_tx.send(fault).await?;
    }
    println!(
        "publishing the simulated city to {} at {}x (Ctrl-C stops)",
        args.broker, args.speed
    );
    let stats = vigie_sim::publish(
        sim,
        PublishOptions {
            broker_url: args.broker,
            client_id: args.client_id,
            speed: args.speed,
            qos: Qos::AtLeastOnce,
            credentials: (!args.username.is_empty()).then(|| {
                (
                    args.username,
                    vigie_core::credentials::Secret::from_configured(args.password),
                )
            }),
        },
        fault_rx,
        stop.cancelled_owned(),
    )
    .await?;
    println!("published {} messages ({} bytes)", stats.messages, stats.bytes);
    Ok(())
}
