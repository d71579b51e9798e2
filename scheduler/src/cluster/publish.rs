//! Publishing a campaign: its definition (bodies inline, so nodes need no files) and its
//! recipients in chunks, read once from the file and deduplicated. At most `max_outstanding`
//! chunks wait unacknowledged; the publisher sleeps above that. A publisher stopped part-way
//! resumes after the last line it published (the definition must be unchanged). It adds the
//! campaign to the registry (`volley serve` nodes work it), publishes on while the campaign is
//! paused (back-pressure bounds what waits) and stops when it is cancelled.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::chunk::Rows;
use super::shared_rows::SharedRows;
use super::{io_err, CampaignState, ClusterConfig, ClusterError, Keys, Registry, Store};
use crate::campaign::{Campaign, CampaignError};
use crate::recipients::{Deduplicator, RecipientReader, Row};
use crate::rejects::RejectsWriter;

/// How long the publisher waits between looks at the outstanding chunks.
const BACK_PRESSURE_POLL: Duration = Duration::from_millis(100);

/// Longest campaign id in cluster mode: chunk campaigns are `<id>.c<n>` (64 at most).
const MAX_ID: usize = 52;

/// What a publisher did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Published {
    /// The campaign id.
    pub campaign: String,
    /// Chunks added by this run.
    pub chunks: u64,
    /// Recipients added by this run.
    pub rows: u64,
    /// Rows of the file refused (bad address, bad row), over the whole file.
    pub rejected: u64,
    /// Repeated addresses left out, over the whole file.
    pub duplicates: u64,
    /// The last line an earlier run had published (0: a new campaign).
    pub resumed_after: u64,
    /// False when stopped before the end of the file (rerun to continue).
    pub complete: bool,
    /// The refused rows, one JSON line each (`file`, `line`, `field`, `value`, `reason`),
    /// rewritten by every run of the publisher (each reads the whole file).
    pub rejects_file: std::path::PathBuf,
    /// The campaign was cancelled (from any node): the publisher stopped.
    pub cancelled: bool,
}

/// Where a published campaign's definition comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A campaign file.
    File(std::path::PathBuf),
    /// A campaign's TOML text (an API request); relative paths in it resolve against the
    /// directory of `path`, which names it in errors.
    Inline {
        /// The name it goes by (its directory resolves relative paths).
        path: std::path::PathBuf,
        /// The campaign TOML.
        toml: String,
    },
}

