//! The users as the listener sees them: the users file reloaded when it changes (its
//! modification time and length looked at no more than once a second), passwords verified on
//! the blocking pool with a short cache, the growing pause after failed AUTHs per client
//! address, and one rate limiter per user.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use volley_warmup::limiter::SendLimiter;
use volley_warmup::Rate;

use super::users::{self, UserRecord, UsersError};

/// How often the users file is looked at.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A failure from an address is forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Most client addresses remembered for the AUTH slow-down, and most cached verifications.
const MAX_REMEMBERED: usize = 10_000;

/// Users by name.
pub(super) type UserMap = HashMap<String, Arc<UserRecord>>;

/// Verified pairs: (user, HMAC of the password) -> (the PHC string it was verified against,
/// when).
type VerifiedCache = HashMap<(String, Vec<u8>), (String, Instant)>;

/// What identifies a version of the users file.
type Stamp = Option<(SystemTime, u64)>;

struct Loaded {
    users: Arc<UserMap>,
    stamp: Stamp,
    checked: Instant,
}

/// The listener's view of the users; see the module docs.
pub(super) struct Accounts {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    cache_ttl: Duration,
    /// Keys the cache's password digests (random per process: a digest says nothing
    /// outside it).
    cache_key: ring::hmac::Key,
    cache: Mutex<VerifiedCache>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    limiters: Mutex<HashMap<String, Arc<SendLimiter>>>,
}

fn stamp(path: &std::path::Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

fn by_name(records: Vec<UserRecord>) -> Arc<UserMap> {
    Arc::new(records.into_iter().map(|u| (u.name.clone(), Arc::new(u))).collect())
}

impl Accounts {
    /// Reads the users file at `path` (missing: no users yet).
    pub(super) fn open(path: PathBuf, cache_ttl: Duration) -> Result<Accounts, UsersError> {
        let stamp = stamp(&path);
        let users = by_name(users::load(&path)?);
        let rng = ring::rand::SystemRandom::new();
        let cache_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| UsersError::Hash("no OS randomness".into()))?;
        Ok(Accounts {
            path,
            loaded: Mutex::new(Loaded {
                users,
                stamp,
                checked: Instant::now(),
            }),
            cache_ttl,
            cache_key,
            cache: Mutex::default(),
            failures: Mutex::default(),
            limiters: Mutex::default(),
        })
    }

    /// The users now: the file is read again when it changed (looked at once a second at
    /// most). A damaged file is logged and the users read before stay in force.
    pub(super) fn current(&self) -> Arc<UserMap> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() < RELOAD_EVERY {
            return loaded.users.clone();
        }
        loaded.checked = Instant::now();
        let now = stamp(&self.path);
        if now != loaded.stamp {
            match users::load(&self.path) {
                Ok(records) => {
                    tracing::info!(
                        "submission: users file {} reloaded ({} users)",
                        self.path.display(),
                        records.len()
                    );
                    loaded.users = by_name(records);
                    loaded.stamp = now;
                }
                Err(e) => tracing::error!("submission: {e}; the users read before stay in force"),
            }
        }
        loaded.users.clone()
    }

    /// The user `name` with this `password`, or `None`. The Argon2 verification runs on the
    /// blocking pool; a pair verified within `cache_ttl` against the same hash is not
    /// verified again.
    pub(super) async fn verify(&self, name: &str, password: &str) -> Option<Arc<UserRecord>> {
        let user = self.current().get(name).cloned()?;
        let digest = ring::hmac::sign(&self.cache_key, password.as_bytes()).as_ref().to_vec();
        let key = (name.to_string(), digest);
        if !self.cache_ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((hash, at)) = cache.get(&key) {
                if *hash == user.hash && at.elapsed() < self.cache_ttl {
                    return Some(user);
                }
            }
        }
        let (hash, password) = (user.hash.clone(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || users::verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        if !ok {
            return None;
        }
        if !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_REMEMBERED {
                let ttl = self.cache_ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            if cache.len() < MAX_REMEMBERED {
                cache.insert(key, (user.hash.clone(), Instant::now()));
            }
        }
        Some(user)
    }

    /// Records a failed AUTH from `ip`; the pause before answering it: `step` times the
    /// failures from `ip` in the last 15 minutes, at most `max`.
    pub(super) fn failed(&self, ip: IpAddr, step: Duration, max: Duration) -> (u32, Duration) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, (_, at)| at.elapsed() < FAILURE_MEMORY);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        let n = entry.0;
        (n, step.saturating_mul(n).min(max))
    }

    /// Takes one message from `user`'s rate; `Err(wait)` when it is used up.
    pub(super) fn take_rate(&self, user: &UserRecord) -> Result<(), Duration> {
        let Some(rate) = user.rate else {
            return Ok(());
        };
        let limiter = {
            let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
            let entry = limiters
                .entry(user.name.clone())
                .or_insert_with(|| Arc::new(SendLimiter::new(rate)));
            if entry.rate() != rate {
                *entry = Arc::new(SendLimiter::new(rate));
            }
            entry.clone()
        };
        limiter.try_acquire()
    }
}

