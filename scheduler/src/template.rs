//! `{{ column }}` templates, parsed once per campaign and rendered once per recipient.
//!
//! Syntax: `{{ name }}` (whitespace inside the braces is ignored) is replaced by the value of the
//! recipient column `name`. Everything else is literal text, including a lone `{` or `}` and a
//! `}}` with no opening. An unclosed `{{`, an empty `{{ }}` and a name that is not a column are
//! errors at parse time, so rendering cannot fail.
//!
//! A template made for an HTML body ([`Template::html_escaped`]) escapes `& < > " '` in the
//! substituted values (never in the literal text): a recipient list must not be able to inject
//! markup or links into the message.

use std::fmt;

/// A template refused by [`Template::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{ name }}` where `name` is not one of the recipient columns.
    #[error("template `{field}`: unknown placeholder {{{{{placeholder}}}}} at line {line}, column {column}; available columns: {}", .available.join(", "))]
    UnknownColumn {
        /// The template field, e.g. `subject`.
        field: String,
        /// The name inside the braces, trimmed.
        placeholder: String,
        /// 1-based line of the `{{` within the template text.
        line: usize,
        /// 1-based column (in characters) of the `{{`.
        column: usize,
        /// The recipient columns that could have been used.
        available: Vec<String>,
    },
    /// `{{` with no matching `}}`.
    #[error("template `{field}`: unclosed {{{{ at line {line}, column {column}")]
    Unclosed {
        /// The template field, e.g. `subject`.
        field: String,
        /// 1-based line of the `{{`.
        line: usize,
        /// 1-based column (in characters) of the `{{`.
        column: usize,
    },
    /// `{{}}` or `{{   }}`.
    #[error("template `{field}`: empty placeholder at line {line}, column {column}")]
    EmptyPlaceholder {
        /// The template field, e.g. `subject`.
        field: String,
        /// 1-based line of the `{{`.
        line: usize,
        /// 1-based column (in characters) of the `{{`.
        column: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Column(usize),
}

/// How substituted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Html,
    Url,
}

/// A parsed template: literal text interleaved with column references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    literal_len: usize,
    escape: Escape,
}

impl Template {
    /// Parses `source`; `field` names the template in errors (`subject`, `text`, a header name)
    /// and `columns` are the recipient columns placeholders may name (case-sensitive).
    pub fn parse(field: &str, source: &str, columns: &[String]) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            literal.push_str(&rest[..open]);
            let offset = source.len() - rest.len() + open;
            let (line, column) = line_column(source, offset);
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
                field: field.to_owned(),
                line,
                column,
            })?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(TemplateError::EmptyPlaceholder {
                    field: field.to_owned(),
                    line,
                    column,
                });
            }
            let index = columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| TemplateError::UnknownColumn {
                    field: field.to_owned(),
                    placeholder: name.to_owned(),
                    line,
                    column,
                    available: columns.to_vec(),
                })?;
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Column(index));
            rest = &after[close + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.len(),
                Segment::Column(_) => 0,
            })
            .sum();
        Ok(Template {
            segments,
            literal_len,
            escape: Escape::None,
        })
    }

    /// Returns this template with HTML escaping of substituted values (for `text/html` parts).
    pub fn html_escaped(mut self) -> Template {
        self.escape = Escape::Html;
        self
    }

    /// The same template with substituted values percent-encoded (RFC 3986 §2.1; everything
    /// but unreserved characters), for URLs: a value can neither end the URL nor add to its
    /// scheme, host or path structure.
    pub fn url_escaped(mut self) -> Template {
        self.escape = Escape::Url;
        self
    }

    /// Appends the rendering to `out`. `values` holds one value per column, in column order;
    /// a column index past the end renders as the empty string.
    pub fn render_into<S: AsRef<str>>(&self, values: &[S], out: &mut String) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Column(index) => {
                    let value = values.get(*index).map_or("", AsRef::as_ref);
                    match self.escape {
                        Escape::None => out.push_str(value),
                        Escape::Html => push_html_escaped(value, out),
                        Escape::Url => push_percent_encoded(value, out),
                    }
                }
            }
        }
    }

    /// Renders into a new string; see [`Template::render_into`].
    pub fn render<S: AsRef<str>>(&self, values: &[S]) -> String {
        let mut out = String::with_capacity(self.literal_len + 16 * self.segments.len());
        self.render_into(values, &mut out);
        out
    }

    /// The column indices this template reads, in order of appearance (repeats included).
    pub fn columns_used(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Column(index) => Some(*index),
            Segment::Literal(_) => None,
        })
    }

    /// True when the template has no placeholder (renders the same for every recipient).
    pub fn is_static(&self) -> bool {
        self.columns_used().next().is_none()
    }

    /// Octets of literal text, a lower bound of any rendering's length.
    pub fn literal_len(&self) -> usize {
        self.literal_len
    }
}

