//! `vigie admin`: accounts and tokens from the command line, for the first
//! administrator and for recovery (a forgotten password, a locked account).
//! It works on the store named by the configuration, Vigie running or not.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use vigie_core::account::CredentialKind;
use vigie_core::{Role, ScopeGrant};
use vigie_server::Config;
use vigie_server::security::{NewAccount, NewCredential, Security};

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The configuration file (its store.url is used; VIGIE_STORE_URL overrides it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Creates an account; prints a generated password unless --password-stdin.
    CreateUser {
        name: String,
        #[arg(long)]
        role: Role,
        /// `*` or comma-separated commune slugs.
        #[arg(long, default_value = "*")]
        communes: String,
        /// `*` or comma-separated business-line slugs.
        #[arg(long, default_value = "*")]
        business_lines: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Sets a new password (generated unless --password-stdin), unlocks the
    /// account and ends its sessions.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists accounts.
    ListUsers,
    /// Issues an API key or a service token; prints the token once.
    IssueToken {
        /// What the token is for, e.g. "open data portal".
        name: String,
        #[arg(long, value_parser = ["api-key", "service-token"], default_value = "service-token")]
        kind: String,
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = "*")]
        communes: String,
        #[arg(long, default_value = "*")]
        business_lines: String,
    },
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("standard input gave an empty password");
    }
    Ok(password)
}

async fn open(config: Option<PathBuf>) -> anyhow::Result<Arc<Security>> {
    let config = Config::load(config.as_deref(), std::env::vars())?;
    let store = vigie_server::open_store(&config.store).await?;
    Ok(Security::load(config.security.clone(), store, false).await?)
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let security = open(args.config).await?;
    match args.command {
        AdminCommand::CreateUser {
            name,
            role,
            communes,
            business_lines,
            display_name,
            password_stdin,
        } => {
            let scope = ScopeGrant::parse(&communes, &business_lines)?;
            let password = password_stdin.then(read_password).transpose()?;
            let (account, generated) = security
                .create_account(NewAccount {
                    name,
                    display_name,
                    role,
                    scope,
                    password,
                })
                .await?;
            println!(
                "account '{}' created: {} on {}",
                account.name, account.role, account.scope
            );
            if let Some(p) = generated {
                println!("password (shown once; change it at first login): {p}");
            }
        }
        AdminCommand::ResetPassword { name, password_stdin } => {
            let password = match password_stdin {
                true => read_password()?,
                false => vigie_server::security::secrets::random_token()?,
            };
            security.set_password(&name, &password).await?;
            println!("password of '{name}' reset; its sessions are ended");
            if !password_stdin {
                println!("new password (shown once): {password}");
            }
        }
        AdminCommand::ListUsers => {
            for a in security.accounts().await? {
                let state = match (a.disabled, a.locked_until) {
                    (true, _) => "disabled",
                    (false, Some(_)) => "locked",
                    _ => "active",
                };
                println!("{:<24} {:<24} {:<10} {}", a.name, a.role, state, a.scope);
            }
        }
        AdminCommand::IssueToken {
            name,
            kind,
            role,
            communes,
            business_lines,
        } => {
            let kind = match kind.as_str() {
                "api-key" => CredentialKind::ApiKey,
                _ => CredentialKind::ServiceToken,
            };
            let issued = security
                .issue_credential(
                    NewCredential {
                        kind,
                        name,
                        role,
                        scope: ScopeGrant::parse(&communes, &business_lines)?,
                        requests_per_minute: None,
                        expires_at: None,
                    },
                    "vigie admin",
                )
                .await?;
            println!("{}", issued.token);
        }
    }
    Ok(())
}
