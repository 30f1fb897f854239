//! The configuration keys the agent accepts, read from its source: the serde structs of
//! `src/config.rs` and of the modules it declares (`src/config/*.rs`), the tables they contain,
//! and the sections the code reads by hand.
//!
//! - The root is every `#[derive(Deserialize)]` struct of `src/config.rs` that no other such
//!   struct contains; each of its fields is a key, named as serde names it (`rename`,
//!   `rename_all`), except `skip`/`skip_deserializing` fields.
//! - A field whose type is another of these structs is a table: `[dbus] bus`. A map of them
//!   (`BTreeMap<String, T>`) is a table per name: `[section.<name>] key`. `flatten` merges.
//! - A field read as a raw TOML table (`toml::Table`) is checked by hand in the module of the
//!   same name (`commands` in `src/config/commands.rs`): its settings are the string keys that
//!   module's `match` arms accept (`("enabled", value) => ...`), and a serde struct of that
//!   module that no other struct contains describes its `[section.<name>]` sub-tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::rust_source::{self, Item, Member, Tree};

/// A key as the configuration reference writes it (`realm`, `[dbus] bus`,
/// `[commands.<name>] exec`) and where the code declares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub name: String,
    pub origin: String,
}

struct Source {
    path: String,
    module: Option<String>,
    trees: Vec<Tree>,
    structs: Vec<Item>,
}

const MAPS: [&str; 3] = ["BTreeMap", "HashMap", "IndexMap"];
const RAW_TABLES: [&str; 2] = ["Table", "Map"];

