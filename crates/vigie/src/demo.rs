//! `vigie demo`: the whole product on the embedded defaults, fed by the
//! simulated city, so a newcomer sees a live Dijon-scale city in seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigie_server::Config;
use vigie_sim::{City, CityConfig, EquipmentKind, Fault, FaultRequest, PublishOptions, Qos, Simulator};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its data (kept between runs).
    #[arg(long, default_value = "vigie-data")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The embedded MQTT broker's address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: SocketAddr,
    /// Seed of the simulated city (same seed, same city).
    #[arg(long, default_value_t = 21000)]
    seed: u64,
    /// Simulated seconds per real second (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Street lights in the simulated city (Dijon Métropole has 34,000);
    /// the rest of the equipment keeps its Dijon-scale counts.
    #[arg(long, default_value_t = CityConfig::default().streetlights)]
    streetlights: usize,
}

#[derive(Clone)]
struct FaultDesk {
    city: Arc<City>,
    faults: mpsc::Sender<Fault>,
    picks: Arc<AtomicU64>,
}

/// `POST /api/v1/demo/faults {"fault": "cabinet-power-cut"}` (random target) or
/// `{"fault": "lamp-failure:urn:ngsi-ld:Streetlight:dijon:000042"}`.
async fn inject_fault(State(desk): State<FaultDesk>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let bad = |detail: String| (StatusCode::BAD_REQUEST, Json(json!({"detail": detail})));
    let Some(text) = body.get("fault").and_then(Value::as_str) else {
        return bad("expected {\"fault\": \"<kind>[:<entity id>]\"}".into());
    };
    let fault = match text.parse::<FaultRequest>() {
        Err(e) => return bad(e.to_string()),
        Ok(FaultRequest::On(f)) => f,
        Ok(FaultRequest::Random(kind)) => {
            let Some(equipment) = kind.target() else {
                return bad(format!("'{}' needs a target entity id", kind.slug()));
            };
            // Spread picks over the city deterministically, without a global RNG.
            let n = desk.city.count(equipment).max(1) as u64;
            let ix = (desk.picks.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919) + 13) % n;
            match desk.city.entity_id(equipment, ix as usize) {
                Some(id) => kind.on(id),
                None => return bad("the city has no such equipment".into()),
            }
        }
    };
    let target = fault.entity().to_string();
    if desk.faults.send(fault).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"detail": "the simulator has stopped"})),
        );
    }
    (StatusCode::ACCEPTED, Json(json!({"fault": text, "target": target})))
}

/// How the person running the demo gets in.
struct DemoAccess {
    /// The administrator's login, with the password on the first run.
    login: String,
    /// A service token for curl, valid for this run (a day at most).
    token: String,
}

