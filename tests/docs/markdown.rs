//! Just enough Markdown for the documentation checks: the prose outside code, its links, its
//! headings, the anchors GitHub derives from them, and table rows.

use std::collections::BTreeSet;

/// A link written in prose: its destination as written, and the line it is on (from 1).
#[derive(Debug, PartialEq, Eq)]
pub struct Link {
    pub line: usize,
    pub target: String,
}

/// A heading outside code: its level (1 for `#`) and its text as written.
#[derive(Debug, PartialEq, Eq)]
pub struct Heading {
    pub line: usize,
    pub level: usize,
    pub text: String,
}

/// Every line with its number; lines of fenced code blocks (and their fences) come back empty,
/// so nothing in code is taken for a link or a heading.
pub fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indented = line.len() - trimmed.len() > 3;
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        let prose = match fence {
            Some((c, length)) => {
                let closes = !indented && run(c) >= length && trimmed.trim_end().len() == run(c);
                if closes {
                    fence = None;
                }
                false
            }
            None => match ['`', '~'].into_iter().find(|&c| !indented && run(c) >= 3) {
                Some(c) => {
                    fence = Some((c, run(c)));
                    false
                }
                None => true,
            },
        };
        lines.push((
            index + 1,
            if prose {
                line.to_owned()
            } else {
                String::new()
            },
        ));
    }
    lines
}

/// Paragraphs of prose (runs of non-blank lines): the number of their first line and their text.
fn paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut paragraphs: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (number, line) in prose_lines(text) {
        if line.trim().is_empty() {
            open = false;
        } else if open {
            let last = paragraphs.last_mut().expect("an open paragraph");
            last.1.push('\n');
            last.1.push_str(&line);
        } else {
            paragraphs.push((number, line));
            open = true;
        }
    }
    paragraphs
}

/// The text with every code span (`` `x` ``, ``` ``x`` ```) blanked out, newlines kept. A run
/// of backticks without a closing run of the same length is literal text, as in CommonMark.
pub fn blank_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let length = run_at(i);
        let mut j = i + length;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = run_at(j);
                if other == length {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                let span = &chars[i..j + length];
                out.extend(span.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
                i = j + length;
            }
            None => {
                out.extend(std::iter::repeat_n('`', length));
                i += length;
            }
        }
    }
    out
}

/// Every link of the prose: inline links and images (`[text](target)`, `![alt](target)`) and
/// link reference definitions (`[label]: target`). Links inside code are not links.
pub fn links(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    for (first_line, paragraph) in paragraphs(text) {
        let prose = blank_code_spans(&paragraph);
        let line_of = |offset: usize| first_line + prose[..offset].matches('\n').count();
        let mut from = 0;
        while let Some(found) = prose[from..].find("](") {
            let start = from + found + 2;
            if let Some(target) = destination(&prose[start..]) {
                links.push(Link {
                    line: line_of(start),
                    target,
                });
            }
            from = start;
        }
        let mut offset = 0;
        for line in prose.split('\n') {
            let trimmed = line.trim_start();
            if line.len() - trimmed.len() <= 3
                && trimmed.starts_with('[')
                && let Some(end) = trimmed.find("]:")
                && let Some(target) = trimmed[end + 2..].split_whitespace().next()
            {
                links.push(Link {
                    line: line_of(offset),
                    target: target
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned(),
                });
            }
            offset += line.len() + 1;
        }
    }
    links
}

/// The destination at the start of `rest` (what follows `](`): `<...>`, or up to the first
/// blank or the `)` that closes the link (parentheses inside it must balance).
fn destination(rest: &str) -> Option<String> {
    let rest = rest.trim_start();
    if let Some(bracketed) = rest.strip_prefix('<') {
        return bracketed.find('>').map(|end| bracketed[..end].to_owned());
    }
    let mut depth = 0usize;
    for (index, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(rest[..index].to_owned()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(rest[..index].to_owned()),
            _ => {}
        }
    }
    None
}

/// The ATX headings (`# ...` to `###### ...`) of the prose. Setext headings are not used in
/// this repository's documentation and are not recognised.
pub fn headings(text: &str) -> Vec<Heading> {
    prose_lines(text)
        .into_iter()
        .filter_map(|(line, content)| {
            let trimmed = content.trim_start();
            if content.len() - trimmed.len() > 3 {
                return None;
            }
            let level = trimmed.chars().take_while(|&c| c == '#').count();
            let rest = &trimmed[level..];
            if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
                return None;
            }
            // An optional closing sequence of `#` after a blank is not part of the text.
            let mut text = rest.trim();
            let without_closing = text.trim_end_matches('#');
            if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
                text = without_closing.trim_end();
            }
            Some(Heading {
                line,
                level,
                text: text.to_owned(),
            })
        })
        .collect()
}

