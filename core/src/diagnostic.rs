//! One way to say what is wrong with an input file, used for baselines and
//! for both binaries' configs: `file:line:column: field: message`.
//!
//! Positions come from the TOML parser's spans, never from scanning the
//! text for a key: [`Source`] turns a span (of a `toml::Spanned` value or
//! of a parse error) into line and column, and [`Document`] keeps where
//! every field of a parsed file is written, so a problem found later (a
//! file the config names does not exist) is reported at the line that
//! names it.

use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File (or origin) name.
    pub origin: String,
    /// 1-based line; 0 when the problem concerns the file as a whole.
    pub line: usize,
    /// 1-based column, in characters; 0 with `line`.
    pub column: usize,
    /// The field at fault, dotted (`rule[3].domains`, `collector.url`), or empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// A problem with the file as a whole (it cannot be read, it is too
    /// large...), or with a field that is not written in it.
    pub fn file(
        origin: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            origin: origin.into(),
            line: 0,
            column: 0,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.origin)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Several problems, one per line: what a refused file gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_all(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// The problems, one per line.
pub fn display_all(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where the lines of a [`Source`] start ([`Source::line_index`]).
#[derive(Debug, Clone)]
pub struct LineIndex(Vec<usize>);

impl LineIndex {
    /// The 1-based line of a byte offset, as [`Source::position`] gives it.
    pub fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// The text of an input file and its name, to place spans in it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl<'a> Source<'a> {
    /// `text` as read from `origin`.
    pub fn new(text: &'a str, origin: &'a str) -> Source<'a> {
        Source { text, origin }
    }

    /// The file name given.
    pub fn origin(&self) -> &'a str {
        self.origin
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The line starts of the text, to number many offsets: one pass over
    /// the text instead of one per offset (a baseline has hundreds of
    /// rules, each numbered by its line).
    pub fn line_index(&self) -> LineIndex {
        LineIndex(
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    /// A problem at `span` (its start).
    pub fn at(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            origin: self.origin.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A TOML parse or deserialization error, at its span, naming the field
    /// it concerns when the document is well-formed TOML (an unknown
    /// field, a value of the wrong type).
    pub fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        let fields = DeTable::parse(self.text)
            .map(|t| Fields::index(&t))
            .unwrap_or_default();
        self.toml_error_in(e, &fields)
    }

    fn toml_error_in(&self, e: &toml::de::Error, fields: &Fields) -> Diagnostic {
        let message = e.message().trim().to_string();
        match e.span() {
            // An empty span at the start: the document itself (a
            // top-level field missing), not the field written first.
            Some(span) if span == (0..0) => self.at(span, "", message),
            Some(span) => self.at(span.clone(), fields.named_at(&span), message),
            None => Diagnostic::file(self.origin, "", message),
        }
    }
}

/// Where one field of a document is written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// Dotted path: `limits.nice`, `baselines[1]`, `rule[0].check.path`.
    path: String,
    /// Span of its key (none for array elements).
    key: Option<Range<usize>>,
    /// Span of its value (for a `[section]`, the header).
    value: Range<usize>,
}

/// Every field of a TOML document with its spans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fields(Vec<Field>);

impl Fields {
    fn index(table: &Spanned<DeTable<'_>>) -> Fields {
        let mut out = Vec::new();
        index_table("", table.get_ref(), &mut out);
        Fields(out)
    }

    /// The field whose key, or else the narrowest field whose value,
    /// holds the start of `span`.
    fn named_at(&self, span: &Range<usize>) -> String {
        let at = span.start;
        let by_key = self
            .0
            .iter()
            .filter(|f| f.key.as_ref().is_some_and(|k| k.contains(&at)))
            .min_by_key(|f| f.key.as_ref().map_or(usize::MAX, ExactSizeIterator::len));
        let by_value = || {
            self.0
                .iter()
                .filter(|f| f.value.contains(&at) || f.value.start == at)
                .min_by_key(|f| f.value.len())
        };
        by_key
            .or_else(by_value)
            .map(|f| f.path.clone())
            .unwrap_or_default()
    }

    /// Where `path` is written: its value, or else its nearest written
    /// parent (`collector.ca` not written: the `[collector]` header).
    fn find(&self, path: &str) -> Option<&Field> {
        let mut p = path;
        loop {
            if let Some(f) = self.0.iter().find(|f| f.path == p) {
                return Some(f);
            }
            p = &p[..p.rfind(['.', '['])?];
        }
    }
}

fn index_table(prefix: &str, table: &DeTable<'_>, out: &mut Vec<Field>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push(Field {
            path: path.clone(),
            key: Some(key.span()),
            value: value.span(),
        });
        index_value(&path, value.get_ref(), out);
    }
}

