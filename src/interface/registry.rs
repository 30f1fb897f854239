//! The set of validated interfaces the device declares, loaded from a directory of
//! `*.json` files. A bad file is reported and skipped so one typo does not take the
//! whole device offline.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::InterfaceError;
use super::model::Interface;
use super::validate::MAX_DOCUMENT_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("couldn't read the interface directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("couldn't read the file: {0}")]
    ReadFile(#[source] std::io::Error),
    #[error(transparent)]
    Invalid(#[from] InterfaceError),
    #[error("interface {name} is already declared by {first}")]
    DuplicateName { name: String, first: PathBuf },
}

/// A problem of a file that was skipped while loading a directory (a file can have several).
#[derive(Debug)]
pub struct LoadProblem {
    pub file: PathBuf,
    pub error: RegistryError,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.error)
    }
}

/// Validated interfaces by name, iterated in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    interfaces: BTreeMap<String, Arc<Interface>>,
}

impl Registry {
    /// Loads every `*.json` file of `dir` in file-name order. Other entries are ignored.
    /// Unreadable or invalid files, and files declaring an interface name already loaded
    /// from an earlier file, become [`LoadProblem`]s, one per problem of each file; only an
    /// unreadable directory fails.
    pub fn load_dir(dir: &Path) -> Result<(Registry, Vec<LoadProblem>), RegistryError> {
        let read_dir_error = |source| RegistryError::ReadDir {
            dir: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
            let path = entry.map_err(read_dir_error)?.path();
            if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
                files.push(path);
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

        let mut registry = Registry::default();
        let mut origins: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut problems = Vec::new();
        for file in files {
            let loaded = read_document(&file)
                .map_err(|error| vec![error])
                .and_then(|text| {
                    Interface::validate_json(&text)
                        .map_err(|errors| errors.into_iter().map(RegistryError::Invalid).collect())
                });
            match loaded {
                Ok(interface) => {
                    if let Some(first) = origins.get(&interface.name) {
                        let error = RegistryError::DuplicateName {
                            name: interface.name,
                            first: first.clone(),
                        };
                        problems.push(LoadProblem { file, error });
                    } else {
                        origins.insert(interface.name.clone(), file);
                        registry
                            .interfaces
                            .insert(interface.name.clone(), Arc::new(interface));
                    }
                }
                Err(errors) => problems.extend(errors.into_iter().map(|error| LoadProblem {
                    file: file.clone(),
                    error,
                })),
            }
        }
        Ok((registry, problems))
    }

    /// A registry of already validated interfaces; on duplicate names the first one wins.
    pub fn from_interfaces(interfaces: Vec<Interface>) -> Registry {
        let mut registry = Registry::default();
        for interface in interfaces {
            registry
                .interfaces
                .entry(interface.name.clone())
                .or_insert_with(|| Arc::new(interface));
        }
        registry
    }

    pub fn get(&self, name: &str) -> Option<&Interface> {
        self.interfaces.get(name).map(|interface| &**interface)
    }

    /// The interface, shared: it stays valid after the registry changes.
    pub fn get_shared(&self, name: &str) -> Option<Arc<Interface>> {
        self.interfaces.get(name).cloned()
    }

    /// A copy with `interface` added, or replacing the one of the same name.
    pub fn with(&self, interface: Arc<Interface>) -> Registry {
        let mut interfaces = self.interfaces.clone();
        interfaces.insert(interface.name.clone(), interface);
        Registry { interfaces }
    }

    /// A copy without the interface `name`.
    pub fn without(&self, name: &str) -> Registry {
        let mut interfaces = self.interfaces.clone();
        interfaces.remove(name);
        Registry { interfaces }
    }

    /// All interfaces in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values().map(|interface| &**interface)
    }

    pub fn len(&self) -> usize {
        self.interfaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }

    /// The introspection payload: `name:major:minor` entries joined by `;`, no trailing
    /// `;`, and the empty string for no interfaces.
    pub fn introspection(&self) -> String {
        self.iter()
            .map(Interface::introspection_entry)
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The interfaces the device must subscribe to (`<base>/<name>/#`).
    pub fn server_owned(&self) -> impl Iterator<Item = &Interface> {
        self.iter().filter(|interface| interface.is_server_owned())
    }
}

/// Reads an interface file, never more than one byte past the document limit: a larger
/// file is refused by `Interface::from_json` without being read whole.
fn read_document(file: &Path) -> Result<String, RegistryError> {
    use std::io::Read;
    let limit = u64::try_from(MAX_DOCUMENT_BYTES).map_or(u64::MAX, |max| max.saturating_add(1));
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|opened| opened.take(limit).read_to_string(&mut text))
        .map_err(RegistryError::ReadFile)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::interface::test_support::interface;

    fn named(name: &str, major: u32, minor: u32, ownership: &str) -> Interface {
        let text = interface(json!({
            "interface_name": name, "version_major": major, "version_minor": minor,
            "ownership": ownership,
        }));
        Interface::from_json(&text).unwrap()
    }