/// `rate` as a reply says it (`100/h`).
pub(super) fn describe(rate: Option<Rate>) -> String {
    rate.map_or_else(|| "unlimited".to_string(), |r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(dir: &std::path::Path, ttl: Duration) -> Accounts {
        let path = dir.join("users.jsonl");
        users::add(
            &path,
            "app",
            &["app.example".into()],
            Some("2/h".parse().expect("rate")),
            "pw",
        )
        .expect("add");
        Accounts::open(path, ttl).expect("open")
    }

    #[tokio::test]
    async fn verification_is_cached_only_for_the_same_password_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = accounts(dir.path(), Duration::from_secs(60));
        assert!(accounts.verify("app", "pw").await.is_some());
        assert_eq!(accounts.cache.lock().expect("lock").len(), 1);
        assert!(
            accounts.verify("app", "wrong").await.is_none(),
            "a cached user, another password"
        );
        assert!(accounts.verify("nobody", "pw").await.is_none());
        let off = Accounts::open(dir.path().join("users.jsonl"), Duration::ZERO).expect("open");
        assert!(off.verify("app", "pw").await.is_some());
        assert!(off.cache.lock().expect("lock").is_empty(), "0s: no cache");
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_damaged_one_keeps_the_users_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = accounts(dir.path(), Duration::ZERO);
        let path = dir.path().join("users.jsonl");
        users::add(&path, "second", &["second.example".into()], None, "pw").expect("add");
        assert!(
            !accounts.current().contains_key("second"),
            "looked at once a second at most"
        );
        std::thread::sleep(RELOAD_EVERY + Duration::from_millis(50));
        assert!(accounts.current().contains_key("second"));
        std::fs::write(&path, "{\"name\":\"broken\"}\n").expect("damage");
        std::thread::sleep(RELOAD_EVERY + Duration::from_millis(50));
        let users = accounts.current();
        assert!(users.contains_key("app") && users.contains_key("second"), "kept");
    }

    #[test]
    fn failures_grow_the_pause_per_address_up_to_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = accounts(dir.path(), Duration::ZERO);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().expect("ip"), "127.0.0.3".parse().expect("ip"));
        let s = Duration::from_secs(1);
        let max = Duration::from_secs(3);
        let pauses: Vec<_> = (0..4).map(|_| accounts.failed(a, s, max)).collect();
        assert_eq!(
            pauses,
            [(1, s), (2, 2 * s), (3, 3 * s), (4, 3 * s)],
            "1 s, 2 s, 3 s, capped"
        );
        assert_eq!(accounts.failed(b, s, max), (1, s), "another address starts over");
    }

    #[test]
    fn the_rate_of_a_user_is_taken_per_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = accounts(dir.path(), Duration::ZERO);
        let user = accounts.current().get("app").cloned().expect("user");
        assert!(accounts.take_rate(&user).is_ok());
        let wait = accounts.take_rate(&user).expect_err("2/h: a burst of 1");
        assert!(wait > Duration::from_secs(1000), "{wait:?}");
    }
}
