//! The Yocto layer's crate list (`astarte-agent-crates.inc`) must match `Cargo.lock`: the
//! recipe fetches exactly those crates and builds with `--frozen`.

use std::process::Command;

#[test]
fn crates_inc_matches_cargo_lock() {
    let output = Command::new("python3")
        .arg("scripts/gen-crates-inc")
        .arg("--check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs (apt-get install python3)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
