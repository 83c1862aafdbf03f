//! A configuration file's reference, written once as data and rendered twice: as a man page
//! (section 5, with `roff`) and as Markdown for the docs. knockerd's own is
//! `knockerd::config::native::reference::KNOCKERD_TOML`; its tests check that it names every key
//! the parser accepts, and nothing else.

use roff::{bold, italic, roman, Inline, Roff};

/// One file's reference: what `man 5 NAME` shows.
pub struct Reference {
    /// The file's name as the page is called, e.g. `knockerd.toml`.
    pub name: &'static str,
    /// The one line after the name in NAME.
    pub summary: &'static str,
    /// DESCRIPTION's paragraphs.
    pub description: &'static [&'static str],
    pub sections: &'static [Section],
    /// Paragraphs of a last section, EXAMPLE (shown as written, in a code block).
    pub example: &'static str,
    /// SEE ALSO: other pages and files.
    pub see_also: &'static [&'static str],
}

/// A group of keys of one TOML table (several groups may share a table: a door's keys are
/// grouped by door kind).
pub struct Section {
    /// The TOML table the keys are written in, e.g. `[daemon]` or `[door.NAME]`.
    pub table: &'static str,
    /// The heading, e.g. `[door.NAME], kind = "rotating"`.
    pub title: &'static str,
    pub about: &'static str,
    pub keys: &'static [Key],
}

/// One key of a table.
pub struct Key {
    pub name: &'static str,
    /// What its value looks like, e.g. `integer`, `"30s"`, `["tcp/22", ...]`.
    pub value: &'static str,
    /// Its default, or what happens without it ("required", "none": off).
    pub default: &'static str,
    pub about: &'static str,
}

impl Reference {
    /// The keys of `table` (every section of it), sorted and without repeats: what the drift
    /// test compares with the parser's own list.
    pub fn keys_of(&self, table: &str) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = self
            .sections
            .iter()
            .filter(|s| s.table == table)
            .flat_map(|s| s.keys.iter().map(|k| k.name))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The tables the reference describes, in the order they first appear.
    pub fn tables(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for s in self.sections {
            if !out.contains(&s.table) {
                out.push(s.table);
            }
        }
        out
    }

    /// The man page (section 5), titled with `version` as clap_mangen titles the others.
    pub fn man_page(&self, version: &str) -> String {
        let mut page = Roff::new();
        page.control(
            "TH",
            [
                self.name.to_uppercase().as_str(),
                "5",
                "",
                &format!("knocker {version}"),
                "knocker",
            ],
        );
        page.control("SH", ["NAME"]);
        page.text([roman(format!("{} - {}", self.name, self.summary))]);
        page.control("SH", ["DESCRIPTION"]);
        for (i, p) in self.description.iter().enumerate() {
            if i > 0 {
                page.control("PP", []);
            }
            page.text(inlines(p));
        }
        for s in self.sections {
            // roff quotes a heading with spaces, and cannot nest quotes inside it
            page.control("SH", [s.title.replace('"', "").as_str()]);
            page.text(inlines(s.about));
            for k in s.keys {
                page.control("TP", []);
                page.text([
                    bold(k.name),
                    roman(" = "),
                    italic(k.value),
                    roman(format!(" (default: {})", k.default)),
                ]);
                page.text(inlines(k.about));
            }
        }
        page.control("SH", ["EXAMPLE"]);
        page.control("PP", []);
        page.control("nf", []);
        for line in self.example.trim_end().lines() {
            page.text([roman(line)]);
        }
        page.control("fi", []);
        page.control("SH", ["SEE ALSO"]);
        page.text([roman(self.see_also.join(", "))]);
        page.render()
    }