impl Source {
    /// The campaign and its TOML text.
    pub fn load(&self, template_dirs: &[std::path::PathBuf]) -> Result<(Campaign, String), CampaignError> {
        match self {
            Source::File(path) => {
                let campaign = Campaign::load_with(path, template_dirs)?;
                let text = volley_files::read_config_file(path, volley_files::TEMPLATE_MAX).map_err(|source| {
                    CampaignError::Read {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                Ok((campaign, text))
            }
            Source::Inline { path, toml } => Ok((Campaign::from_toml_with(path, toml, template_dirs)?, toml.clone())),
        }
    }
}

/// The campaign TOML as stored in Redis: `text_file`/`html_file` replaced by their text,
/// `recipients` removed (each node names its chunk file).
pub fn definition(campaign: &Campaign) -> Result<String, CampaignError> {
    let path = campaign.path();
    let text =
        volley_files::read_config_file(path, volley_files::TEMPLATE_MAX).map_err(|source| CampaignError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    definition_of(campaign, &text)
}

/// [`definition`] from the campaign's TOML `text`.
pub fn definition_of(campaign: &Campaign, text: &str) -> Result<String, CampaignError> {
    let path = campaign.path();
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| CampaignError::Syntax {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message: e.to_string(),
    })?;
    for field in ["text_file", "html_file", "recipients"] {
        doc.remove(field);
    }
    if let Some(text) = campaign.text() {
        doc["text"] = toml_edit::value(text.source.as_str());
    }
    if let Some(html) = campaign.html() {
        doc["html"] = toml_edit::value(html.source.as_str());
    }
    Ok(doc.to_string())
}

/// Publishes the campaign at `path` (loaded with `template_dirs`) for the nodes of
/// `cluster`; refused rows go to `<state_dir>/cluster/<id>/rejects.jsonl`. Stops early
/// (resumable) when `stop` is set.
pub fn publish(
    path: &Path,
    template_dirs: &[std::path::PathBuf],
    state_dir: &Path,
    cluster: &ClusterConfig,
    stop: &AtomicBool,
) -> Result<Published, ClusterError> {
    let source = Source::File(path.to_path_buf());
    publish_with(&source, template_dirs, state_dir, cluster, stop, |_| {})
}

/// [`publish`], calling `defined` with the campaign id once its definition is stored (the
/// checks that refuse a campaign are behind; what follows is publishing its chunks).
pub fn publish_with(
    source: &Source,
    template_dirs: &[std::path::PathBuf],
    state_dir: &Path,
    cluster: &ClusterConfig,
    stop: &AtomicBool,
    defined: impl FnOnce(&str),
) -> Result<Published, ClusterError> {
    let (campaign, text) = source.load(template_dirs)?;
    if campaign.id().len() > MAX_ID {
        return Err(CampaignError::Invalid {
            path: campaign.path().to_path_buf(),
            line: None,
            field: "id".into(),
            value: campaign.id().into(),
            reason: format!("a cluster campaign id has at most {MAX_ID} characters (chunks are `<id>.c<n>`)"),
        }
        .into());
    }
    let mut reader = RecipientReader::open(campaign.recipients(), campaign.email_column())?;
    // The templates must compile against the file's columns before anything is published.
    campaign.compile(reader.columns())?;
    let toml = definition_of(&campaign, &text)?;
    let keys = Keys::new(campaign.id());
    let store = Store::for_campaign(&cluster.redis, &keys)?;
    let through = store.define(campaign.id(), &keys, &toml, reader.columns())?;
    if store.state(&keys)? == CampaignState::Cancelled {
        return Err(ClusterError::Cancelled(campaign.id().to_owned()));
    }
    Registry::open(&cluster.redis)?.add(campaign.id())?;
    defined(campaign.id());
    let dir = state_dir.join("cluster").join(campaign.id());
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let rejects_file = dir.join("rejects.jsonl");
    let mut rejects = RejectsWriter::create(&rejects_file, campaign.recipients()).map_err(io_err(&rejects_file))?;
    let mut out = Published {
        campaign: campaign.id().to_owned(),
        resumed_after: through,
        rejects_file: rejects_file.clone(),
        ..Published::default()
    };
    let mut dedup = Deduplicator::new();
    // A file inside the shared directory is published as byte ranges of it (see `shared_rows`).
    let shared = match &cluster.shared_dir {
        Some(dir) => super::shared_rows::relative_name(dir, campaign.recipients())?,
        None => None,
    };
    let empty_chunk = || Rows {
        shared: shared.as_ref().map(|file| SharedRows {
            file: file.clone(),
            email: campaign.email_column().to_owned(),
            ..SharedRows::default()
        }),
        ..Rows::default()
    };
    let mut chunk = empty_chunk();
    // The chunk is published once the row after its last is read: where that row starts is
    // where the chunk's bytes end (at the end of the file, the file's length).
    let flush = |chunk: &mut Rows, end: u64, out: &mut Published| -> Result<bool, ClusterError> {
        loop {
            let (outstanding, state) = store.backlog(&keys)?;
            if state == CampaignState::Cancelled {
                out.cancelled = true;
                return Ok(false);
            }
            if outstanding < cluster.max_outstanding as i64 {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            std::thread::sleep(BACK_PRESSURE_POLL);
        }
        let Some(&last) = chunk.lines.last() else {
            return Ok(true);
        };
        if let Some(shared) = &mut chunk.shared {
            let start = shared.offsets.first().copied().unwrap_or(end);
            shared.end = end;
            shared.sha256 = super::shared_rows::digest(campaign.recipients(), start, end)?;
        }
        let json = serde_json::to_string(&*chunk).map_err(|e| ClusterError::BadData {
            key: keys.chunks.clone(),
            reason: e.to_string(),
        })?;
        store.add_chunk(&keys, &json, last, chunk.lines.len())?;
        out.chunks += 1;
        out.rows += chunk.lines.len() as u64;
        *chunk = empty_chunk();
        Ok(true)
    };
    let mut full = false;
    while let Some(row) = reader.next_row() {
        let row = row?;
        if std::mem::take(&mut full) && !flush(&mut chunk, reader.last_offset(), &mut out)? {
            rejects.finish().map_err(io_err(&rejects_file))?;
            return Ok(out);
        }
        match row {
            Row::Rejected(row) => {
                rejects.write(&row).map_err(io_err(&rejects_file))?;
                out.rejected += 1;
            }
            Row::Recipient(r) => {
                if !dedup.first_time(&r.email) {
                    out.duplicates += 1;
                } else if r.line > through {
                    chunk.lines.push(r.line);
                    match &mut chunk.shared {
                        Some(shared) => shared.offsets.push(r.offset),
                        None => chunk.values.push(r.values),
                    }
                    full = chunk.lines.len() >= cluster.chunk_size;
                }
            }
        }
    }
    rejects.finish().map_err(io_err(&rejects_file))?;
    let len = std::fs::metadata(campaign.recipients())
        .map_err(io_err(campaign.recipients()))?
        .len();
    if !flush(&mut chunk, len, &mut out)? {
        return Ok(out);
    }
    store.publish_done(&keys, out.rejected, out.duplicates)?;
    out.complete = true;
    Ok(out)
}
