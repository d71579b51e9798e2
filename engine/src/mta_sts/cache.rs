//! Policies by domain, in memory and in a JSON file (`<state_dir>/mta-sts/policies.json`) so
//! that a restart keeps them (RFC 8461 §5.1: a cached, unexpired policy is used while a new
//! one cannot be fetched). Times are Unix seconds, so entries survive a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::policy::PolicyBody;

/// Most octets of the cache file read back.
const CACHE_FILE_MAX: u64 = 64 << 20;

/// One domain's policy as fetched.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedPolicy {
    /// The policy domain.
    pub domain: String,
    /// The `id` of the `_mta-sts` record it was fetched under.
    pub id: String,
    /// The parsed policy.
    pub policy: PolicyBody,
    /// The policy file as served (TLS-RPT `policy-string`).
    pub text: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
    /// When it expires: `fetched_at` + `max_age`.
    pub expires_at: u64,
}

impl CachedPolicy {
    /// A policy fetched at `now` under record id `id`.
    pub fn new(domain: &str, id: &str, policy: PolicyBody, text: String, now: u64) -> CachedPolicy {
        CachedPolicy {
            domain: domain.to_string(),
            id: id.to_string(),
            expires_at: now.saturating_add(policy.max_age.as_secs()),
            policy,
            text,
            fetched_at: now,
        }
    }

    /// Whether it is still valid at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }
}

/// The cache file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("MTA-STS policy cache {}: {reason}", path.display())]
pub struct CacheError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// The policies known, by domain.
#[derive(Debug, Default)]
pub struct PolicyCache {
    file: Option<PathBuf>,
    entries: HashMap<String, Arc<CachedPolicy>>,
    /// Entries stored since the file was last written.
    dirty: bool,
}

impl PolicyCache {
    /// The cache kept in `file` (read back when it exists; `None`: memory only). Entries
    /// expired at `now` are dropped.
    pub fn open(file: Option<&Path>, now: u64) -> Result<PolicyCache, CacheError> {
        let mut cache = PolicyCache {
            file: file.map(Path::to_path_buf),
            entries: HashMap::new(),
            dirty: false,
        };
        let Some(path) = file else { return Ok(cache) };
        let err = |reason: String| CacheError {
            path: path.to_path_buf(),
            reason,
        };
        let text = match volley_files::read_config_file(path, CACHE_FILE_MAX) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Ok(cache),
            Err(e) => return Err(err(e.to_string())),
        };
        let entries: Vec<CachedPolicy> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        for entry in entries.into_iter().filter(|e| e.is_fresh(now)) {
            cache.entries.insert(entry.domain.clone(), Arc::new(entry));
        }
        Ok(cache)
    }

    /// The unexpired policy of `domain` at `now`.
    pub fn fresh(&self, domain: &str, now: u64) -> Option<Arc<CachedPolicy>> {
        self.entries.get(domain).filter(|p| p.is_fresh(now)).cloned()
    }

    /// Whether the policy published under record id `id` must be fetched: none cached, the
    /// cached one expired, or published under another id (RFC 8461 §5.1).
    pub fn needs_fetch(&self, domain: &str, id: &str, now: u64) -> bool {
        self.fresh(domain, now).is_none_or(|p| p.id != id)
    }

    /// Keeps `policy` (replacing the domain's earlier one); [`PolicyCache::save`] writes it.
    pub fn store(&mut self, policy: CachedPolicy, now: u64) -> Arc<CachedPolicy> {
        let policy = Arc::new(policy);
        self.entries.retain(|_, p| p.is_fresh(now));
        self.entries.insert(policy.domain.clone(), policy.clone());
        self.dirty = true;
        policy
    }

    /// Writes every entry to the file (a temporary file renamed over it) when some were
    /// stored since the last write.
    pub fn save(&mut self) -> Result<(), CacheError> {
        let Some(path) = self.file.as_ref().filter(|_| self.dirty) else {
            return Ok(());
        };
        let err = |reason: String| CacheError {
            path: path.clone(),
            reason,
        };
        let mut entries: Vec<&CachedPolicy> = self.entries.values().map(Arc::as_ref).collect();
        entries.sort_by(|a, b| a.domain.cmp(&b.domain));
        let json = serde_json::to_vec_pretty(&entries).map_err(|e| err(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mta_sts::policy::{MxPattern, StsMode};

    fn policy(max_age: u64) -> PolicyBody {
        PolicyBody {
            mode: StsMode::Enforce,
            mx: MxPattern::new("mx.a.test").into_iter().collect(),
            max_age: Duration::from_secs(max_age),
        }
    }

    #[test]
    fn a_policy_is_refetched_when_it_expires_or_its_id_changes() {
        let mut cache = PolicyCache::default();
        assert!(cache.needs_fetch("a.test", "1", 1000), "nothing cached");
        cache.store(CachedPolicy::new("a.test", "1", policy(100), String::new(), 1000), 1000);
        assert!(!cache.needs_fetch("a.test", "1", 1050), "same id, unexpired");
        assert!(cache.needs_fetch("a.test", "2", 1050), "the record's id changed");
        assert!(cache.fresh("a.test", 1099).is_some());
        assert!(cache.fresh("a.test", 1100).is_none(), "max_age over");
        assert!(cache.needs_fetch("a.test", "1", 1100));
    }

    #[test]
    fn the_file_keeps_unexpired_policies_over_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mta-sts").join("policies.json");
        let mut cache = PolicyCache::open(Some(&file), 1000).expect("no file yet");
        let text = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 100\n".to_string();
        for (domain, age) in [("a.test", 100), ("b.test", 10)] {
            let p = CachedPolicy::new(domain, "7", policy(age), text.clone(), 1000);
            cache.store(p, 1000);
        }
        assert!(cache.save().is_ok());
        let reopened = PolicyCache::open(Some(&file), 1050).expect("read back");
        let a = reopened.fresh("a.test", 1050).expect("kept");
        assert_eq!(
            (a.id.as_str(), a.text.as_str(), a.expires_at),
            ("7", text.as_str(), 1100)
        );
        assert!(reopened.fresh("b.test", 1050).is_none(), "expired while stopped");

        std::fs::write(&file, "not json").expect("write");
        let e = PolicyCache::open(Some(&file), 0).err().map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("policies.json")),
            "the error names the file"
        );
    }
}
