//! The documentation stays true to the code and to itself: every relative link of README.md and
//! docs/*.md resolves (file and `#anchor`), every configuration key the code accepts has a row
//! in docs/configuration.md, and every D-Bus member and error of the agent is documented in
//! docs/dbus-api.md. The lists come from the code (`Config::keys`, src/dbus/error.rs) and from
//! the introspection XML, so a new key, member or error fails here until it is documented.

#[path = "docs/markdown.rs"]
mod markdown;
#[path = "docs/rust_source.rs"]
mod rust_source;

use std::path::{Component, Path, PathBuf};

const CONFIGURATION: &str = "docs/configuration.md";
const DBUS_API: &str = "docs/dbus-api.md";
const DBUS_XML: &str = "dbus/org.astarte_platform.Agent1.xml";
const DBUS_ERRORS: &str = "src/dbus/error.rs";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path))
        .unwrap_or_else(|e| panic!("couldn't read {path}: {e}"))
}

/// Fails with every problem at once, one per line.
fn report(problems: Vec<String>, what: &str) {
    assert!(
        problems.is_empty(),
        "{} {what}:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// README.md and every docs/*.md, as paths relative to the repository.
fn documentation() -> Vec<String> {
    let mut files = vec!["README.md".to_owned()];
    let docs = std::fs::read_dir(repo().join("docs")).expect("docs/ is readable");
    let mut pages: Vec<String> = docs
        .map(|entry| {
            entry
                .expect("a docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// `a/b/../c` as `a/c`, relative to the repository; `None` when it leaves the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why the link `target` written in `file` does not resolve, if it does not.
fn broken(file: &str, target: &str) -> Option<String> {
    let external = target.starts_with("//")
        || target.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        });
    if external {
        return None;
    }
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let path = percent_decoded(path);
    let joined = if path.is_empty() {
        PathBuf::from(file)
    } else if let Some(from_root) = path.strip_prefix('/') {
        PathBuf::from(from_root)
    } else {
        Path::new(file)
            .parent()
            .unwrap_or(Path::new(""))
            .join(&path)
    };
    let Some(resolved) = normalize(&joined) else {
        return Some("points outside the repository".into());
    };
    let shown = resolved.display();
    let on_disk = repo().join(&resolved);
    if !on_disk.exists() {
        return Some(format!("{shown} does not exist"));
    }
    if anchor.is_empty() {
        return None;
    }
    let is_markdown = resolved
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"));
    if !is_markdown || !on_disk.is_file() {
        let line_anchor = anchor.split('-').all(|part| {
            part.strip_prefix('L')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        });
        return (!line_anchor).then(|| {
            format!("#{anchor}: {shown} is not a Markdown file, so it has no such anchor")
        });
    }
    let text = std::fs::read_to_string(&on_disk).expect("the target is readable");
    let anchors = markdown::anchors(&text);
    (!anchors.contains(anchor)).then(|| {
        format!("no heading of {shown} produces the anchor #{anchor} (its anchors: {anchors:?})")
    })
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves_to_a_file_and_heading() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in documentation() {
        for link in markdown::links(&read(&file)) {
            checked += 1;
            if let Some(why) = broken(&file, &link.target) {
                problems.push(format!(
                    "{file}:{}: link ({}): {why}",
                    link.line, link.target
                ));
            }
        }
    }
    assert!(
        checked > 0,
        "found no links at all in README.md and docs/: is the link scanner broken?"
    );
    report(problems, "broken link(s) in README.md and docs/*.md");
}

/// `dbus.bus` as the reference's table writes it: `[dbus] bus`; top-level keys as they are.
fn as_table_row(key: &str) -> String {
    match key.rsplit_once('.') {
        Some((table, name)) => format!("[{table}] {name}"),
        None => key.to_owned(),
    }
}

#[test]
fn every_config_key_is_documented_in_the_configuration_reference() {
    // The keys the configuration reader asks for (sections themselves are not keys).
    let all = astarte_agent::config::Config::keys();
    let keys: Vec<String> = all
        .iter()
        .filter(|key| {
            !all.iter()
                .any(|other| other.starts_with(&format!("{key}.")))
        })
        .map(|key| as_table_row(key))
        .collect();
    let reference = read(CONFIGURATION);
    let rows: Vec<&str> = reference.lines().filter_map(markdown::first_cell).collect();
    let problems = keys
        .iter()
        .filter(|key| !rows.contains(&format!("`{key}`").as_str()))
        .map(|key| {
            format!(
                "configuration key `{key}` (read in src/config/) is not documented in {CONFIGURATION}: add a row `{key}` to its table of keys"
            )
        })
        .collect();
    report(problems, "undocumented configuration key(s)");
}

/// The interfaces of the introspection XML and the methods, signals and properties of each.
fn dbus_members() -> Vec<(String, &'static str, String)> {
    let xml = read(DBUS_XML);
    let mut text = String::new();
    let mut rest = xml.as_str();
    while let Some(start) = rest.find("<!--") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find("-->").expect("XML comments are closed");
        rest = &rest[start + end + 3..];
    }
    text.push_str(rest);
    let attribute = |tag: &str, name: &str| -> Option<String> {
        ["\"", "'"].iter().find_map(|quote| {
            let start = tag.find(&format!(" {name}={quote}"))? + name.len() + 3;
            let end = tag[start..].find(quote)?;
            Some(tag[start..start + end].to_owned())
        })
    };
    let mut members = Vec::new();
    let mut interface: Option<String> = None;
    for tag in text.split('<').skip(1) {
        let tag = tag
            .split('>')
            .next()
            .unwrap_or_default()
            .replace(['\n', '\t'], " ");
        let element = tag.split_whitespace().next().unwrap_or_default();
        match element {
            "interface" => interface = attribute(&tag, "name"),
            "/interface" => interface = None,
            "method" | "signal" | "property" => {
                let name = attribute(&tag, "name")
                    .unwrap_or_else(|| panic!("{DBUS_XML}: a <{element}> without a name"));
                let interface = interface.clone().unwrap_or_else(|| {
                    panic!("{DBUS_XML}: <{element} name=\"{name}\"> outside an <interface>")
                });
                let kind = match element {
                    "method" => "method",
                    "signal" => "signal",
                    _ => "property",
                };
                members.push((interface, kind, name));
            }
            _ => {}
        }
    }
    members
}

#[test]
fn every_dbus_member_is_documented_in_the_dbus_api_reference() {
    let members = dbus_members();
    assert!(
        members.len() > 10,
        "found only {members:?} in {DBUS_XML}: is the XML scanner broken?"
    );
    let reference = read(DBUS_API);
    let mut problems = Vec::new();
    for (interface, kind, name) in &members {
        let Some(section) = markdown::section(&reference, &format!("`{interface}`")) else {
            problems.push(format!(
                "{DBUS_API} has no heading naming the interface `{interface}` (of {DBUS_XML})"
            ));
            continue;
        };
        // `| `Name` |`, `| `Name(s a, ...)` |` or `| signal `Name(...)` |` in a table.
        let documented = section
            .iter()
            .filter_map(|line| markdown::first_cell(line))
            .any(|cell| {
                let cell = cell
                    .split_once(' ')
                    .filter(|(word, _)| ["method", "signal", "property"].contains(word))
                    .map_or(cell, |(_, rest)| rest);
                cell == format!("`{name}`") || cell.starts_with(&format!("`{name}("))
            });
        if !documented {
            problems.push(format!(
                "D-Bus {kind} `{name}` of `{interface}` ({DBUS_XML}) is not documented in {DBUS_API}: add a table row for it under the heading of its interface"
            ));
        }
    }
    report(problems, "undocumented D-Bus member(s)");
}

#[test]
fn every_dbus_error_is_documented_in_the_dbus_api_reference() {
    let items = rust_source::items(&rust_source::parse(&read(DBUS_ERRORS)));
    let enums: Vec<_> = items
        .iter()
        .filter(|item| item.keyword == "enum" && item.derives("DBusError"))
        .collect();
    assert!(
        !enums.is_empty(),
        "{DBUS_ERRORS} has no enum deriving DBusError: is the scanner broken?"
    );
    let reference = read(DBUS_API);
    let rows: Vec<&str> = reference.lines().filter_map(markdown::first_cell).collect();
    let mut problems = Vec::new();
    for errors in enums {
        let prefix = errors
            .attributes("zbus")
            .find_map(|a| a.value("prefix"))
            .unwrap_or_default();
        if !reference.contains(&prefix) {
            problems.push(format!(
                "{DBUS_API} does not name the error prefix `{prefix}` of `{}` ({DBUS_ERRORS})",
                errors.name
            ));
        }
        for variant in &errors.members {
            let zbus = || variant.attributes.iter().filter(|a| a.name == "zbus");
            // `#[zbus(error)]` wraps zbus's own errors: not an error name of the agent's.
            if zbus().any(|a| a.has_word("error")) {
                continue;
            }
            let kind = zbus()
                .find_map(|a| a.value("name"))
                .unwrap_or_else(|| variant.name.clone());
            if !rows.contains(&format!("`{kind}`").as_str()) {
                problems.push(format!(
                    "D-Bus error `{prefix}.{kind}` (variant `{}` of `{}` in {DBUS_ERRORS}) is not documented in {DBUS_API}: add a row `{kind}` to its table of errors",
                    variant.name, errors.name
                ));
            }
        }
    }
    report(problems, "undocumented D-Bus error(s)");
}
