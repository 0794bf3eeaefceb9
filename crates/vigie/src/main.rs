//! `vigie`: the urban hypervisor's one binary.

mod admin;
mod audit;
mod bench;
mod demo;
mod simulate;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vigie_server::Config;

// Vigie allocates many small, short-lived values per change (entity copies,
// JSON bodies, notifications); glibc's allocator took a quarter of the CPU
// at 10,000 updates/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "vigie", version, about = "Vigie, the open-source urban hypervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated Dijon-scale city on the embedded defaults (store in ./vigie-data,
    /// embedded MQTT broker, HTTP on :8080).
    Demo(demo::DemoArgs),
    /// Run Vigie from a configuration file (see `vigie config`).
    Serve {
        /// TOML configuration file; VIGIE_* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Play the simulated city onto an MQTT broker (drives any Vigie deployment).
    Simulate(simulate::SimulateArgs),
    /// Measure ingest, burst, read and query performance on this machine
    /// (prints a Markdown report for BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Accounts and tokens from the command line (first administrator, recovery).
    Admin(admin::AdminArgs),
    /// Verify or export the audit trail (`vigie audit verify --config vigie.toml`).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print every setting with its documentation and current value.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Make a random MQTT secret (160 bits) and print it with its salted hash,
    /// for a gateway's `password_hash` or a devices file's `mqtt_password_hash`.
    MqttSecret,
    /// Device administration.
    #[command(subcommand)]
    Devices(DevicesCommand),
}

#[derive(clap::Subcommand)]
enum DevicesCommand {
    /// Print a mosquitto acl_file applying Vigie's MQTT rules to the
    /// provisioned devices (and the devices file), the gateways and Vigie's
    /// own client (mqtt.username, else mqtt.client_id). See docs/mqtt.md.
    MosquittoAcl {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

async fn mosquitto_acl(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref(), std::env::vars())?;
    let store = vigie_server::open_store(&config.store).await?;
    let mut devices = store.devices().await?;
    if !config.ingest.devices_file.is_empty() {
        devices.extend(vigie_server::read_devices_file(std::path::Path::new(
            &config.ingest.devices_file,
        ))?);
    }
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    devices.dedup_by(|a, b| a.device_id == b.device_id);
    let gateways: Vec<(String, vigie_core::acl::GatewayRules)> = config
        .mqtt
        .gateways
        .iter()
        .map(|(name, g)| {
            (
                name.clone(),
                vigie_core::acl::GatewayRules {
                    publish: g.publish.clone(),
                    subscribe: g.subscribe.clone(),
                },
            )
        })
        .collect();
    let service = if config.mqtt.username.is_empty() {
        &config.mqtt.client_id
    } else {
        &config.mqtt.username
    };
    print!(
        "{}",
        vigie_core::acl::mosquitto_acl(service, gateways.iter().map(|(n, r)| (n.as_str(), r)), devices.iter())
    );
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmqtt=warn,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Standard output is for results (`vigie config`, the serving address); logs go to stderr.
        .with_writer(std::io::stderr)
        .init();
}

/// Cancelled on Ctrl-C or SIGTERM.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref(), std::env::vars())?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let stop = shutdown_signal();
    let running = vigie_server::start(config, listener, axum::Router::new()).await?;
    // start() logs how the API is exposed, with a warning for plain HTTP beyond localhost.
    let scheme = if running.config().tls.enabled() {
        "https"
    } else {
        "http"
    };
    println!("Vigie is serving on {scheme}://{}", running.http_addr);
    stop.cancelled().await;
    running.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Audit(command) => return audit::run(command).await,
        Command::Demo(args) => demo::run(args, shutdown_signal()).await,
        Command::Serve { config } => serve(config).await,
        Command::Simulate(args) => simulate::run(args, shutdown_signal()).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Config { config } => Config::load(config.as_deref(), std::env::vars())
            .map(|c| print!("{}", c.describe()))
            .map_err(Into::into),
        Command::Devices(DevicesCommand::MosquittoAcl { config }) => mosquitto_acl(config).await,
        Command::MqttSecret => vigie_server::ingest::gatekeeper::new_secret().map(|(secret, hash)| {
            println!("password      = {}\npassword_hash = {hash}", secret.expose());
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigie: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