    /// The same reference as Markdown, for the docs.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "<!-- Written by `knockerd manuals --out packaging --docs docs` from the reference in\n     the code (crates/knockerd/src/config/native/reference.rs): edit that, not this file. -->\n\n# {}: {}\n\n",
            self.name, self.summary
        );
        for p in self.description {
            out.push_str(&wrap_md(p));
            out.push_str("\n\n");
        }
        for s in self.sections {
            out.push_str(&format!("## {}\n\n", s.title.replace('*', "\\*")));
            out.push_str(&wrap_md(s.about));
            out.push_str("\n\n");
            for k in s.keys {
                let line = format!(
                    "- **`{}`** = {} (default: {}). {}",
                    k.name,
                    code_or_text(k.value),
                    k.default,
                    k.about
                );
                out.push_str(&wrap_md(&line).replace('\n', "\n  "));
                out.push('\n');
            }
            out.push('\n');
        }
        out.push_str("## Example\n\n```toml\n");
        out.push_str(self.example.trim_end());
        out.push_str("\n```\n\n## See also\n\n");
        out.push_str(&self.see_also.join(", "));
        out.push('\n');
        out
    }
}

/// A value shape in Markdown: code when it is written as TOML (quoted or bracketed), else words.
fn code_or_text(value: &str) -> String {
    if value.starts_with(['"', '[', '\'']) || value.chars().all(|c| c.is_ascii_digit()) {
        format!("`{value}`")
    } else {
        format!("*{value}*")
    }
}

/// A paragraph for roff: text in backticks is set in bold (a key, a value, a command), the
/// rest in roman.
fn inlines(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        if part.is_empty() {
            continue;
        }
        out.push(if i % 2 == 1 { bold(part) } else { roman(part) });
    }
    out
}

/// A Markdown paragraph wrapped at 100 columns, never inside a code span.
fn wrap_md(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    // words, with a code span kept whole even when it has spaces
    let mut words: Vec<String> = Vec::new();
    let mut in_code = false;
    for w in text.split(' ') {
        let ticks = w.matches('`').count();
        if in_code {
            if let Some(last) = words.last_mut() {
                last.push(' ');
                last.push_str(w);
            }
        } else {
            words.push(w.to_string());
        }
        if ticks % 2 == 1 {
            in_code = !in_code;
        }
    }
    for w in words {
        if !line.is_empty() && line.len() + 1 + w.len() > 100 {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&w);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[Key {
        name: "port",
        value: "integer",
        default: "62201",
        about: "The UDP port its packets go to; see `knockerd check`.",
    }];
    const R: Reference = Reference {
        name: "demo.toml",
        summary: "a demo",
        description: &["First paragraph with `code that has spaces` in it."],
        sections: &[
            Section {
                table: "[door.NAME]",
                title: "[door.NAME], kind = \"spa\"",
                about: "About.",
                keys: KEYS,
            },
            Section {
                table: "[door.NAME]",
                title: "[door.NAME], kind = \"syn\"",
                about: "Again.",
                keys: KEYS,
            },
        ],
        example: "[door.ssh]\nport = 1\n",
        see_also: &["knockerd(8)"],
    };

    #[test]
    fn keys_of_a_table_are_the_union_of_its_sections_without_repeats() {
        assert_eq!(R.keys_of("[door.NAME]"), vec!["port"]);
        assert!(R.keys_of("[daemon]").is_empty());
        assert_eq!(R.tables(), vec!["[door.NAME]"]);
    }

    #[test]
    fn the_page_has_its_sections_keys_and_example() {
        let page = R.man_page("0.1.0");
        assert!(page.contains("\n.TH DEMO.TOML 5 "), "{page}");
        assert!(page.contains(".SH DESCRIPTION"), "{page}");
        assert!(page.contains("\\fBport\\fR"), "{page}");
        assert!(page.contains("(default: 62201)"), "{page}");
        assert!(page.contains(".nf\n"), "{page}");
        assert!(page.contains("port = 1"), "{page}");
        // backticks never reach the page: they become bold
        assert!(!page.contains('`'), "{page}");
    }

    #[test]
    fn markdown_keeps_code_spans_whole_and_lines_short() {
        let long = "word ".repeat(40) + "`a code span with spaces` end";
        let wrapped = wrap_md(&long);
        assert!(wrapped.lines().all(|l| l.len() <= 100), "{wrapped}");
        assert!(wrapped.contains("`a code span with spaces`"), "{wrapped}");
        let md = R.markdown();
        assert!(
            md.contains("- **`port`** = *integer* (default: 62201)."),
            "{md}"
        );
        assert!(md.contains("```toml\n[door.ssh]\nport = 1\n```"), "{md}");
    }
}
