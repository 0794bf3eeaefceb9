//! The operator console end to end, in a real headless Chromium (Debian's
//! `chromium`, driven by playwright-core): `tests/browser/*.test.mjs` run
//! under Node's test runner against the `vigie demo` binary built for this
//! test. `webgl.test.mjs` checks the browser and the vendored map libraries
//! alone; `console.test.mjs` logs in, reads the map and clicks.
//!
//! Needs `chromium`, Node.js 20+ and `npm ci --prefix crates/vigie/tests/browser`
//! (./scripts/test does all three). Screenshots: target/browser-artifacts/.
//! Run: `cargo test -p vigie --test console`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-artifacts")
}

#[test]
fn the_console_works_in_a_real_browser() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists(),
        "playwright-core is not installed in {}: run `npm ci --prefix crates/vigie/tests/browser` \
         (./scripts/test does it)",
        dir.display()
    );
    let chromium = std::env::var_os("VIGIE_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "no Chromium at {}: `apt-get install chromium` (./scripts/test does it), or set VIGIE_CHROMIUM",
        chromium.display()
    );
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("cannot create the screenshots' directory {}: {e}", artifacts.display()));

    // No path argument: Node's default pattern finds every *.test.mjs here
    // (node_modules aside), the same on Node 20 and later. One file at a
    // time: each starts its own Chromium, and this machine has 2 cores.
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1"])
        .current_dir(&dir)
        .env("VIGIE_BIN", env!("CARGO_BIN_EXE_vigie"))
        .env("VIGIE_ARTIFACTS", &artifacts)
        .status()
        .expect("cannot run `node`: Node.js 20 or later must be installed (./scripts/test installs it)");
    assert!(
        status.success(),
        "the browser tests failed ({status}); their output is above, screenshots in {}",
        artifacts.display()
    );
}
