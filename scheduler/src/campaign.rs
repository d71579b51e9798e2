//! The campaign definition (TOML), validated at load, compiled against the recipient columns.
//!
//! ```toml
//! id = "spring-2026"
//! from = "Volley News <news@sender.test>"
//! envelope_from = "bounces@sender.test"   # optional, default: the From address
//! reply_to = "help@sender.test"           # optional
//! subject = "Hello {{first_name}}"
//! text_file = "body.txt"                  # or text = "...", and/or html / html_file
//! recipients = "recipients.csv"           # .csv or .jsonl, relative to this file
//! email_column = "email"                  # optional, default "email"
//! [headers]                               # optional; values are templates
//! "X-Campaign-Id" = "spring"
//! ```
//!
//! Two stages: [`Campaign::load`] checks everything that does not depend on the recipient file
//! (and reads the body files); [`Campaign::compile`] parses the templates against the recipient
//! columns. Every error names the file, the line when known, the field and the value.

use std::path::{Path, PathBuf};

use crate::address::{EmailAddress, Mailbox};
use crate::template::{Template, TemplateError};

mod load;
pub(crate) use load::check_id;

/// A campaign file that could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The campaign file could not be read.
    #[error("{}: cannot read campaign file: {source}", .path.display())]
    Read {
        /// The campaign file.
        path: PathBuf,
        /// Why: the OS error, not a regular file, or over the size cap.
        source: volley_files::FileError,
    },
    /// TOML syntax error, unknown field, missing required field or wrong type.
    #[error("{}: {message}", location(.path, *.line, *.column))]
    Syntax {
        /// The campaign file.
        path: PathBuf,
        /// 1-based line, when the parser reported a position.
        line: Option<usize>,
        /// 1-based column, when the parser reported a position.
        column: Option<usize>,
        /// The parser's message (it names the field).
        message: String,
    },
    /// A field has a value that is not acceptable.
    #[error("{}: field `{field}` = {value:?}: {reason}", location(.path, *.line, None))]
    Invalid {
        /// The campaign file.
        path: PathBuf,
        /// 1-based line of the value, when known.
        line: Option<usize>,
        /// The field, e.g. `from` or `headers.X-Tag`.
        field: String,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A `text_file`/`html_file` could not be read.
    #[error("{}: field `{field}` = {value:?}: cannot read {}: {source}", location(.path, Some(*.line), None), .file.display())]
    BodyFile {
        /// The campaign file.
        path: PathBuf,
        /// 1-based line of the field.
        line: usize,
        /// `text_file` or `html_file`.
        field: String,
        /// The value as written.
        value: String,
        /// The resolved path that failed.
        file: PathBuf,
        /// Why: the OS error, not a regular file, or over the size cap.
        source: Box<volley_files::FileError>,
    },
    /// A template does not parse against the recipient columns.
    #[error("{}: {source}", location(.file, *.line, None))]
    Template {
        /// The file holding the template: the campaign file or a body file.
        file: PathBuf,
        /// Line of the template's value in the campaign file (`None` for body files, whose
        /// template positions are already file positions).
        line: Option<usize>,
        /// The template error (names the field, the placeholder and the available columns).
        source: Box<TemplateError>,
    },
}

fn location(path: &Path, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

/// The text of a template and where it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// The campaign field it came from: `subject`, `text`, `text_file`, `headers.X-Tag`…
    pub field: String,
    /// The file holding the text: the campaign file, or the `text_file`/`html_file`.
    pub file: PathBuf,
    /// Line of the value in the campaign file; `None` when the text is a whole body file.
    pub line: Option<usize>,
    /// The template text.
    pub source: String,
}

impl TemplateSource {
    fn compile(&self, columns: &[String]) -> Result<Template, CampaignError> {
        Template::parse(&self.field, &self.source, columns).map_err(|source| CampaignError::Template {
            file: self.file.clone(),
            line: self.line,
            source: Box::new(source),
        })
    }
}

