//! The Yocto layer stays in step with the repository: its crate list
//! (`astarte-agent-crates.inc`) matches `Cargo.lock` (the recipe fetches exactly those crates
//! and builds with `--frozen`), and its licence checksum matches `LICENSE`.

use std::path::Path;
use std::process::Command;

const RECIPE: &str = "meta-astarte-agent/recipes-connectivity/astarte-agent/astarte-agent_0.1.0.bb";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn recipe_value(name: &str) -> String {
    let text = std::fs::read_to_string(repo().join(RECIPE)).expect("the recipe is readable");
    let prefix = format!("{name} = \"");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{RECIPE} sets {name}"))
        .to_owned()
}

#[test]
fn crates_inc_matches_cargo_lock() {
    let output = Command::new("python3")
        .arg("scripts/gen-crates-inc")
        .arg("--check")
        .current_dir(repo())
        .output()
        .expect("python3 runs (apt-get install python3)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn license_checksum_matches_license_file() {
    let output = Command::new("md5sum")
        .arg("LICENSE")
        .current_dir(repo())
        .output()
        .expect("md5sum runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let md5 = stdout
        .split_whitespace()
        .next()
        .expect("md5sum prints a checksum");
    assert_eq!(
        recipe_value("LIC_FILES_CHKSUM"),
        format!("file://LICENSE;md5={md5}")
    );
}

#[test]
fn source_revision_is_pinned() {
    let srcrev = recipe_value("SRCREV");
    assert!(
        srcrev.len() == 40 && srcrev.bytes().all(|b| b.is_ascii_hexdigit()),
        "SRCREV must be a 40-hex commit, not {srcrev:?}"
    );
}