impl fmt::Display for Template {
    /// Writes the template back with `{{#index}}` for placeholders (diagnostics only).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => f.write_str(text)?,
                Segment::Column(index) => write!(f, "{{{{#{index}}}}}")?,
            }
        }
        Ok(())
    }
}

/// Appends `value` escaped for HTML text and attribute values (`&<>"'`).
pub fn push_html_escaped(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn push_percent_encoded(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// 1-based line and character column of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        ["email", "first_name", "city"].map(String::from).to_vec()
    }

    #[test]
    fn renders_placeholders_and_literal_braces() {
        let t = Template::parse("subject", "Hi {{first_name}}, {{ city }}! {x} }} {", &cols()).unwrap();
        assert_eq!(t.render(&["a@b.c", "Ann", "Oslo"]), "Hi Ann, Oslo! {x} }} {");
        assert_eq!(t.columns_used().collect::<Vec<_>>(), [1, 2]);
        assert!(!t.is_static());
        let mut out = String::from(">");
        t.render_into(&[String::from("a@b.c")], &mut out);
        assert_eq!(out, ">Hi , ! {x} }} {");
    }

    #[test]
    fn static_template() {
        let t = Template::parse("subject", "Hello", &cols()).unwrap();
        assert!(t.is_static());
        assert_eq!(t.render::<&str>(&[]), "Hello");
        assert!(Template::parse("text", "", &cols()).unwrap().is_static());
    }

    #[test]
    fn html_escaping_applies_to_values_only() {
        let t = Template::parse("html", "<p>{{first_name}}</p>", &cols())
            .unwrap()
            .html_escaped();
        assert_eq!(
            t.render(&["", "<b>Tom & 'Jerry'</b>"]),
            "<p>&lt;b&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;</p>"
        );
        let url = Template::parse("list_unsubscribe.url", "https://s.test/u?t={{first_name}}", &cols())
            .expect("template")
            .url_escaped();
        assert_eq!(
            url.render(&["", "a b>\r\n\u{e9}&x=1"]),
            "https://s.test/u?t=a%20b%3E%0D%0A%C3%A9%26x%3D1"
        );
    }

    #[test]
    fn unknown_placeholder_names_field_and_columns() {
        let e = Template::parse("subject", "Hi\n  {{ frist_name }}", &cols()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template `subject`: unknown placeholder {{frist_name}} at line 2, column 3; available columns: email, first_name, city"
        );
    }

    #[test]
    fn unclosed_and_empty() {
        let e = Template::parse("text", "Hi {{first_name", &cols()).unwrap_err();
        assert_eq!(
            e,
            TemplateError::Unclosed {
                field: "text".into(),
                line: 1,
                column: 4
            }
        );
        let e = Template::parse("text", "é {{ }}", &cols()).unwrap_err();
        assert_eq!(
            e,
            TemplateError::EmptyPlaceholder {
                field: "text".into(),
                line: 1,
                column: 3
            }
        );
    }
}
