//! `vigie bench`: the performance figures of the core issue, measured end to
//! end on this machine with the load generator in the same process: sustained
//! MQTT ingest (and its ratio to raw SQLite inserts), a 34,000-light burst,
//! reads by id, geo and `q` queries over a million entities, and the resident
//! memory those entities take. It prints a Markdown report for BENCHMARKS.md.

mod alarms;
mod auth;
mod console;
mod ingest;
mod load;
mod ngsi;
mod reads;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use vigie_server::{Config, Running};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, comma separated (all by default).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Seconds of sustained MQTT ingest.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Timestamped measure sets per MQTT message in the sustained ingest (1 =
    /// one reading per message; more = a concentrator forwarding buffered
    /// readings, as the IoT Agent JSON array payload allows).
    #[arg(long, default_value_t = 10)]
    sets_per_message: usize,
    /// Concurrent MQTT publisher connections.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Live entities for the query and memory scenarios.
    #[arg(long, default_value_t = 1_000_000)]
    entities: usize,
    /// Concurrent HTTP connections for reads by id.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Directory for the benchmark's databases (a temporary one by default).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Ingest,
    Burst,
    Reads,
    Query,
    Auth,
    /// The NGSI-LD broker: PATCH, q, temporal aggregation, notifications.
    Ngsi,
    /// The NGSI-LD broker's single-attribute PATCH only.
    NgsiPatch,
    /// The NGSI-LD broker's `q` query and paging only.
    NgsiQuery,
    /// The NGSI-LD broker's temporal aggregation only.
    NgsiTemporal,
    /// The NGSI-LD broker's notification latency and loss only.
    NgsiNotify,
    /// The console's live changes: 50 consoles, 1,000 changes/s.
    Console,
    /// The alarm storm (20 cabinets cut at once) and telemetry-to-alarm
    /// latency at 50,000 points/s with 1,000 rules.
    Alarms,
}

/// A figure for the report: what, the measured value, and the target if any.
struct Figure {
    name: String,
    value: String,
    target: String,
}

#[derive(Default)]
struct Report {
    figures: Vec<Figure>,
    notes: Vec<String>,
}

impl Report {
    fn add(&mut self, name: impl Into<String>, value: impl Into<String>, target: impl Into<String>) {
        let f = Figure {
            name: name.into(),
            value: value.into(),
            target: target.into(),
        };
        println!("  {:<58} {:>22}  {}", f.name, f.value, f.target);
        self.figures.push(f);
    }

    /// A rate figure: the median of `per_second` samples, and a note when
    /// some requests failed.
    fn add_rate(&mut self, name: String, per_second: &[f64], unit: &str, target: &str, failures: u64) {
        let note = (failures > 0).then(|| format!("{name}: {failures} requests failed"));
        self.add(name, format!("{} {unit}", thousands(quantile(per_second, 0.5))), target);
        if let Some(note) = note {
            self.note(note);
        }
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }

    fn markdown(&self, machine: &str) -> String {
        let mut out = format!("Machine: {machine}\n\n| Figure | Measured | Target |\n|---|---:|---|\n");
        for f in &self.figures {
            let _ = writeln!(out, "| {} | {} | {} |", f.name, f.value, f.target);
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n- {n}");
        }
        out
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let temp;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let wants = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let machine = machine();
    println!("vigie bench on {machine}; data in {}", data.display());
    let mut report = Report::default();
    if wants(Scenario::Ingest) {
        ingest::sustained(&args, &data, &mut report).await?;
    }
    if wants(Scenario::Burst) {
        ingest::burst(&data, &mut report).await?;
    }
    if wants(Scenario::Reads) {
        reads::by_id(&args, &data, &mut report).await?;
    }
    if wants(Scenario::Query) {
        reads::queries(&args, &data, &mut report).await?;
    }
    if wants(Scenario::Auth) {
        auth::cost(&args, &data, &mut report).await?;
        auth::logins(&data, &mut report).await?;
    }
    if wants(Scenario::Ngsi) || wants(Scenario::NgsiPatch) {
        ngsi::patches(&args, &data, &mut report, "full").await?;
        ngsi::patches(&args, &data, &mut report, "normal").await?;
        ngsi::reads(&args, &data, &mut report).await?;
    }
    if wants(Scenario::Ngsi) || wants(Scenario::NgsiQuery) {
        ngsi::query(&data, &mut report).await?;
    }
    if wants(Scenario::Ngsi) || wants(Scenario::NgsiTemporal) {
        ngsi::temporal(&data, &mut report).await?;
    }
    if wants(Scenario::Ngsi) || wants(Scenario::NgsiNotify) {
        ngsi::notifications(&data, &mut report).await?;
    }
    if wants(Scenario::Console) {
        console::fan_out(&data, &mut report).await?;
    }
    if wants(Scenario::Alarms) {
        alarms::storm(&data, &mut report).await?;
        alarms::latency(&args, &data, &mut report).await?;
    }
    println!("\n{}", report.markdown(&machine));
    Ok(())
}

/// Pages through a query by following each page's `Link: rel="next"` (a
/// seek to the previous page's last id): entities seen, whether they came
/// in strictly increasing id order, and how long it took.
async fn follow_next_links(
    client: &reqwest::Client,
    origin: &str,
    first: &str,
) -> anyhow::Result<(usize, bool, std::time::Duration)> {
    let started = std::time::Instant::now();
    let (mut seen, mut in_order, mut last) = (0usize, true, String::new());
    let mut next = Some(first.to_owned());
    while let Some(url) = next.take() {
        let res = client.get(format!("{origin}{url}")).send().await?;
        anyhow::ensure!(res.status().is_success(), "{url} answered {}", res.status());
        next = res
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.ends_with("rel=\"next\""))
            .and_then(|v| Some(v[v.find('<')? + 1..v.find('>')?].to_owned()));
        let page: Vec<serde_json::Value> = res.json().await?;
        for e in &page {
            let id = e["id"].as_str().unwrap_or_default();
            in_order &= id > last.as_str();
            last = id.to_owned();
        }
        seen += page.len();
    }
    Ok((seen, in_order, started.elapsed()))
}