/// A validated campaign: addresses parsed, body files read, paths resolved.
#[derive(Debug, Clone)]
pub struct Campaign {
    path: PathBuf,
    id: String,
    from: Mailbox,
    envelope_from: EmailAddress,
    reply_to: Option<Mailbox>,
    subject: TemplateSource,
    text: Option<TemplateSource>,
    html: Option<TemplateSource>,
    recipients: PathBuf,
    email_column: String,
    headers: Vec<(String, TemplateSource)>,
    list_unsubscribe: Option<ListUnsubscribe>,
    pool: String,
    priority: u8,
    suppression_list: Option<String>,
    verp: Option<bool>,
    /// An injection campaign: its messages are spooled, not rendered.
    spool: Option<std::sync::Arc<crate::spool::Stream>>,
    /// A chunk of a cluster campaign: the campaign it is part of.
    chunk_of: Option<ChunkOf>,
}

/// The cluster campaign a chunk campaign is part of: feedback (VERP and unsubscribe tokens)
/// names that campaign and the recipient's line in its file, so that a bounce, complaint or
/// unsubscribe finds the recipient in the node's cluster log whichever chunk sent it.
#[derive(Debug, Clone)]
pub struct ChunkOf {
    /// The cluster campaign's id.
    pub campaign: String,
    /// The original line of each of the chunk's lines (local line `k` is `lines[k - 1]`).
    pub lines: std::sync::Arc<Vec<u64>>,
    /// Local lines not to send: their recipients had a final outcome (recorded in the cluster
    /// campaign's state) when the chunk started.
    pub skip: Vec<u64>,
    /// The chunk's rows (a cluster node's, from the stream entry), read from memory; the
    /// campaign's `recipients` then only names them. `None`: read from that file.
    pub rows: Option<std::sync::Arc<crate::recipients::MemoryRows>>,
}

/// What feedback tokens name for each recipient line: the campaign id and the line, mapped
/// to the cluster campaign and its original line for a chunk.
#[derive(Debug, Clone)]
pub struct FeedbackIds {
    campaign: String,
    lines: Option<std::sync::Arc<Vec<u64>>>,
}

impl FeedbackIds {
    /// The campaign id tokens carry.
    pub fn campaign(&self) -> &str {
        &self.campaign
    }

    /// The campaign id and line a token for local line `line` carries.
    pub fn of(&self, line: u64) -> (&str, u64) {
        let original = self.lines.as_ref().and_then(|lines| {
            line.checked_sub(1)
                .and_then(|i| lines.get(usize::try_from(i).ok()?))
                .copied()
        });
        (&self.campaign, original.unwrap_or(line))
    }
}

/// How an injection campaign sends (`[injection]` in volley.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedSettings {
    /// The pool of source IPs.
    pub pool: String,
    /// Its priority where it meets campaigns at a site.
    pub priority: u8,
    /// The suppression list honoured besides `global`.
    pub suppression_list: Option<String>,
    /// VERP return paths (`None`: as `[feedback]` says); without, the client's envelope sender.
    pub verp: Option<bool>,
}

/// The priority of a campaign that names none.
pub const DEFAULT_PRIORITY: u8 = 5;

/// `List-Unsubscribe` (RFC 2369) with optional one-click (RFC 8058).
#[derive(Debug, Clone)]
pub struct ListUnsubscribe {
    /// The unsubscribe URL template (values percent-encoded when rendered).
    pub url: Option<TemplateSource>,
    /// The unsubscribe mailbox.
    pub mailto: Option<EmailAddress>,
    /// Whether to add `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub one_click: bool,
    /// `volley = true` (Volley's own endpoint and address, a token per message): the line of
    /// the setting in the campaign file, for errors about it.
    pub volley: Option<usize>,
}

/// [`ListUnsubscribe`] with its URL template compiled.
#[derive(Debug, Clone)]
pub struct CompiledListUnsubscribe {
    /// The URL template (percent-encodes values).
    pub url: Option<Template>,
    /// The unsubscribe mailbox.
    pub mailto: Option<EmailAddress>,
    /// Whether to add `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub one_click: bool,
    /// Volley's own endpoint and address, with a token per message.
    pub volley: bool,
}

impl Campaign {
    /// Reads and validates the campaign file at `path` (and its body files, which must be in
    /// the campaign file's folder or below).
    pub fn load(path: &Path) -> Result<Campaign, CampaignError> {
        Campaign::load_with(path, &[])
    }

