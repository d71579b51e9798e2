//! Reading the campaign TOML: the schema, and validation with file/line/field/value errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Campaign, CampaignError, ListUnsubscribe, TemplateSource, DEFAULT_PRIORITY};
use crate::address::{EmailAddress, Mailbox};

/// The campaign file as written (the schema). See the module docs for an example.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    /// Campaign identifier, `[A-Za-z0-9._-]{1,64}` starting with a letter or digit; used in
    /// Message-IDs, the accounting log and state file names.
    id: Spanned<String>,
    /// The `From:` mailbox: `Name <addr>`, `"Quoted, Name" <addr>` or a bare address.
    from: Spanned<String>,
    /// The envelope sender (SMTP `MAIL FROM`, where bounces go); default: the From address.
    envelope_from: Option<Spanned<String>>,
    /// The `Reply-To:` mailbox, same forms as `from`.
    reply_to: Option<Spanned<String>>,
    /// The subject template (one line).
    subject: Spanned<String>,
    /// The text/plain body template, inline. Exclusive with `text_file`.
    text: Option<Spanned<String>>,
    /// The text/plain body template, read from a UTF-8 file relative to the campaign file.
    text_file: Option<Spanned<String>>,
    /// The text/html body template, inline. Exclusive with `html_file`. Values are HTML-escaped.
    html: Option<Spanned<String>>,
    /// The text/html body template, read from a UTF-8 file relative to the campaign file.
    html_file: Option<Spanned<String>>,
    /// The recipient list, `.csv` (with a header row) or `.jsonl`, relative to the campaign file.
    recipients: Spanned<String>,
    /// The recipient column holding the address; default `email`.
    email_column: Option<Spanned<String>>,
    /// Extra headers; names are RFC 5322 field names, values are templates.
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    /// `List-Unsubscribe` (RFC 2369) and one-click unsubscribe (RFC 8058).
    list_unsubscribe: Option<ListUnsubscribeFile>,
    /// The named pool of source IPs to send from (volley.toml `source_ips.pool`); default
    /// `default`.
    pool: Option<Spanned<String>>,
    /// The suppression list (scope) this campaign also honours, besides the global one: e.g.
    /// the newsletter's unsubscribes. Letters, digits, `.`, `_`, `-`.
    suppression_list: Option<Spanned<String>>,
    /// 0 (bulk) to 9 (most urgent), default 5: where campaigns sent together meet at a site,
    /// the higher priority sends first.
    priority: Option<Spanned<i64>>,
    /// VERP return paths (`bounces+<token>@<bounce domain>` as MAIL FROM): overrides volley.toml
    /// `[feedback] verp`. `true` needs a `[feedback]` table.
    verp: Option<bool>,
}

/// `[list_unsubscribe]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListUnsubscribeFile {
    /// Unsubscribe URL template; substituted values are percent-encoded. Must be `https://`
    /// for one-click (RFC 8058 §3.1).
    url: Option<Spanned<String>>,
    /// Unsubscribe mailbox (a plain address), sent as `<mailto:ADDR?subject=unsubscribe>`.
    mailto: Option<Spanned<String>>,
    /// Add `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058); default true when
    /// `url` is set or `volley` is true.
    one_click: Option<Spanned<bool>>,
    /// Use Volley's own endpoint: each message links to `<[feedback] unsubscribe_url>/<token>`
    /// and `mailto:unsubscribe+<token>@<bounce domain>`, the token signed per recipient.
    /// Exclusive with `url` and `mailto`; needs `[feedback]` with `unsubscribe_url`.
    volley: Option<Spanned<bool>>,
}

/// Header names a campaign may not set: Volley writes them itself (or, for `Return-Path`, the
/// receiving MTA does), or they would change who receives the message.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "reply-to",
    "return-path",
    "dkim-signature",
];