/// A paging figure: entities seen / whether in id order / time.
fn paging_figure(seen: usize, in_order: bool, took: std::time::Duration) -> String {
    format!(
        "{} / {} / {:.1} s",
        thousands(seen as f64),
        if in_order { "yes" } else { "no" },
        took.as_secs_f64()
    )
}

/// A Vigie with its store under `data/name`, the embedded broker and HTTP on
/// free localhost ports.
async fn start_vigie(data: &Path, name: &str) -> anyhow::Result<Running> {
    start_vigie_with(data, name, |_| {}).await
}

/// The MQTT gateway the bench's publishers log in as (client ids `bench-*`).
const BENCH_GATEWAY: &str = "bench";

/// A Vigie whose embedded broker lets the bench's publishers in as the
/// gateway [`BENCH_GATEWAY`], allowed on the lights' topics; returns its secret.
/// `tweak` adjusts the configuration further.
async fn start_vigie_publishing(
    data: &Path,
    name: &str,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<(Running, vigie_core::credentials::Secret)> {
    let (secret, hash) = vigie_server::ingest::gatekeeper::new_secret()?;
    let running = start_vigie_with(data, name, |config| {
        config.mqtt.gateways.insert(
            BENCH_GATEWAY.into(),
            vigie_server::config::GatewayConfig {
                password_hash: hash.to_string(),
                publish: vec!["/+/+/attrs".into()],
                subscribe: vec![],
            },
        );
        tweak(config);
    })
    .await?;
    Ok((running, secret))
}

async fn start_vigie_with(data: &Path, name: &str, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Running> {
    let dir = data.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    reopen_vigie_with(data, name, tweak).await
}

/// A Vigie on the store a previous run left under `data/name` (a restart).
async fn reopen_vigie_with(data: &Path, name: &str, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Running> {
    let dir = data.join(name);
    // VIGIE_* environment overrides apply, so settings can be compared.
    let mut config = Config::load(None, std::env::vars())?;
    config.store.url = format!("sqlite://{}", dir.join("vigie.db").display());
    config.mqtt.embedded_listen = "127.0.0.1:0".parse()?;
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    vigie_server::start(config, listener, axum::Router::new()).await
}

/// Waits until `done` holds, polling; false when `timeout` passed first.
/// An HTTP client for `running`, with keep-alive for `connections` and a
/// service token: an administrator's everywhere, or the given role and grant.
async fn authorized_client(
    running: &Running,
    connections: usize,
    access: Option<(vigie_core::Role, vigie_core::ScopeGrant)>,
) -> anyhow::Result<reqwest::Client> {
    let token = service_token(running, access).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(1))
        .default_headers(headers)
        .build()?)
}

/// A bearer token for the bench's requests (an administrator's everywhere by default).
async fn service_token(
    running: &Running,
    access: Option<(vigie_core::Role, vigie_core::ScopeGrant)>,
) -> anyhow::Result<String> {
    let (role, grant) = access.unwrap_or((vigie_core::Role::Administrator, vigie_core::ScopeGrant::everywhere()));
    running.issue_service_token("vigie bench", role, grant).await
}

async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// The value at quantile `q` (0..=1) of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let ix = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[ix.min(sorted.len() - 1)]
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}

fn thousands(n: f64) -> String {
    let n = n.round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_numbers_read_well() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&samples, 0.5), 51.0);
        assert_eq!(quantile(&samples, 0.99), 99.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
