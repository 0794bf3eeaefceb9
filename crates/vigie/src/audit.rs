//! `vigie audit`: verify the audit trail of a deployment, or export it, from
//! its configuration file, without a running server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use vigie_server::Config;
use vigie_server::audit::{anchor_path, read_anchor, verify_trail};
use vigie_store::Store;
use vigie_store_sqlite::{Durability, SqliteStore};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the whole trail against its anchor. Exit status: 0 intact,
    /// 1 tampered (the first problem is named), 2 could not be verified.
    Verify {
        /// TOML configuration file (its store.url and audit.anchor_file).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write the whole trail, with its hashes, to standard output (NDJSON,
    /// one record per line, in seq order).
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Opens the configured database without creating or migrating anything.
async fn open(config: &Config) -> anyhow::Result<SqliteStore> {
    let url = &config.store.url;
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|p| !p.is_empty())
        .with_context(|| format!("unsupported store.url '{url}': expected sqlite://PATH"))?;
    anyhow::ensure!(
        Path::new(path).exists(),
        "no database at {path} (store.url); nothing to verify"
    );
    let durability: Durability = config.store.durability.parse().map_err(anyhow::Error::msg)?;
    Ok(SqliteStore::open(Path::new(path), durability).await?)
}

pub async fn run(command: AuditCommand) -> ExitCode {
    let result = match command {
        AuditCommand::Verify { config } => verify(config.as_deref()).await,
        AuditCommand::Export { config } => export(config.as_deref()).await.map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("vigie: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(true)` intact, `Ok(false)` tampered.
async fn verify(config: Option<&Path>) -> anyhow::Result<bool> {
    let config = Config::load(config, std::env::vars())?;
    let store = open(&config).await?;
    let anchor_file = anchor_path(&config);
    let anchor = match &anchor_file {
        Some(path) => read_anchor(path)?,
        None => None,
    };
    let result = verify_trail(&store, anchor).await;
    store.close().await;
    match result.context("cannot read the audit trail")? {
        Ok(v) => {
            let head = v
                .head
                .map_or_else(|| "empty".to_owned(), |h| format!("head seq {} hash {}", h.seq, h.hash));
            println!("audit trail intact: {} records, {head}", v.records);
            if !v.anchored {
                let where_ = anchor_file.map_or_else(|| "none configured".to_owned(), |p| p.display().to_string());
                println!("warning: no anchor ({where_}): a cut tail of the trail cannot be detected");
            }
            Ok(true)
        }
        Err(problem) => {
            println!("audit trail NOT intact: {problem}");
            Ok(false)
        }
    }
}

async fn export(config: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(config, std::env::vars())?;
    let store = open(&config).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut after = 0;
    loop {
        let page = store.audit_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    store.close().await;
    Ok(())
}