/// Parses and validates campaign TOML `text` read from `path`.
pub(super) fn from_toml(path: &Path, text: &str, template_dirs: &[PathBuf]) -> Result<Campaign, CampaignError> {
    let file: CampaignFile = toml::from_str(text).map_err(|e| {
        // A missing field's span is the whole table, which says nothing useful.
        let span = e.span().filter(|_| !e.message().starts_with("missing field"));
        let (line, column) = span.map(|s| line_column(text, s.start)).unzip();
        CampaignError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    Loader {
        path,
        text,
        template_dirs,
    }
    .validate(file)
}

/// Validation context: the campaign file's path and text (for line numbers), and the folders
/// body files may come from besides the campaign's own.
struct Loader<'a> {
    path: &'a Path,
    text: &'a str,
    template_dirs: &'a [PathBuf],
}

impl Loader<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        line_column(self.text, value.span().start).0
    }

    fn invalid(&self, field: &str, value: &Spanned<String>, reason: impl Into<String>) -> CampaignError {
        self.invalid_at(field, self.line(value), value.get_ref(), reason)
    }

    fn invalid_at(&self, field: &str, line: usize, value: &str, reason: impl Into<String>) -> CampaignError {
        CampaignError::Invalid {
            path: self.path.to_owned(),
            line: Some(line),
            field: field.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    fn resolve(&self, relative: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(relative),
            _ => PathBuf::from(relative),
        }
    }

    fn mailbox(&self, field: &str, value: &Spanned<String>) -> Result<Mailbox, CampaignError> {
        Mailbox::parse(value.get_ref()).map_err(|e| self.invalid(field, value, e.problem.to_string()))
    }

    fn validate(&self, f: CampaignFile) -> Result<Campaign, CampaignError> {
        let id = f.id.get_ref();
        if let Err(reason) = check_id(id) {
            return Err(self.invalid("id", &f.id, reason));
        }
        let from = self.mailbox("from", &f.from)?;
        let envelope_from = match &f.envelope_from {
            Some(v) => {
                EmailAddress::parse(v.get_ref()).map_err(|e| self.invalid("envelope_from", v, e.problem.to_string()))?
            }
            None => from.address.clone(),
        };
        let reply_to = f.reply_to.as_ref().map(|v| self.mailbox("reply_to", v)).transpose()?;
        let subject = self.header_template("subject", &f.subject)?;
        let text = self.body("text", f.text.as_ref(), f.text_file.as_ref())?;
        let html = self.body("html", f.html.as_ref(), f.html_file.as_ref())?;
        if text.is_none() && html.is_none() {
            return Err(CampaignError::Invalid {
                path: self.path.to_owned(),
                line: None,
                field: "text".to_owned(),
                value: String::new(),
                reason: "a body is required: set one of `text`, `text_file`, `html`, `html_file`".to_owned(),
            });
        }
        let recipients = f.recipients.get_ref();
        let extension = Path::new(recipients).extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("csv" | "jsonl")) {
            return Err(self.invalid("recipients", &f.recipients, "expected a .csv or .jsonl file"));
        }
        let email_column = match &f.email_column {
            Some(v) if v.get_ref().trim().is_empty() => {
                return Err(self.invalid("email_column", v, "must not be empty"))
            }
            Some(v) => v.get_ref().trim().to_owned(),
            None => "email".to_owned(),
        };
        let mut headers = Vec::with_capacity(f.headers.len());
        for (name, value) in &f.headers {
            let field = format!("headers.{name}");
            if let Err(reason) = check_header_name(name) {
                return Err(self.invalid_at("headers", self.line(value), name, reason));
            }
            headers.push((name.clone(), self.header_template(&field, value)?));
        }
        let list_unsubscribe = f
            .list_unsubscribe
            .as_ref()
            .map(|l| self.list_unsubscribe(l))
            .transpose()?;
        let pool = match &f.pool {
            Some(v) if v.get_ref().trim().is_empty() => return Err(self.invalid("pool", v, "must not be empty")),
            Some(v) => v.get_ref().trim().to_owned(),
            None => crate::config::DEFAULT_POOL.to_owned(),
        };
        let suppression_list = match &f.suppression_list {
            Some(v) if v.get_ref() == crate::suppression::GLOBAL || !crate::suppression::valid_scope(v.get_ref()) => {
                return Err(self.invalid(
                    "suppression_list",
                    v,
                    "use 1-64 letters, digits, '.', '_' or '-' (not `global`, which every campaign honours)",
                ))
            }
            Some(v) => Some(v.get_ref().to_owned()),
            None => None,
        };
        let priority = match &f.priority {
            Some(v) => match u8::try_from(*v.get_ref()) {
                Ok(p) if p <= 9 => p,
                _ => {
                    let (line, value) = (self.line(v), v.get_ref().to_string());
                    return Err(self.invalid_at("priority", line, &value, "must be 0 (bulk) to 9 (most urgent)"));
                }
            },
            None => DEFAULT_PRIORITY,
        };
        Ok(Campaign {
            pool,
            priority,
            suppression_list,
            list_unsubscribe,
            path: self.path.to_owned(),
            id: id.clone(),
            from,
            envelope_from,
            reply_to,
            subject,
            text,
            html,
            recipients: self.resolve(recipients),
            email_column,
            headers,
            verp: f.verp,
            spool: None,
            chunk_of: None,
        })
    }

    fn list_unsubscribe(&self, l: &ListUnsubscribeFile) -> Result<ListUnsubscribe, CampaignError> {
        let volley = l.volley.as_ref().filter(|v| *v.get_ref());
        if let Some(v) = volley {
            let own = [("list_unsubscribe.url", &l.url), ("list_unsubscribe.mailto", &l.mailto)];
            if let Some((field, Some(value))) = own.into_iter().find(|(_, value)| value.is_some()) {
                let reason = "`volley = true` makes the URL and the address itself; remove this field or `volley`";
                return Err(self.invalid(field, value, reason));
            }
            let one_click = l.one_click.as_ref().is_none_or(|f| *f.get_ref());
            return Ok(ListUnsubscribe {
                url: None,
                mailto: None,
                one_click,
                volley: Some(self.line(v)),
            });
        }
        let url = match &l.url {
            Some(v) => {
                let text = v.get_ref();
                let field = "list_unsubscribe.url";
                let scheme_ok = text.starts_with("https://") || text.starts_with("http://");
                if !scheme_ok || text.len() <= "https://".len() {
                    return Err(self.invalid(field, v, "expected an http(s):// URL"));
                }
                if let Some(c) = text
                    .chars()
                    .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
                {
                    return Err(self.invalid(field, v, format!("{c:?} cannot appear in a List-Unsubscribe URL")));
                }
                Some(self.inline(field, v))
            }
            None => None,
        };
        let mailto = match &l.mailto {
            Some(v) => Some(
                EmailAddress::parse(v.get_ref())
                    .map_err(|e| self.invalid("list_unsubscribe.mailto", v, e.problem.to_string()))?,
            ),
            None => None,
        };
        let one_click = match (&l.one_click, &url) {
            (Some(flag), _) => *flag.get_ref(),
            (None, Some(_)) => true,
            (None, None) => false,
        };
        let https = url.as_ref().is_some_and(|u| u.source.starts_with("https://"));
        if one_click && !https {
            let (field, line) = match &l.one_click {
                Some(flag) => (
                    "list_unsubscribe.one_click",
                    line_column(self.text, flag.span().start).0,
                ),
                None => ("list_unsubscribe.url", l.url.as_ref().map_or(0, |u| self.line(u))),
            };
            let value = l.url.as_ref().map_or(String::new(), |u| u.get_ref().clone());
            let reason = "one-click unsubscribe needs an https:// url (RFC 8058 §3.1); or set one_click = false";
            return Err(self.invalid_at(field, line, &value, reason));
        }
        if url.is_none() && mailto.is_none() {
            return Err(CampaignError::Invalid {
                path: self.path.to_owned(),
                line: None,
                field: "list_unsubscribe".to_owned(),
                value: String::new(),
                reason: "set `url`, `mailto` or both, or `volley = true` (Volley's own endpoint)".to_owned(),
            });
        }
        Ok(ListUnsubscribe {
            url,
            mailto,
            one_click,
            volley: None,
        })
    }

    /// A header value template: one line, no control characters except TAB.
    fn header_template(&self, field: &str, value: &Spanned<String>) -> Result<TemplateSource, CampaignError> {
        if let Some(c) = value.get_ref().chars().find(|&c| c.is_control() && c != '\t') {
            return Err(self.invalid(field, value, format!("control character {c:?} in a header value")));
        }
        Ok(self.inline(field, value))
    }

    fn inline(&self, field: &str, value: &Spanned<String>) -> TemplateSource {
        TemplateSource {
            field: field.to_owned(),
            file: self.path.to_owned(),
            line: Some(self.line(value)),
            source: value.get_ref().clone(),
        }
    }

    /// Whether body file `real` (canonical) is in the campaign file's folder or one of
    /// `template_dirs`, or below. Symbolic links are followed first, so a link cannot lead out.
    fn allowed(&self, real: &Path) -> bool {
        let own = self.resolve(".");
        std::iter::once(own.as_path())
            .chain(self.template_dirs.iter().map(PathBuf::as_path))
            .filter_map(|dir| dir.canonicalize().ok())
            .any(|dir| real.starts_with(dir))
    }

    /// `text`/`text_file` (or `html`/`html_file`): at most one, the file read now.
    fn body(
        &self,
        kind: &str,
        inline: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
    ) -> Result<Option<TemplateSource>, CampaignError> {
        let file_field = format!("{kind}_file");
        match (inline, file) {
            (Some(_), Some(f)) => Err(self.invalid(
                &file_field,
                f,
                format!("`{kind}` is also set; use either `{kind}` or `{file_field}`"),
            )),
            (Some(v), None) => Ok(Some(self.inline(kind, v))),
            (None, Some(f)) => {
                let resolved = self.resolve(f.get_ref());
                let unreadable = |source| CampaignError::BodyFile {
                    path: self.path.to_owned(),
                    line: self.line(f),
                    field: file_field.clone(),
                    value: f.get_ref().clone(),
                    file: resolved.clone(),
                    source: Box::new(source),
                };
                let real = resolved.canonicalize().map_err(|source| {
                    unreadable(volley_files::FileError::Io {
                        path: resolved.clone(),
                        source,
                    })
                })?;
                if !self.allowed(&real) {
                    let reason = format!(
                        "{} is outside the campaign's folder; list other folders in volley.toml `template_dirs`",
                        real.display()
                    );
                    return Err(self.invalid(&file_field, f, reason));
                }
                let source =
                    volley_files::read_config_file(&real, volley_files::TEMPLATE_MAX).map_err(|e| match e {
                        volley_files::FileError::NotUtf8 { at, .. } => {
                            self.invalid(&file_field, f, format!("not valid UTF-8 (byte {at})"))
                        }
                        other => unreadable(other),
                    })?;
                Ok(Some(TemplateSource {
                    field: file_field,
                    file: resolved,
                    line: None,
                    source,
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// `[A-Za-z0-9._-]{1,64}`, starting with a letter or digit, no `..`, not ending with `.`
/// (the id is a dot-atom inside Message-IDs and part of file names).
pub(crate) fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    if id.contains("..") || id.ends_with('.') {
        return Err("must not contain '..' or end with '.'");
    }
    Ok(())
}

/// RFC 5322 §2.2 field name: 1*ftext (printable US-ASCII except ':'), kept short enough to fold.
fn check_header_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 76 {
        return Err("header names must be 1 to 76 characters");
    }
    if !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err("header names are printable ASCII without spaces or ':' (RFC 5322 §2.2)");
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("list-unsubscribe") {
        return Err("set List-Unsubscribe with the [list_unsubscribe] table (url, mailto, one_click)");
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("content-") {
        return Err("this header is set by Volley and cannot be overridden");
    }
    Ok(())
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["spring-2026", "a", "v1.2_b", &"x".repeat(64)] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".hidden", "..", "a..b", "a.", "sp ace", "é", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names() {
        assert_eq!(check_header_name("X-Campaign-Id"), Ok(()));
        assert!(check_header_name("List-Unsubscribe").is_err_and(|e| e.contains("[list_unsubscribe]")));
        for bad in ["", "X Tag", "X:Tag", "Subject", "content-type", "Message-Id", "X-é"] {
            assert!(check_header_name(bad).is_err(), "{bad}");
        }
    }
}
