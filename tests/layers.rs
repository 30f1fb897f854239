//! The house reads top-down (docs/development.md, "Layers"): lower floors never import higher
//! ones, and no two top-level modules import each other, directly or through others. A circle
//! inside one module (one type's `impl` split over files) is fine.
//!
//! The imports are read from the source: every `crate::<module>` path in every file under
//! `src/` (tests included: a test in the store must not need the API either).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must not import the modules listed with them.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "store",
        &[
            "api",
            "commands",
            "transport",
            "dbus",
            "router",
            "queue",
            "properties",
        ],
    ),
    ("queue", &["api", "commands", "transport", "dbus", "router"]),
    (
        "properties",
        &["api", "commands", "transport", "dbus", "router"],
    ),
    ("transport", &["commands", "dbus", "api"]),
    ("router", &["transport", "commands", "dbus", "api"]),
    ("api", &["transport", "commands", "dbus"]),
    ("commands", &["transport", "dbus"]),
    (
        "clock",
        &["api", "commands", "transport", "dbus", "router", "store"],
    ),
    (
        "topic",
        &["api", "commands", "transport", "dbus", "router", "store"],
    ),
    (
        "data",
        &[
            "api",
            "commands",
            "transport",
            "dbus",
            "router",
            "store",
            "queue",
        ],
    ),
    (
        "interface",
        &[
            "api",
            "commands",
            "transport",
            "dbus",
            "router",
            "store",
            "queue",
        ],
    ),
];

fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// `src/store/ledger.rs` → `store`; `src/queue.rs` and `src/queue/tests.rs` → `queue`.
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src/");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names through `crate::`.
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = tail;
        }
        // `use crate::{a, b::c}`: the names inside the braces.
        if let Some(at) = code.find("crate::{") {
            let inside = &code[at + "crate::{".len()..];
            for part in inside.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// Top-level module → the top-level modules it imports, with the files that do.
fn import_graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|file| top_module(&src, file)).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = top_module(&src, file);
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        let shown = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .display()
            .to_string();
        for to in imported_modules(&text) {
            if to != from && modules.contains(&to) && !["main", "lib"].contains(&from.as_str()) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .push(shown.clone());
            }
        }
    }
    graph
}

#[test]
fn lower_floors_never_import_higher_ones() {
    let graph = import_graph();
    assert!(
        graph
            .get("api")
            .is_some_and(|deps| deps.contains_key("queue")),
        "the import scanner found nothing: is it broken? {graph:#?}"
    );
    let mut problems = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let Some(deps) = graph.get(*module) else {
            continue;
        };
        for target in *forbidden {
            if let Some(files) = deps.get(*target) {
                problems.push(format!(
                    "{module} imports {target}, a floor above it (in src/{})",
                    files.join(", src/")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_two_top_level_modules_import_each_other_even_through_others() {
    let graph = import_graph();
    // Depth-first search for a path back to where it started.
    fn path_back(
        graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
        start: &str,
        at: &str,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|deps| deps.keys()) {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if path_back(graph, start, next, seen, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut circles = Vec::new();
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        if path_back(&graph, module, module, &mut BTreeSet::new(), &mut path) {
            let arrows: Vec<String> = path
                .windows(2)
                .map(|pair| {
                    let files = &graph[&pair[0]][&pair[1]];
                    format!("{} -> {} (src/{})", pair[0], pair[1], files.join(", src/"))
                })
                .collect();
            circles.push(arrows.join("\n  "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles between top-level modules:\n  {}",
        circles.join("\n\n  ")
    );
}

#[test]
fn the_scanner_sees_plain_and_grouped_imports() {
    let found = imported_modules(
        "use crate::store::Store;\nuse crate::{api, queue::Queue};\nlet x = crate::clock::now_ms(); // crate::dbus\n",
    );
    let expected: BTreeSet<String> = ["store", "api", "queue", "clock"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}