    /// [`Campaign::load`], also allowing body files under the folders `template_dirs`
    /// (volley.toml `template_dirs`).
    pub fn load_with(path: &Path, template_dirs: &[PathBuf]) -> Result<Campaign, CampaignError> {
        // Inline `text`/`html` bodies make a campaign file as large as a body file.
        let text =
            volley_files::read_config_file(path, volley_files::TEMPLATE_MAX).map_err(|source| CampaignError::Read {
                path: path.to_owned(),
                source,
            })?;
        Campaign::from_toml_with(path, &text, template_dirs)
    }

    /// Validates campaign TOML `text` as if read from `path` (relative paths resolve against
    /// `path`'s directory; body files are read, and must be in that directory or below).
    pub fn from_toml(path: &Path, text: &str) -> Result<Campaign, CampaignError> {
        Campaign::from_toml_with(path, text, &[])
    }

    /// [`Campaign::from_toml`], also allowing body files under the folders `template_dirs`.
    pub fn from_toml_with(path: &Path, text: &str, template_dirs: &[PathBuf]) -> Result<Campaign, CampaignError> {
        load::from_toml(path, text, template_dirs)
    }

    /// Parses every template against the recipient file's `columns`.
    pub fn compile(&self, columns: &[String]) -> Result<CompiledCampaign, CampaignError> {
        let subject = self.subject.compile(columns)?;
        let text = self.text.as_ref().map(|t| t.compile(columns)).transpose()?;
        let html = self.html.as_ref().map(|t| t.compile(columns)).transpose()?;
        let headers = self
            .headers
            .iter()
            .map(|(name, src)| Ok((name.clone(), src.compile(columns)?)))
            .collect::<Result<_, CampaignError>>()?;
        let list_unsubscribe = match &self.list_unsubscribe {
            Some(l) => Some(CompiledListUnsubscribe {
                url: l
                    .url
                    .as_ref()
                    .map(|u| u.compile(columns))
                    .transpose()?
                    .map(Template::url_escaped),
                mailto: l.mailto.clone(),
                one_click: l.one_click,
                volley: l.volley.is_some(),
            }),
            None => None,
        };
        Ok(CompiledCampaign {
            list_unsubscribe,
            campaign: self.clone(),
            columns: columns.to_vec(),
            subject,
            text,
            html: html.map(Template::html_escaped),
            headers,
        })
    }

    /// The injection campaign of spool stream `stream`: its messages were injected (SMTP
    /// submission, HTTP) and go out as they are, with their own envelope senders (unless
    /// VERP) and DKIM-signed for their own From domains.
    pub fn injected(stream: std::sync::Arc<crate::spool::Stream>, settings: &InjectedSettings) -> Campaign {
        let path = stream.dir().to_path_buf();
        // Never used for sending: each message has its own sender and From.
        let address = match EmailAddress::parse("postmaster@injected.invalid") {
            Ok(a) => a,
            Err(e) => unreachable!("a constant valid address: {e}"),
        };
        let source = |field: &str| TemplateSource {
            field: field.to_owned(),
            file: path.clone(),
            line: None,
            source: String::new(),
        };
        Campaign {
            id: stream.name().to_owned(),
            from: Mailbox {
                name: None,
                address: address.clone(),
            },
            envelope_from: address,
            reply_to: None,
            subject: source("subject"),
            text: None,
            html: None,
            recipients: path.clone(),
            email_column: crate::recipients::spooled::SPOOL_COLUMNS[0].to_owned(),
            headers: Vec::new(),
            list_unsubscribe: None,
            pool: settings.pool.clone(),
            priority: settings.priority,
            suppression_list: settings.suppression_list.clone(),
            verp: settings.verp,
            spool: Some(stream),
            chunk_of: None,
            path,
        }
    }

    /// Makes this campaign a chunk of cluster campaign `chunk_of`.
    pub fn set_chunk_of(&mut self, chunk_of: ChunkOf) {
        self.chunk_of = Some(chunk_of);
    }

    /// Whether this is a chunk of a cluster campaign.
    pub fn is_chunk(&self) -> bool {
        self.chunk_of.is_some()
    }

    /// The cluster campaign this is a chunk of, if it is one.
    pub fn chunk_of_campaign(&self) -> Option<&str> {
        self.chunk_of.as_ref().map(|c| c.campaign.as_str())
    }

    /// The local lines a chunk campaign skips (see [`ChunkOf::skip`]); none for others.
    pub fn chunk_skip(&self) -> &[u64] {
        self.chunk_of.as_ref().map_or(&[], |c| c.skip.as_slice())
    }