    #[test]
    fn good_files_load_and_bad_ones_are_reported_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.Good.json"),
            interface(json!({"interface_name": "a.Good"})),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.Bad.json"),
            interface(json!({"type": "stream"})),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an interface").unwrap();
        std::fs::create_dir(dir.path().join("dir.json")).unwrap();

        let (registry, problems) = Registry::load_dir(dir.path()).unwrap();

        assert_eq!(
            registry.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["a.Good"]
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].file, dir.path().join("b.Bad.json"));
        assert!(matches!(problems[0].error, RegistryError::Invalid(_)));
        assert_eq!(
            problems[0].to_string(),
            format!(
                "{}: interface: `type` is \"stream\", expected `datastream` or `properties`",
                dir.path().join("b.Bad.json").display()
            )
        );
    }

    #[test]
    fn second_file_declaring_the_same_interface_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let text = interface(json!({"interface_name": "a.Same"}));
        std::fs::write(dir.path().join("1.json"), &text).unwrap();
        std::fs::write(dir.path().join("2.json"), &text).unwrap();

        let (registry, problems) = Registry::load_dir(dir.path()).unwrap();

        assert_eq!(registry.len(), 1);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].file, dir.path().join("2.json"));
        assert!(matches!(
            &problems[0].error,
            RegistryError::DuplicateName { first, .. } if *first == dir.path().join("1.json")
        ));
    }

    #[test]
    fn documents_up_to_the_size_limit_load_and_larger_ones_are_refused_unparsed() {
        let dir = tempfile::tempdir().unwrap();
        let mut at_limit = interface(json!({"interface_name": "a.AtLimit"}));
        at_limit.push_str(&" ".repeat(MAX_DOCUMENT_BYTES - at_limit.len()));
        std::fs::write(dir.path().join("a.json"), &at_limit).unwrap();
        let mut over = interface(json!({"interface_name": "b.Over"}));
        over.push_str(&" ".repeat(MAX_DOCUMENT_BYTES * 3));
        std::fs::write(dir.path().join("b.json"), &over).unwrap();

        let (registry, problems) = Registry::load_dir(dir.path()).unwrap();

        assert_eq!(
            registry.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["a.AtLimit"]
        );
        assert_eq!(problems.len(), 1);
        assert!(
            matches!(
                problems[0].error,
                RegistryError::Invalid(InterfaceError::DocumentTooLarge { max })
                    if max == MAX_DOCUMENT_BYTES
            ),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn non_utf8_file_is_a_read_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.json"), [0xff, 0xfe]).unwrap();
        let (registry, problems) = Registry::load_dir(dir.path()).unwrap();
        assert!(registry.is_empty());
        assert!(matches!(problems[0].error, RegistryError::ReadFile(_)));
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let result = Registry::load_dir(&missing);
        assert!(matches!(result, Err(RegistryError::ReadDir { dir, .. }) if dir == missing));
    }

    #[test]
    fn introspection_joins_entries_in_name_order_without_trailing_separator() {
        let registry = Registry::from_interfaces(vec![
            named("org.example.Zeta", 1, 0, "device"),
            named("com.example.Alpha", 0, 3, "server"),
        ]);
        assert_eq!(
            registry.introspection(),
            "com.example.Alpha:0:3;org.example.Zeta:1:0"
        );
    }

    #[test]
    fn introspection_of_no_interfaces_is_empty() {
        assert_eq!(Registry::from_interfaces(Vec::new()).introspection(), "");
    }

    #[test]
    fn from_interfaces_keeps_the_first_of_duplicate_names() {
        let registry = Registry::from_interfaces(vec![
            named("a.Same", 1, 0, "device"),
            named("a.Same", 2, 0, "device"),
        ]);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.get("a.Same").map(|i| i.version_major), Some(1));
    }

    #[test]
    fn server_owned_lists_only_server_interfaces() {
        let registry = Registry::from_interfaces(vec![
            named("a.Device", 1, 0, "device"),
            named("a.Server", 1, 0, "server"),
        ]);
        let names: Vec<&str> = registry.server_owned().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a.Server"]);
    }

    #[test]
    fn shipped_example_interfaces_are_all_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/interfaces");
        let (registry, problems) = Registry::load_dir(&dir).unwrap();
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            registry.introspection(),
            "org.astarte-platform.agent.example.DeviceConfig:0:1;\
             org.astarte-platform.agent.example.Environment:0:1;\
             org.astarte-platform.agent.example.ServerCommands:0:1;\
             org.astarte-platform.agent.example.ServerConfig:0:1;\
             org.astarte-platform.agent.example.Telemetry:0:1"
        );
        let telemetry = registry
            .get("org.astarte-platform.agent.example.Telemetry")
            .unwrap();
        assert_eq!(telemetry.mappings.len(), 14);
        let server: Vec<&str> = registry.server_owned().map(|i| i.name.as_str()).collect();
        assert_eq!(
            server,
            [
                "org.astarte-platform.agent.example.ServerCommands",
                "org.astarte-platform.agent.example.ServerConfig"
            ]
        );
    }
}
