//! What security costs: GET by id and a scoped query with authorization
//! against the same requests on a Vigie with security off (two servers side
//! by side, measured in alternating rounds so that the machine's drift hits
//! both alike), then password logins and a guessing burst.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use vigie_core::account::CredentialKind;
use vigie_core::{Role, ScopeGrant};
use vigie_server::security::{NewAccount, NewCredential};
use vigie_sim::{City, CityConfig};

use super::reads::throughput;
use super::{BenchArgs, Report, quantile, start_vigie_with, thousands};

/// Alternating rounds per comparison, and seconds measured per round.
const ROUNDS: usize = 5;
const SECONDS_PER_ROUND: usize = 3;

pub async fn cost(args: &BenchArgs, data: &std::path::Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[auth] loading the city twice (security off / on)…");
    let open = start_vigie_with(data, "auth-off", |c| c.security.enabled = false).await?;
    let guarded = start_vigie_with(data, "auth-on", |_| {}).await?;
    let city = City::generate(&CityConfig::default());
    let scope = vigie_core::Scope::from_ngsi("/dijon/lighting")?;
    let lights: Vec<String> = city
        .entities()
        .filter(|e| e.entity_type == "Streetlight" && e.scope.as_ref() == Some(&scope))
        .map(|e| e.id.to_string())
        .collect();
    anyhow::ensure!(!lights.is_empty(), "the city has no light in Dijon");
    open.upsert(city.entities().collect()).await?;
    guarded.upsert(city.entities().collect()).await?;

    // An integrator's key limited to Dijon's lighting, with a rate limit
    // high enough never to refuse: the limiter's check is part of the cost.
    let key = guarded
        .security
        .issue_credential(
            NewCredential {
                kind: CredentialKind::ApiKey,
                name: "bench integrator".into(),
                role: Role::Operator,
                scope: ScopeGrant::parse("dijon", "lighting")?,
                requests_per_minute: Some(u32::MAX),
                expires_at: None,
            },
            "vigie bench",
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_str(&key.token)?);
    let keyed = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .default_headers(headers)
        .build()?;
    let anonymous = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;

    let by_id = |base: std::net::SocketAddr| -> Arc<Vec<String>> {
        Arc::new(
            lights
                .iter()
                .map(|id| format!("http://{base}/ngsi-ld/v1/entities/{id}"))
                .collect(),
        )
    };
    // The same results on both: the query asks for Dijon's lighting, which
    // is exactly the key's grant.
    let query = |base: std::net::SocketAddr| -> Arc<Vec<String>> {
        Arc::new(
            (0..50)
                .map(|page| {
                    format!(
                        "http://{base}/ngsi-ld/v1/entities?type=Streetlight&scopeQ=/dijon/lighting\
                         &q=powerState==%22on%22&limit=20&offset={}",
                        page * 20
                    )
                })
                .collect(),
        )
    };
    for (what, urls) in [
        ("GET entity by id", &by_id as &dyn Fn(_) -> _),
        ("scoped query (page of 20)", &query),
    ] {
        let (open_urls, guarded_urls) = (urls(open.http_addr), urls(guarded.http_addr));
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut failures = 0;
        for _ in 0..ROUNDS {
            let (s, f) = throughput(
                &anonymous,
                &open_urls,
                args.connections,
                Duration::from_secs(1),
                SECONDS_PER_ROUND,
            )
            .await;
            without.extend(s);
            failures += f;
            let (s, f) = throughput(
                &keyed,
                &guarded_urls,
                args.connections,
                Duration::from_secs(1),
                SECONDS_PER_ROUND,
            )
            .await;
            with.extend(s);
            failures += f;
        }
        without.sort_by(f64::total_cmp);
        with.sort_by(f64::total_cmp);
        let (a, b) = (quantile(&without, 0.5), quantile(&with, 0.5));
        report.add(
            format!("{what}: security off / scoped API key, medians"),
            format!("{} / {} req/s", thousands(a), thousands(b)),
            "",
        );
        report.add(
            format!("{what}: cost of authorization"),
            format!("{:.1} %", (1.0 - b / a) * 100.0),
            "< 5 %",
        );
        if failures > 0 {
            report.note(format!("{what}: {failures} requests failed"));
        }
    }
    open.shutdown().await;
    guarded.shutdown().await;
    Ok(())
}

/// Password logins at the configured argon2id cost, then a guessing burst.
pub async fn logins(data: &std::path::Path, report: &mut Report) -> anyhow::Result<()> {
    println!("\n[auth] logins…");
    let running = start_vigie_with(data, "auth-logins", |_| {}).await?;
    let password = "réverbère-allumé-quai-nord";
    for name in ["agent", "target"] {
        running
            .security
            .create_account(NewAccount {
                name: name.into(),
                display_name: String::new(),
                role: Role::Operator,
                scope: ScopeGrant::everywhere(),
                password: Some(password.into()),
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let client = reqwest::Client::new();
    let url = format!("http://{}/auth/login", running.http_addr);
    let mut ms = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let res = client
            .post(&url)
            .json(&json!({"username": "agent", "password": password}))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "login failed: {}", res.status());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let c = &running.config().security;
    report.add(
        format!(
            "Login, argon2id m={} KiB t={}: p50 / p99 (100 logins)",
            c.argon2_memory_kib, c.argon2_iterations
        ),
        format!("{:.0} / {:.0} ms", quantile(&ms, 0.5), quantile(&ms, 0.99)),
        "p99 < 250 ms",
    );

    // Guessing: wrong passwords one after another until the account locks.
    let started = Instant::now();
    let mut locked_at = None;
    let mut slowest = 0.0f64;
    for attempt in 1..=c.login_max_failures + 5 {
        let t = Instant::now();
        let res = client
            .post(&url)
            .json(&json!({"username": "target", "password": format!("guess-number-{attempt:04}")}))
            .send()
            .await
            .context("guess")?;
        slowest = slowest.max(t.elapsed().as_secs_f64());
        if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            locked_at = Some(attempt);
            break;
        }
    }
    let right = client
        .post(&url)
        .json(&json!({"username": "target", "password": password}))
        .send()
        .await?
        .status();
    report.add(
        "Password guessing: attempts before lockout / time taken / slowest answer",
        format!(
            "{} / {:.1} s / {:.1} s",
            locked_at.map_or_else(|| "never".to_owned(), |n| (n - 1).to_string()),
            started.elapsed().as_secs_f64(),
            slowest
        ),
        "slowed, then locked",
    );
    report.note(format!(
        "After the lockout the right password is refused too ({right}) for {} minutes.",
        c.lockout_minutes
    ));
    running.shutdown().await;
    Ok(())
}
