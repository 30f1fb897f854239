//! Just enough Rust for the documentation checks: token trees without comments, the structs and
//! enums of a file with their attributes, and the fields and variants they declare.

/// A token, with delimited groups nested like a proc-macro token tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// An identifier or keyword; a raw identifier `r#x` is `x`.
    Ident(String),
    /// The contents of a string literal (raw, byte and C strings included), escapes kept.
    Str(String),
    /// A character, byte, number or lifetime.
    Other(String),
    Punct(char),
    /// `(`, `[` or `{` and what it encloses.
    Group(char, Vec<Tree>),
}

/// The token trees of a Rust source file. Comments (doc comments included) are dropped.
pub fn parse(source: &str) -> Vec<Tree> {
    let chars: Vec<char> = source.chars().collect();
    let mut position = 0;
    let trees = trees(&chars, &mut position, None);
    assert!(
        position >= chars.len(),
        "unbalanced delimiters in Rust source"
    );
    trees
}

fn trees(chars: &[char], i: &mut usize, close: Option<char>) -> Vec<Tree> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    while *i < chars.len() {
        let c = chars[*i];
        let next = chars.get(*i + 1).copied();
        if c.is_whitespace() {
            *i += 1;
        } else if c == '/' && next == Some('/') {
            while *i < chars.len() && chars[*i] != '\n' {
                *i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while *i < chars.len() {
                if chars[*i] == '/' && chars.get(*i + 1) == Some(&'*') {
                    depth += 1;
                    *i += 2;
                } else if chars[*i] == '*' && chars.get(*i + 1) == Some(&'/') {
                    depth -= 1;
                    *i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    *i += 1;
                }
            }
        } else if let Some(text) = string_literal(chars, i) {
            out.push(Tree::Str(text));
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let start = *i;
            if next == Some('\\') {
                // The quote, the backslash and the escaped character, then up to the quote.
                *i += 3;
                while *i < chars.len() && chars[*i] != '\'' {
                    *i += 1;
                }
                *i += 1;
            } else if chars.get(*i + 2) == Some(&'\'') {
                *i += 3;
            } else {
                *i += 1;
                while *i < chars.len() && is_ident(chars[*i]) {
                    *i += 1;
                }
            }
            out.push(Tree::Other(chars[start..*i].iter().collect()));
        } else if c == '(' || c == '[' || c == '{' {
            let closing = match c {
                '(' => ')',
                '[' => ']',
                _ => '}',
            };
            *i += 1;
            let inner = trees(chars, i, Some(closing));
            out.push(Tree::Group(c, inner));
        } else if Some(c) == close {
            *i += 1;
            return out;
        } else if c == ')' || c == ']' || c == '}' {
            panic!("unbalanced `{c}` in Rust source");
        } else if c.is_ascii_digit() {
            let start = *i;
            while *i < chars.len() && (is_ident(chars[*i]) || chars[*i] == '.') {
                // `0..n` is a number and a range, not a number with two dots.
                if chars[*i] == '.' && chars.get(*i + 1) == Some(&'.') {
                    break;
                }
                *i += 1;
            }
            out.push(Tree::Other(chars[start..*i].iter().collect()));
        } else if is_ident(c) {
            let start = *i;
            while *i < chars.len() && is_ident(chars[*i]) {
                *i += 1;
            }
            let mut word: String = chars[start..*i].iter().collect();
            if word == "r" && chars.get(*i) == Some(&'#') {
                *i += 1;
                let raw = *i;
                while *i < chars.len() && is_ident(chars[*i]) {
                    *i += 1;
                }
                word = chars[raw..*i].iter().collect();
            }
            out.push(Tree::Ident(word));
        } else {
            out.push(Tree::Punct(c));
            *i += 1;
        }
    }
    assert!(close.is_none(), "unclosed group in Rust source");
    out
}

/// A string literal starting at `i` (`"..."`, `r"..."`, `r#"..."#`, `b"..."`, `br"..."`,
/// `c"..."`): its contents, with `i` moved past it.
fn string_literal(chars: &[char], i: &mut usize) -> Option<String> {
    let mut j = *i;
    let preceded_by_ident = j > 0 && (chars[j - 1].is_alphanumeric() || chars[j - 1] == '_');
    if preceded_by_ident {
        return None;
    }
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    let raw = chars.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    let hashes = chars[j.min(chars.len())..]
        .iter()
        .take_while(|&&c| c == '#')
        .count();
    if (!raw && hashes > 0) || chars.get(j + hashes) != Some(&'"') {
        return None;
    }
    j += hashes + 1;
    let start = j;
    loop {
        let c = *chars.get(j)?;
        if !raw && c == '\\' {
            j += 2;
        } else if c == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == '#')
                .count()
                == hashes
        {
            let text = chars[start..j].iter().collect();
            *i = j + 1 + hashes;
            return Some(text);
        } else {
            j += 1;
        }
    }
}

/// An attribute `#[path(args)]` or `#[path = value]`: its path's last name and its tokens.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub tokens: Vec<Tree>,
}

impl Attribute {
    /// The items of `#[name(a, b = "x", c(d = "y"))]`, split at top-level commas.
    pub fn items(&self) -> Vec<Vec<Tree>> {
        match self.tokens.last() {
            Some(Tree::Group('(', inner)) => split(inner, ','),
            _ => Vec::new(),
        }
    }

    /// Whether the attribute is `#[<name>(... word ...)]` with `word` as one of its items.
    pub fn has_word(&self, word: &str) -> bool {
        self.items()
            .iter()
            .any(|item| matches!(item.as_slice(), [Tree::Ident(w)] if w == word))
    }

