//! `vigie admin` creates the first administrator, who then logs in to a
//! running `vigie serve`: the whole bootstrap of a deployment.

mod common;

use std::process::Command;

use common::{Vigie, write_config};
use serde_json::json;

fn admin(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigie"))
        .arg("admin")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("VIGIE_LOG", "warn")
        .output()
        .expect("run vigie admin")
}

#[tokio::test]
async fn the_first_administrator_is_created_from_the_command_line_and_logs_in() {
    let data = tempfile::tempdir().unwrap();
    let config = write_config(data.path(), "embedded = false");
    let out = admin(&config, &["create-user", "alice", "--role", "administrator"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let password = stdout
        .lines()
        .find_map(|l| {
            l.split_once("password (shown once; change it at first login): ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no password printed: {stdout}"));
    assert!(password.len() >= 32);

    let out = admin(&config, &["create-user", "alice", "--role", "operator"]);
    assert!(!out.status.success(), "an account is created once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = admin(&config, &["create-user", "bob", "--role", "root"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role 'root'"));

    let vigie = Vigie::start(&config).await;
    let res = reqwest::Client::new()
        .post(vigie.url("/auth/login"))
        .json(&json!({"username": "alice", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", vigie.log());
    let session: serde_json::Value = res.json().await.unwrap();
    assert_eq!(session["account"]["role"], "administrator");
    assert!(!vigie.log().contains(&password), "passwords are never logged");
    let out = admin(&config, &["list-users"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
}