    /// The rows of a chunk campaign held in memory (see [`ChunkOf::rows`]).
    pub fn chunk_rows(&self) -> Option<&std::sync::Arc<crate::recipients::MemoryRows>> {
        self.chunk_of.as_ref().and_then(|c| c.rows.as_ref())
    }

    /// What feedback tokens name: the cluster campaign and original lines for a chunk, else
    /// this campaign and its lines.
    pub fn feedback_ids(&self) -> FeedbackIds {
        match &self.chunk_of {
            Some(c) => FeedbackIds {
                campaign: c.campaign.clone(),
                lines: Some(c.lines.clone()),
            },
            None => FeedbackIds {
                campaign: self.id.clone(),
                lines: None,
            },
        }
    }

    /// The spool stream of an injection campaign.
    pub fn spool(&self) -> Option<&std::sync::Arc<crate::spool::Stream>> {
        self.spool.as_ref()
    }

    /// The campaign file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The campaign identifier.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Whether this campaign asks for VERP return paths (`None`: as volley.toml says).
    pub fn verp(&self) -> Option<bool> {
        self.verp
    }
    /// 0 (bulk) to 9 (most urgent): where campaigns sent together meet at a site, the higher
    /// sends first.
    pub fn priority(&self) -> u8 {
        self.priority
    }
    /// The suppression list (scope) honoured besides `global`, if any.
    pub fn suppression_list(&self) -> Option<&str> {
        self.suppression_list.as_deref()
    }
    /// The named pool of source IPs the campaign sends from.
    pub fn pool(&self) -> &str {
        &self.pool
    }
    /// The `From:` mailbox.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }
    /// The envelope sender (`MAIL FROM`).
    pub fn envelope_from(&self) -> &EmailAddress {
        &self.envelope_from
    }
    /// The `Reply-To:` mailbox, if any.
    pub fn reply_to(&self) -> Option<&Mailbox> {
        self.reply_to.as_ref()
    }
    /// The subject template text.
    pub fn subject(&self) -> &TemplateSource {
        &self.subject
    }
    /// The text/plain body template text, if any.
    pub fn text(&self) -> Option<&TemplateSource> {
        self.text.as_ref()
    }
    /// The text/html body template text, if any.
    pub fn html(&self) -> Option<&TemplateSource> {
        self.html.as_ref()
    }
    /// The recipient file, resolved against the campaign file's directory.
    pub fn recipients(&self) -> &Path {
        &self.recipients
    }
    /// The recipient column holding the address.
    pub fn email_column(&self) -> &str {
        &self.email_column
    }
    /// Custom headers (name, value template), in name order.
    pub fn headers(&self) -> &[(String, TemplateSource)] {
        &self.headers
    }
    /// The `List-Unsubscribe` settings, if any.
    pub fn list_unsubscribe(&self) -> Option<&ListUnsubscribe> {
        self.list_unsubscribe.as_ref()
    }
}

/// A campaign whose templates are parsed against a recipient file's columns.
#[derive(Debug, Clone)]
pub struct CompiledCampaign {
    campaign: Campaign,
    columns: Vec<String>,
    subject: Template,
    text: Option<Template>,
    html: Option<Template>,
    headers: Vec<(String, Template)>,
    list_unsubscribe: Option<CompiledListUnsubscribe>,
}

impl CompiledCampaign {
    /// The compiled `List-Unsubscribe` settings, if any.
    pub fn list_unsubscribe(&self) -> Option<&CompiledListUnsubscribe> {
        self.list_unsubscribe.as_ref()
    }
    /// The validated campaign.
    pub fn campaign(&self) -> &Campaign {
        &self.campaign
    }
    /// The recipient columns the templates were compiled against.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
    /// The subject template.
    pub fn subject(&self) -> &Template {
        &self.subject
    }
    /// The text/plain body template.
    pub fn text(&self) -> Option<&Template> {
        self.text.as_ref()
    }
    /// The text/html body template (values HTML-escaped).
    pub fn html(&self) -> Option<&Template> {
        self.html.as_ref()
    }
    /// Custom headers (name, value template), in name order.
    pub fn headers(&self) -> &[(String, Template)] {
        &self.headers
    }
}