    /// The string of `key = "value"` among the items.
    pub fn value(&self, key: &str) -> Option<String> {
        self.items().iter().find_map(|item| match item.as_slice() {
            [Tree::Ident(k), Tree::Punct('='), Tree::Str(v)] if k == key => Some(v.clone()),
            _ => None,
        })
    }
}

/// A named field of a struct, or a variant of an enum.
#[derive(Debug, Clone)]
pub struct Member {
    pub attributes: Vec<Attribute>,
    pub name: String,
}

/// A struct with named fields, or an enum.
#[derive(Debug, Clone)]
pub struct Item {
    pub attributes: Vec<Attribute>,
    pub keyword: String,
    pub name: String,
    pub members: Vec<Member>,
}

impl Item {
    pub fn attributes<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Attribute> {
        self.attributes.iter().filter(move |a| a.name == name)
    }

    /// Whether a `#[derive(...)]` of the item names `derive` (by its last path segment).
    pub fn derives(&self, derive: &str) -> bool {
        self.attributes("derive").any(|a| {
            a.items()
                .iter()
                .any(|item| matches!(item.last(), Some(Tree::Ident(d)) if d == derive))
        })
    }
}

/// The structs with named fields and the enums of a file, in its modules too, except those of
/// modules marked `#[cfg(test)]`.
pub fn items(trees: &[Tree]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut attributes = Vec::new();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            Tree::Punct('#') => {
                let inner = matches!(trees.get(i + 1), Some(Tree::Punct('!')));
                let at = if inner { i + 2 } else { i + 1 };
                if let Some(Tree::Group('[', tokens)) = trees.get(at) {
                    if !inner {
                        attributes.push(attribute(tokens));
                    }
                    i = at + 1;
                    continue;
                }
                attributes.clear();
            }
            Tree::Ident(word) if word == "pub" => {
                if matches!(trees.get(i + 1), Some(Tree::Group('(', _))) {
                    i += 1;
                }
            }
            Tree::Ident(keyword) if keyword == "struct" || keyword == "enum" => {
                let name = match trees.get(i + 1) {
                    Some(Tree::Ident(name)) => name.clone(),
                    _ => String::new(),
                };
                // Skip generics and where clauses up to the body (a tuple or unit struct has
                // none in braces and is left out).
                let body = trees[i + 1..]
                    .iter()
                    .take_while(|t| !matches!(t, Tree::Punct(';') | Tree::Group('(', _)))
                    .find_map(|t| match t {
                        Tree::Group('{', body) => Some(body),
                        _ => None,
                    });
                if let Some(body) = body {
                    items.push(Item {
                        attributes: std::mem::take(&mut attributes),
                        keyword: keyword.clone(),
                        name,
                        members: members(body, keyword == "enum"),
                    });
                }
                attributes.clear();
            }
            Tree::Ident(word) if word == "mod" => {
                let test_only = attributes.iter().any(|a| {
                    a.name == "cfg" && a.items().iter().any(|item| item == &[ident("test")])
                });
                if let Some(Tree::Group('{', body)) = trees.get(i + 2)
                    && !test_only
                {
                    items.extend(self::items(body));
                }
                attributes.clear();
            }
            _ => attributes.clear(),
        }
        i += 1;
    }
    items
}

fn ident(word: &str) -> Tree {
    Tree::Ident(word.to_owned())
}

fn attribute(tokens: &[Tree]) -> Attribute {
    let name = tokens
        .iter()
        .take_while(|t| matches!(t, Tree::Ident(_) | Tree::Punct(':')))
        .filter_map(|t| match t {
            Tree::Ident(name) => Some(name.clone()),
            _ => None,
        })
        .last()
        .unwrap_or_default();
    Attribute {
        name,
        tokens: tokens.to_vec(),
    }
}

/// The fields of a struct body (`a: T, pub b: U`) or the variants of an enum body.
fn members(body: &[Tree], variants: bool) -> Vec<Member> {
    split(body, ',')
        .into_iter()
        .filter_map(|tokens| {
            let mut attributes = Vec::new();
            let mut i = 0;
            while let (Some(Tree::Punct('#')), Some(Tree::Group('[', inner))) =
                (tokens.get(i), tokens.get(i + 1))
            {
                attributes.push(attribute(inner));
                i += 2;
            }
            if tokens.get(i) == Some(&ident("pub")) {
                i += 1;
                if matches!(tokens.get(i), Some(Tree::Group('(', _))) {
                    i += 1;
                }
            }
            let Some(Tree::Ident(name)) = tokens.get(i) else {
                return None;
            };
            if !variants && tokens.get(i + 1) != Some(&Tree::Punct(':')) {
                return None;
            }
            Some(Member {
                attributes,
                name: name.clone(),
            })
        })
        .collect()
}

/// `tokens` split at `separator`s outside `<...>` (groups are nested already).
pub fn split(tokens: &[Tree], separator: char) -> Vec<Vec<Tree>> {
    let mut parts = vec![Vec::new()];
    let mut angle = 0usize;
    let mut previous: Option<&Tree> = None;
    for token in tokens {
        match token {
            Tree::Punct('<') => angle += 1,
            // `->` closes nothing.
            Tree::Punct('>') if previous != Some(&Tree::Punct('-')) => {
                angle = angle.saturating_sub(1)
            }
            Tree::Punct(c) if *c == separator && angle == 0 => {
                parts.push(Vec::new());
                previous = Some(token);
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("a part").push(token.clone());
        previous = Some(token);
    }
    parts.retain(|part| !part.is_empty());
    parts
}