/// Every key of the configuration, or why the source could not be read as expected.
pub fn config_keys(repo: &Path) -> Result<Vec<Key>, String> {
    let read = |path: &str| -> Result<Vec<Tree>, String> {
        let text = std::fs::read_to_string(repo.join(path))
            .map_err(|error| format!("couldn't read {path}: {error}"))?;
        Ok(rust_source::parse(&text))
    };
    let root_trees = read("src/config.rs")?;
    let mut sources = Vec::new();
    for module in rust_source::file_modules(&root_trees) {
        let candidates = [
            format!("src/config/{module}.rs"),
            format!("src/config/{module}/mod.rs"),
        ];
        let Some(path) = candidates.iter().find(|path| repo.join(path).is_file()) else {
            return Err(format!(
                "src/config.rs declares `mod {module};` but neither {} exists",
                candidates.join(" nor ")
            ));
        };
        let trees = read(path)?;
        sources.push(source(path.clone(), Some(module), trees));
    }
    sources.insert(0, source("src/config.rs".into(), None, root_trees));

    let all: Vec<(&Source, &Item)> = sources
        .iter()
        .flat_map(|source| source.structs.iter().map(move |item| (source, item)))
        .collect();
    let by_name: BTreeMap<&str, (&Source, &Item)> = all
        .iter()
        .map(|&(source, item)| (item.name.as_str(), (source, item)))
        .collect();
    let contained: BTreeSet<String> = all
        .iter()
        .flat_map(|(_, item)| item.members.iter())
        .flat_map(|field| rust_source::type_names(&field.ty))
        .filter(|name| by_name.contains_key(name.as_str()))
        .collect();
    let roots: Vec<_> = all
        .iter()
        .filter(|(source, item)| source.module.is_none() && !contained.contains(&item.name))
        .collect();
    if roots.is_empty() {
        return Err("found no `#[derive(Deserialize)]` struct in src/config.rs".into());
    }
    let walker = Walker {
        sources: &sources,
        by_name: &by_name,
        contained: &contained,
    };
    let mut keys = Vec::new();
    for (source, item) in roots {
        walker.walk(source, item, &[], &mut keys)?;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn source(path: String, module: Option<String>, trees: Vec<Tree>) -> Source {
    let structs = rust_source::items(&trees)
        .into_iter()
        .filter(|item| item.keyword == "struct" && item.derives("Deserialize"))
        .collect();
    Source {
        path,
        module,
        trees,
        structs,
    }
}

struct Walker<'a> {
    sources: &'a [Source],
    by_name: &'a BTreeMap<&'a str, (&'a Source, &'a Item)>,
    contained: &'a BTreeSet<String>,
}

impl Walker<'_> {
    /// Pushes the keys of `item`'s fields under the table `prefix` (empty for the root).
    fn walk(
        &self,
        source: &Source,
        item: &Item,
        prefix: &[String],
        keys: &mut Vec<Key>,
    ) -> Result<(), String> {
        let rename_all = serde_value(&item.attributes, "rename_all");
        for field in &item.members {
            if serde_word(field, "skip") || serde_word(field, "skip_deserializing") {
                continue;
            }
            let key = serde_value(&field.attributes, "rename")
                .unwrap_or_else(|| renamed(&field.name, rename_all.as_deref()));
            let names = rust_source::type_names(&field.ty);
            let nested = names
                .iter()
                .find_map(|name| self.by_name.get(name.as_str()).copied());
            let map = names.iter().any(|name| MAPS.contains(&name.as_str()));
            let flatten = serde_word(field, "flatten");
            let origin = format!(
                "field `{}` of `{}` in {}",
                field.name, item.name, source.path
            );
            let with = |extra: &[&str]| -> Vec<String> {
                let mut path = prefix.to_vec();
                path.extend(extra.iter().map(|s| s.to_string()));
                path
            };
            match (nested, flatten, map) {
                (Some((inner_source, inner)), true, false) => {
                    self.walk(inner_source, inner, prefix, keys)?
                }
                (Some((inner_source, inner)), true, true) => {
                    self.walk(inner_source, inner, &with(&["<name>"]), keys)?
                }
                (Some((inner_source, inner)), false, false) => {
                    self.walk(inner_source, inner, &with(&[&key]), keys)?
                }
                (Some((inner_source, inner)), false, true) => {
                    self.walk(inner_source, inner, &with(&[&key, "<name>"]), keys)?
                }
                (None, _, _)
                    if names
                        .last()
                        .is_some_and(|n| RAW_TABLES.contains(&n.as_str())) =>
                {
                    if flatten {
                        return Err(format!(
                            "{origin}: a flattened raw table: can't tell its keys"
                        ));
                    }
                    self.hand_read(&key, &with(&[&key]), &origin, keys)?
                }
                (None, _, _) => keys.push(Key {
                    name: display(prefix, &key),
                    origin,
                }),
            }
        }
        Ok(())
    }

    /// The keys of a section read as a raw table, from the module of the same name.
    fn hand_read(
        &self,
        section: &str,
        path: &[String],
        origin: &str,
        keys: &mut Vec<Key>,
    ) -> Result<(), String> {
        let Some(source) = self
            .sources
            .iter()
            .find(|source| source.module.as_deref() == Some(section))
        else {
            return Err(format!(
                "{origin} is read as a raw table, but there is no module `{section}` of src/config.rs that checks it"
            ));
        };
        let settings = matched_string_keys(&source.trees);
        if settings.is_empty() {
            return Err(format!(
                "{origin} is read as a raw table, but {} matches no string keys (`(\"key\", value) => ...`): update tests/docs/config_keys.rs",
                source.path
            ));
        }
        for setting in settings {
            keys.push(Key {
                name: display(path, &setting),
                origin: format!("a key matched in {}", source.path),
            });
        }
        let mut sub_path = path.to_vec();
        sub_path.push("<name>".into());
        for item in &source.structs {
            if !self.contained.contains(&item.name) {
                self.walk(source, item, &sub_path, keys)?;
            }
        }
        Ok(())
    }
}

/// Every group `( "key", ... )` that is the pattern of a `match` arm (followed by `=>`, a
/// guard `if`, or `|`) and starts with a string literal: the literals, in order.
pub fn matched_string_keys(trees: &[Tree]) -> Vec<String> {
    let mut keys = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let Tree::Group(delimiter, inner) = tree else {
            continue;
        };
        let arm = match (trees.get(i + 1), trees.get(i + 2)) {
            (Some(Tree::Punct('=')), Some(Tree::Punct('>'))) => true,
            (Some(Tree::Ident(word)), _) => word == "if",
            (Some(Tree::Punct('|')), _) => true,
            _ => false,
        };
        if *delimiter == '('
            && arm
            && let [Tree::Str(key), Tree::Punct(','), ..] = inner.as_slice()
        {
            keys.push(key.clone());
        }
        keys.extend(matched_string_keys(inner));
    }
    keys
}

/// `realm` at the root, `[dbus] bus` in a table, `[commands.<name>] exec` in a named table.
fn display(path: &[String], key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("[{}] {key}", path.join("."))
    }
}