/// The anchor GitHub gives a heading: the rendered text (code spans, links and images reduced
/// to their text) lowercased, every character dropped but letters, digits, `-`, `_` and
/// spaces, and spaces turned into `-`.
pub fn slug(heading: &str) -> String {
    let mut rendered = String::new();
    let mut rest = heading;
    // `[text](target)` and `![alt](target)` render as their text.
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else {
            break;
        };
        let Some(target_end) = after[close + 2..].find(')') else {
            break;
        };
        rendered.push_str(rest[..open].trim_end_matches('!'));
        rendered.push_str(&after[..close]);
        rest = &after[close + 2 + target_end + 1..];
    }
    rendered.push_str(rest);
    rendered
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a Markdown file has: one per heading (repeated slugs get `-1`, `-2`, ... as on
/// GitHub), plus explicit HTML anchors (`<a name="x">`, `id="x"`).
pub fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for heading in headings(text) {
        let base = slug(&heading.text);
        let mut anchor = base.clone();
        let mut repeat = 0;
        while anchors.contains(&anchor) {
            repeat += 1;
            anchor = format!("{base}-{repeat}");
        }
        anchors.insert(anchor);
    }
    for (_, line) in prose_lines(text) {
        for attribute in ["name=\"", "id=\""] {
            let mut rest = line.as_str();
            while let Some(start) = rest.find(attribute) {
                rest = &rest[start + attribute.len()..];
                if let Some(end) = rest.find('"') {
                    anchors.insert(rest[..end].to_owned());
                }
            }
        }
    }
    anchors
}

/// The first cell of a table row (`| cell | ... |`), trimmed; `None` for other lines.
pub fn first_cell(line: &str) -> Option<&str> {
    let row = line.trim().strip_prefix('|')?;
    let end = row.find('|')?;
    Some(row[..end].trim())
}

/// The lines of the section under the first heading whose text contains `needle`, up to the
/// next heading of the same or a higher level; `None` when no heading contains it.
pub fn section<'a>(text: &'a str, needle: &str) -> Option<Vec<&'a str>> {
    let all = headings(text);
    let start = all.iter().position(|h| h.text.contains(needle))?;
    let level = all[start].level;
    let end = all[start + 1..]
        .iter()
        .find(|h| h.level <= level)
        .map_or(usize::MAX, |h| h.line);
    Some(
        text.lines()
            .enumerate()
            .filter(|(index, _)| (all[start].line..end).contains(&(index + 1)))
            .map(|(_, line)| line)
            .collect(),
    )
}

#[test]
fn anchors_follow_githubs_heading_slugs() {
    let text = "# Title\n\n## Interface `org.astarte_platform.Agent1.Device`\n\n\
        ### Properties (read-only)\n\n### 1. Prepare the realm (on your workstation, with astartectl)\n\n\
        ## Errors ##\n\n## Errors\n\n## A [linked](x.md) heading\n\n```sh\n# not a heading\n```\n";
    let expected = [
        "title",
        "interface-orgastarte_platformagent1device",
        "properties-read-only",
        "1-prepare-the-realm-on-your-workstation-with-astartectl",
        "errors",
        "errors-1",
        "a-linked-heading",
    ];
    let anchors = anchors(text);
    assert_eq!(anchors, expected.iter().map(|s| s.to_string()).collect());
}

#[test]
fn links_in_code_are_not_checked_and_links_in_prose_are() {
    let text = "See [a](a.md) and `[b](b.md)`.\n\n```text\n[c](c.md)\n```\n\n[d]: d.md#x\n\
        A link split over\nlines [e\nf](e.md#y \"title\") and <https://example.org>.\n";
    let targets: Vec<(usize, String)> = links(text)
        .into_iter()
        .map(|link| (link.line, link.target))
        .collect();
    let expected = [(1, "a.md"), (10, "e.md#y"), (7, "d.md#x")];
    assert_eq!(
        targets,
        expected
            .map(|(line, target)| (line, target.to_owned()))
            .to_vec()
    );
}