fn index_value(path: &str, value: &DeValue<'_>, out: &mut Vec<Field>) {
    match value {
        DeValue::Table(t) => index_table(path, t, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                out.push(Field {
                    path: path.clone(),
                    key: None,
                    value: item.span(),
                });
                index_value(&path, item.get_ref(), out);
            }
        }
        _ => {}
    }
}

/// A parsed TOML file that remembers where each field is written: for a
/// config, whose fields name other files that are checked after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    origin: String,
    text: String,
    fields: Fields,
}

impl Document {
    /// Parses `text` into `T`. A malformed document, an unknown field or a
    /// value of the wrong type stops the parse: that one problem is the error.
    pub fn parse<T: DeserializeOwned>(
        text: String,
        origin: &str,
    ) -> Result<(T, Document), Diagnostic> {
        let source = Source::new(&text, origin);
        let table =
            DeTable::parse(&text).map_err(|e| source.toml_error_in(&e, &Fields::default()))?;
        let fields = Fields::index(&table);
        let value = T::deserialize(toml::de::Deserializer::from(table))
            .map_err(|e| source.toml_error_in(&e, &fields))?;
        Ok((
            value,
            Document {
                origin: origin.to_string(),
                text,
                fields,
            },
        ))
    }

    /// The file name given.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A problem with `field` (dotted: `collector.url`, `baselines[1]`),
    /// at its value as written; at its nearest written parent when it is
    /// not written itself; about the whole file when neither is.
    pub fn at(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        match self.fields.find(field) {
            Some(f) => Source::new(&self.text, &self.origin).at(f.value.clone(), field, message),
            None => Diagnostic::file(&self.origin, field, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        #[serde(default)]
        files: Vec<String>,
        #[serde(default)]
        limits: Option<Limits>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        nice: i32,
        #[serde(default)]
        other: Option<u8>,
    }

    const TEXT: &str = "files = [\"/a\", \"/é/b\"]\n\n[limits]\nnice = 40\n";

    #[test]
    fn fields_are_found_where_written() {
        let (_, doc) = Document::parse::<Cfg>(TEXT.into(), "c.toml").unwrap();
        assert_eq!(
            doc.at("limits.nice", "not in 0..=19").to_string(),
            "c.toml:4:8: limits.nice: not in 0..=19"
        );
        assert_eq!(
            doc.at("files[1]", "missing").to_string(),
            "c.toml:1:16: files[1]: missing"
        );
        // Not written: its section; nothing written at all: the file.
        assert_eq!(
            doc.at("limits.other", "x").to_string(),
            "c.toml:3:1: limits.other: x"
        );
        assert_eq!(doc.at("state_dir", "x").to_string(), "c.toml: state_dir: x");
    }

    #[test]
    fn parse_errors_name_line_column_and_field() {
        let e = Document::parse::<Cfg>(format!("{TEXT}nicety = 1\n"), "c.toml").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert_eq!(e.column, 1, "{e}");
        assert_eq!(e.field, "limits.nicety", "{e}");
        assert!(e.message.contains("unknown field `nicety`"), "{e}");

        let e = Document::parse::<Cfg>(TEXT.replace("40", "\"x\""), "c.toml").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (4, 8, "limits.nice"),
            "{e}"
        );

        // A top-level field missing: the file, not its first section.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            limits: Limits,
            tls: Limits,
        }
        let e = Document::parse::<Needs>("[limits]\nnice = 1\n".into(), "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:1:1: missing field `tls`");
        // One missing inside a section: that section.
        let e = Document::parse::<Needs>("[limits]\nother = 1\n[tls]\nnice = 1\n".into(), "c.toml")
            .unwrap_err();
        assert_eq!(e.field, "limits", "{e}");
        assert!(e.message.contains("missing field `nice`"), "{e}");

        // Not TOML at all: line and column, no field.
        let e = Document::parse::<Cfg>("files = [\n".into(), "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:"), "{e}");
        assert!(e.field.is_empty(), "{e}");
    }

    #[test]
    fn columns_count_characters() {
        let s = Source::new("a = \"é\"\nb = 1\n", "x");
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(8), (1, 8)); // the newline after "é" (2 bytes)
        assert_eq!(s.position(9), (2, 1));
        assert_eq!(s.position(1000), (3, 1));
        let lines = s.line_index();
        for offset in [0, 1, 7, 8, 9, 10, 11, 12, 1000] {
            assert_eq!(lines.line(offset), s.position(offset).0, "offset {offset}");
        }
    }
}