/// Whether a `#[serde(...)]` attribute of the field has `word` (`skip`, `flatten`, ...).
fn serde_word(field: &Member, word: &str) -> bool {
    field
        .attributes
        .iter()
        .any(|a| a.name == "serde" && a.has_word(word))
}

/// `#[serde(key = "x")]` or `#[serde(key(deserialize = "x"))]`.
fn serde_value(attributes: &[rust_source::Attribute], key: &str) -> Option<String> {
    attributes
        .iter()
        .filter(|a| a.name == "serde")
        .find_map(|a| {
            a.value(key).or_else(|| {
                a.items().iter().find_map(|item| match item.as_slice() {
                    [Tree::Ident(k), Tree::Group('(', inner)] if k == key => {
                        inner.windows(3).find_map(|w| match w {
                            [Tree::Ident(d), Tree::Punct('='), Tree::Str(v)]
                                if d == "deserialize" =>
                            {
                                Some(v.clone())
                            }
                            _ => None,
                        })
                    }
                    _ => None,
                })
            })
        })
}

/// A snake_case field name as serde's `rename_all` writes it.
fn renamed(field: &str, rule: Option<&str>) -> String {
    let words: Vec<&str> = field.split('_').filter(|w| !w.is_empty()).collect();
    let capitalized = |w: &&str| {
        let mut chars = w.chars();
        chars.next().map_or(String::new(), |c| {
            c.to_uppercase().chain(chars).collect::<String>()
        })
    };
    match rule {
        Some("lowercase") => field.to_lowercase(),
        Some("UPPERCASE") => field.to_uppercase(),
        Some("PascalCase") => words.iter().map(capitalized).collect(),
        Some("camelCase") => {
            let pascal: String = words.iter().map(capitalized).collect();
            let mut chars = pascal.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_lowercase().chain(chars).collect::<String>()
            })
        }
        Some("SCREAMING_SNAKE_CASE") => field.to_uppercase(),
        Some("kebab-case") => field.replace('_', "-"),
        Some("SCREAMING-KEBAB-CASE") => field.replace('_', "-").to_uppercase(),
        _ => field.to_owned(),
    }
}

#[test]
fn the_config_key_extractor_follows_serde_attributes_and_ignores_comments() {
    let source = r##"
        /// A doc comment with a brace { and a fake field: `fake: u8,`
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub(crate) struct File {
            plain_key: Option<String>, // trailing comment }
            #[serde(rename = "renamed")]
            pub was_named: u32,
            #[serde(skip)]
            internal: Vec<u8>,
            /* a block /* nested */ comment */
            #[serde(default)]
            inner: Inner,
            things: std::collections::BTreeMap<String, Inner>,
            #[serde(flatten)]
            more: Flat,
            text: &'static str,
            quote: char,
        }
        #[derive(Deserialize)]
        struct Inner { #[serde(rename(serialize = "s", deserialize = "d"))] value: bool }
        #[derive(Deserialize)]
        struct Flat { r#type: String }
        fn check(key: &str) { match (key, 1) { ("looks_like_a_key", _) => {} _ => {} } let _ = '"'; }
        #[cfg(test)]
        mod tests { #[derive(Deserialize)] struct Test { hidden: u8 } }
    "##;
    let items = rust_source::items(&rust_source::parse(source));
    let names: Vec<(&str, Vec<&str>)> = items
        .iter()
        .filter(|item| item.derives("Deserialize"))
        .map(|item| {
            (
                item.name.as_str(),
                item.members.iter().map(|m| m.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (
                "File",
                vec![
                    "plain_key",
                    "was_named",
                    "internal",
                    "inner",
                    "things",
                    "more",
                    "text",
                    "quote"
                ]
            ),
            ("Inner", vec!["value"]),
            ("Flat", vec!["type"]),
        ]
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("src")).expect("src/");
    std::fs::write(dir.path().join("src/config.rs"), source).expect("src/config.rs");
    let keys: Vec<String> = config_keys(dir.path())
        .expect("keys")
        .into_iter()
        .map(|key| key.name)
        .collect();
    let expected = [
        "[inner] d",
        "[things.<name>] d",
        "plain-key",
        "quote",
        "renamed",
        "text",
        "type",
    ];
    assert_eq!(keys, expected);
    assert_eq!(
        matched_string_keys(&rust_source::parse(source)),
        ["looks_like_a_key"]
    );
}