/// The demo's administrator: created on the first run with a random
/// password printed once (never a fixed default), and a token for this run.
async fn demo_access(running: &vigie_server::Running) -> anyhow::Result<DemoAccess> {
    use vigie_core::account::CredentialKind;
    use vigie_core::{Role, ScopeGrant};
    use vigie_server::security::{NewAccount, NewCredential};

    let security = &running.security;
    let login = if security
        .accounts()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_empty()
    {
        let (_, password) = security
            .create_account(NewAccount {
                name: "admin".into(),
                display_name: "Administrateur de la démo".into(),
                role: Role::Administrator,
                scope: ScopeGrant::everywhere(),
                password: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the demo administrator: {e}"))?;
        format!(
            "user admin, password {} (shown this once)",
            password.unwrap_or_default()
        )
    } else {
        "user admin (password printed at the first run; `vigie admin reset-password admin` with VIGIE_STORE_URL sets a new one)".into()
    };
    let expires_at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .ok();
    let issued = security
        .issue_credential(
            NewCredential {
                kind: CredentialKind::ServiceToken,
                name: "demo run".into(),
                role: Role::Administrator,
                scope: ScopeGrant::everywhere(),
                requests_per_minute: None,
                expires_at,
            },
            "vigie demo",
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot issue the demo token: {e}"))?;
    Ok(DemoAccess {
        login,
        token: issued.token,
    })
}

/// The demo city's rules file.
const DEMO_RULES: &str = include_str!("demo_rules.toml");

/// The MQTT gateway identity (username and client id) of the demo's simulator.
const SIM_GATEWAY: &str = "vigie-sim";

pub async fn run(args: DemoArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // The demo never uses TLS: it is for one machine (start() warns if --http is not loopback).
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", args.data.join("vigie.db").display());
    config.http.listen = args.http;
    config.mqtt.embedded_listen = args.mqtt;
    // The simulator plays 34,000 devices through one MQTT connection: it logs
    // in as a gateway allowed on the device topics, with a secret made for
    // this run. Real devices still need their own credentials.
    let (sim_secret, sim_hash) = vigie_server::ingest::gatekeeper::new_secret()?;
    config.mqtt.gateways.insert(
        SIM_GATEWAY.into(),
        vigie_server::config::GatewayConfig {
            password_hash: sim_hash.to_string(),
            publish: vec![
                "/+/+/attrs".into(),
                "/+/+/cmdexe".into(),
                "application/+/device/+/event/+".into(),
            ],
            // The simulated devices obey commands sent from the console.
            subscribe: vec!["/+/+/cmd".into()],
        },
    );

    let city_config = CityConfig {
        seed: args.seed,
        streetlights: args.streetlights,
        // A new demo city starts with every asset freshly heard from.
        commissioned: jiff::Timestamp::now(),
        ..CityConfig::default()
    };
    let city = City::generate(&city_config);
    // The console's base map: the simulated streets and communes (no tiles
    // to download, so the demo works offline like a control room).
    std::fs::create_dir_all(&args.data).with_context(|| format!("cannot create {}", args.data.display()))?;
    for (file, geojson, setting) in [
        (
            "streets.geojson",
            city.streets_geojson(),
            &mut config.console.streets_file,
        ),
        (
            "communes.geojson",
            city.communes_geojson(),
            &mut config.console.communes_file,
        ),
    ] {
        let path = args.data.join(file);
        std::fs::write(&path, geojson.to_string()).with_context(|| format!("cannot write {}", path.display()))?;
        *setting = path.display().to_string();
    }
    // The city's rules file: frost on roads, containers nearly full.
    let rules = args.data.join("rules.toml");
    std::fs::write(&rules, DEMO_RULES).with_context(|| format!("cannot write {}", rules.display()))?;
    config.alarms.rules_file = rules.display().to_string();
    let (fault_tx, fault_rx) = mpsc::channel(64);
    let desk = FaultDesk {
        city: Arc::new(City::generate(&city_config)),
        faults: fault_tx,
        picks: Arc::new(AtomicU64::new(0)),
    };
    let extra = Router::new()
        .route("/api/v1/demo/faults", post(inject_fault))
        .with_state(desk);

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen on {} (is another Vigie running? try --http)", args.http))?;
    let running = vigie_server::start(config, listener, extra).await?;
    let mqtt = running.mqtt_addr.context("the embedded broker did not start")?;

    if running.twin.is_empty() {
        tracing::info!("first run: provisioning the simulated city");
        running.provision(city.devices()).await?;
        running.upsert(city.entities().collect()).await?;
    }

    let access = demo_access(&running).await?;
    let a_light = city
        .entity_id(EquipmentKind::Streetlight, 0)
        .map_or_else(String::new, |id| id.to_string());
    let sim = Simulator::new(city, args.seed, jiff::Timestamp::now());
    let sim_stop = CancellationToken::new();
    let publisher = tokio::spawn(vigie_sim::publish(
        sim,
        PublishOptions {
            broker_url: format!("mqtt://127.0.0.1:{}", mqtt.port()),
            client_id: SIM_GATEWAY.into(),
            speed: args.speed,
            qos: Qos::AtLeastOnce,
            credentials: Some((SIM_GATEWAY.into(), sim_secret)),
        },
        fault_rx,
        sim_stop.clone().cancelled_owned(),
    ));

    let http = running.http_addr;
    println!(
        "\nVigie demo: a simulated Dijon Métropole ({} entities) is live after {:.1} s.\n\
         \n  Console    http://{http}/console\
         \n  Log in     http://{http}/auth/login  {}\
         \n  Token      export VIGIE_TOKEN={}   (administrator, this run only)\
         \n  Entities   curl -H \"Authorization: Bearer $VIGIE_TOKEN\" 'http://{http}/ngsi-ld/v1/entities?type=Streetlight&limit=5'\
         \n  One light  curl -H \"Authorization: Bearer $VIGIE_TOKEN\" http://{http}/ngsi-ld/v1/entities/{a_light}\
         \n  Vehicles   curl -H \"Authorization: Bearer $VIGIE_TOKEN\" 'http://{http}/ngsi-ld/v1/entities?type=Vehicle&options=keyValues&attrs=location,speed'\
         \n  Health     http://{http}/health\
         \n  MQTT       mqtt://{mqtt} (embedded broker; plain, for localhost; devices log in with their device_id and password)\
         \n  Fault      curl -X POST http://{http}/api/v1/demo/faults -H \"Authorization: Bearer $VIGIE_TOKEN\" -H 'content-type: application/json' -d '{{\"fault\":\"cabinet-power-cut\"}}'\
         \n\nPlain HTTP on localhost only: configure [tls] for production (`vigie serve`, docs/security.md).\
         \nData in {}. Ctrl-C stops cleanly.\n",
        running.twin.len(),
        started.elapsed().as_secs_f64(),
        access.login,
        access.token,
        args.data.display(),
    );

    stop.cancelled().await;
    sim_stop.cancel();
    match publisher.await {
        Ok(Ok(stats)) => tracing::info!(messages = stats.messages, "simulator stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "simulator failed"),
        Err(e) => tracing::error!(error = %e, "simulator task failed"),
    }
    running.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_rules_are_valid_and_name_what_the_simulator_sends() {
        let set = vigie_core::rules::RuleSet::parse_toml(DEMO_RULES).expect("valid rules");
        assert_eq!(set.len(), 2);
        // The attributes they read are those the simulated devices report.
        let city = City::generate(&CityConfig {
            streetlights: 100,
            ..CityConfig::default()
        });
        let devices = city.devices();
        let reports = |entity_type: &str, attribute: &str| {
            devices
                .iter()
                .filter(|d| d.entity_type == entity_type)
                .any(|d| d.attributes.iter().any(|a| a.name == attribute))
        };
        assert!(reports("WeatherObserved", "temperature"));
        assert!(reports("WasteContainer", "fillingLevel"));
    }
}
