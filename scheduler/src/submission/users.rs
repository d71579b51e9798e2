//! The users file of the submission listener: one JSON object per line,
//!
//! ```text
//! {"name":"shop","hash":"$argon2id$v=19$m=19456,t=2,p=1$…","from_domains":["shop.example"],"rate":"100/m"}
//! ```
//!
//! `hash` is the password as an Argon2id PHC string (salted, never the password itself);
//! `from_domains` are the domains the user may send from (the header From and a non-null
//! envelope sender); `rate` (optional) caps the user's messages, e.g. `"10/s"`, `"3000/h"`.
//! The file is written by `volley user add/remove` atomically with mode 0600; a damaged line
//! is reported with its file, line and field.

use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use volley_warmup::Rate;

/// The largest users file read (a line is ~200 bytes: tens of thousands of users).
const USERS_MAX: u64 = 16 << 20;

/// Length of a generated password (letters and digits: ~143 bits).
const GENERATED_LEN: usize = 24;

/// One user of the submission listener.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The AUTH user name; also the campaign its messages are filed under (the same rules
    /// as a campaign id: letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// The password's Argon2id PHC string.
    pub hash: String,
    /// Domains the user may send from, lower-case.
    pub from_domains: Vec<String>,
    /// The most messages the user may submit per period; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rate_text")]
    pub rate: Option<Rate>,
}

impl std::fmt::Debug for UserRecord {
    /// Leaves the hash out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("from_domains", &self.from_domains)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// `rate` as the text operators write (`"100/m"`).
mod rate_text {
    use volley_warmup::Rate;

    pub fn serialize<S: serde::Serializer>(rate: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
        match rate {
            Some(rate) => s.serialize_str(&rate.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
        <Option<Rate> as serde::Deserialize>::deserialize(d)
    }
}

/// Why the users file cannot be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading or writing the file failed.
    #[error("users file {}: cannot {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the file cannot be used.
    #[error("users file {}, line {line}: field `{field}`: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field (`name`, `hash`, …; `.` for the line as a whole).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A value given to `volley user add` cannot be used.
    #[error("{field} {value:?}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// `add` of a name already in the file.
    #[error("user {0:?} already exists (remove it first to change it)")]
    Exists(String),
    /// `remove` of a name not in the file.
    #[error("no user {0:?} in the users file")]
    NotFound(String),
    /// Hashing failed (the OS random source).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl UsersError {
    /// The file is damaged (as opposed to unreadable, or a bad argument).
    pub fn is_damaged(&self) -> bool {
        matches!(self, UsersError::Damaged { .. })
    }
}

/// Checks a user name: the rules of a campaign id (the user is its mail's campaign).
pub fn check_name(name: &str) -> Result<(), UsersError> {
    crate::campaign::check_id(name).map_err(|why| UsersError::Invalid {
        field: "name",
        value: name.to_string(),
        reason: why.to_string(),
    })
}

/// A From domain, lower-cased, or why it is not one.
pub fn normalize_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) {
        return Err(format!("{domain:?} is not a domain name (e.g. shop.example.com)"));
    }
    Ok(d)
}

/// The Argon2id PHC string of `password` (a fresh random salt; the crate's default cost,
/// m = 19 MiB, t = 2, p = 1, as OWASP recommends).
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (CPU-heavy: call it off the async
/// workers).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A random password of letters and digits, from the OS random source.
pub fn generate_password() -> Result<String, UsersError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(GENERATED_LEN);
    while out.len() < GENERATED_LEN {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut bytes).map_err(|_| UsersError::Hash("no OS randomness".into()))?;
        // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
        for b in bytes.into_iter().filter(|b| *b < 248) {
            if out.len() < GENERATED_LEN {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// Reads the users file; a missing file has no users.
pub fn load(path: &Path) -> Result<Vec<UserRecord>, UsersError> {
    let text = match volley_files::read_config_file(path, USERS_MAX) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => {
            return Err(UsersError::Io {
                path: path.to_path_buf(),
                action: "read",
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    parse(&text, path)
}

/// Parses the users file's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<UserRecord>, UsersError> {
    let mut users: Vec<UserRecord> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let damaged = |field: &str, reason: String| UsersError::Damaged {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            reason,
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(line);
        let user: UserRecord = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            damaged(&field, e.into_inner().to_string())
        })?;
        check_name(&user.name).map_err(|e| damaged("name", e.to_string()))?;
        let phc = PasswordHash::new(&user.hash).map_err(|e| damaged("hash", format!("not a PHC string: {e}")))?;
        if phc.algorithm.as_str() != "argon2id" {
            return Err(damaged(
                "hash",
                format!("{} is not an Argon2id hash", phc.algorithm.as_str()),
            ));
        }
        if user.from_domains.is_empty() {
            return Err(damaged("from_domains", "needs at least one domain".into()));
        }
        for d in &user.from_domains {
            if normalize_domain(d).as_deref() != Ok(d.as_str()) {
                return Err(damaged(
                    "from_domains",
                    format!("{d:?} is not a lower-case domain name"),
                ));
            }
        }
        if users.iter().any(|u| u.name == user.name) {
            return Err(damaged("name", format!("user {:?} appears twice", user.name)));
        }
        users.push(user);
    }
    Ok(users)
}

/// Writes the users file atomically, readable by its owner only (mode 0600).
pub fn save(path: &Path, users: &[UserRecord]) -> Result<(), UsersError> {
    let io = |action, source| UsersError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create its folder", e))?;
    }
    let mut text = String::new();
    for user in users {
        let line = serde_json::to_string(user).map_err(|e| io("encode", std::io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    volley_files::write_atomic_private(path, &[text.as_bytes()]).map_err(|e| io("write", e))
}

/// Adds a user with `password` (hashed here) to the file at `path`.
pub fn add(
    path: &Path,
    name: &str,
    from_domains: &[String],
    rate: Option<Rate>,
    password: &str,
) -> Result<UserRecord, UsersError> {
    check_name(name)?;
    if password.is_empty() {
        return Err(UsersError::Invalid {
            field: "password",
            value: String::new(),
            reason: "must not be empty".into(),
        });
    }
    if from_domains.is_empty() {
        return Err(UsersError::Invalid {
            field: "--from-domain",
            value: String::new(),
            reason: "give at least one domain the user may send from".into(),
        });
    }
    let mut domains = Vec::new();
    for d in from_domains {
        let d = normalize_domain(d).map_err(|reason| UsersError::Invalid {
            field: "--from-domain",
            value: d.clone(),
            reason,
        })?;
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    let mut users = load(path)?;
    if users.iter().any(|u| u.name == name) {
        return Err(UsersError::Exists(name.to_string()));
    }
    let user = UserRecord {
        name: name.to_string(),
        hash: hash_password(password)?,
        from_domains: domains,
        rate,
    };
    users.push(user.clone());
    save(path, &users)?;
    Ok(user)
}

/// Removes the user `name` from the file at `path`.
pub fn remove(path: &Path, name: &str) -> Result<(), UsersError> {
    let mut users = load(path)?;
    let before = users.len();
    users.retain(|u| u.name != name);
    if users.len() == before {
        return Err(UsersError::NotFound(name.to_string()));
    }
    save(path, &users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_hashes_with_argon2id_and_remove_takes_the_user_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/users.jsonl");
        let user = add(
            &path,
            "shop",
            &["Shop.Example".into(), "shop.example".into()],
            Some("10/s".parse().expect("rate")),
            "pw1",
        )
        .expect("add");
        assert!(user.hash.starts_with("$argon2id$"), "{}", user.hash);
        assert_eq!(user.from_domains, ["shop.example"]);
        assert!(verify_password(&user.hash, "pw1"));
        assert!(!verify_password(&user.hash, "pw2"));
        assert!(matches!(
            add(&path, "shop", &["a.example".into()], None, "x"),
            Err(UsersError::Exists(_))
        ));
        add(&path, "news", &["news.example".into()], None, "pw2").expect("second");
        let users = load(&path).expect("load");
        assert_eq!(
            users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["shop", "news"]
        );
        assert_eq!(users[0].rate.map(|r| r.to_string()).as_deref(), Some("10/s"));
        remove(&path, "shop").expect("remove");
        assert_eq!(load(&path).expect("load").len(), 1);
        assert!(matches!(remove(&path, "shop"), Err(UsersError::NotFound(_))));
        assert!(
            !format!("{:?}", users[0]).contains("argon2"),
            "Debug leaves the hash out"
        );
    }

    #[test]
    fn bad_arguments_are_refused_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.jsonl");
        let e = add(&path, "../x", &["a.example".into()], None, "pw").expect_err("bad name");
        assert!(e.to_string().starts_with("name \"../x\""), "{e}");
        let e = add(&path, "ok", &["not a domain".into()], None, "pw").expect_err("bad domain");
        assert!(e.to_string().contains("--from-domain \"not a domain\""), "{e}");
        assert!(!path.exists(), "nothing written");
    }

    #[test]
    fn a_damaged_line_names_file_line_and_field() {
        let path = Path::new("/etc/volley/users.jsonl");
        let good = format!(
            r#"{{"name":"a","hash":"{}","from_domains":["a.example"]}}"#,
            hash_password("pw").expect("hash")
        );
        let cases = [
            (
                format!("{good}\n{{\"name\":\"b\",\"hash\":\"x\",\"from_domains\":[]}}\n"),
                2,
                "hash",
            ),
            (format!("\n{good}\n{good}\n"), 3, "name"),
            (good.replace("a.example", "A.example"), 1, "from_domains"),
            (good.replace("\"from_domains\"", "\"from_domain\""), 1, "from_domain"),
            (format!("{}\n", good.replace("}", r#","rate":"fast"}"#)), 1, "rate"),
        ];
        for (text, line, field) in cases {
            let e = parse(&text, path).expect_err(field);
            let UsersError::Damaged { line: l, field: f, .. } = &e else {
                panic!("{e}");
            };
            assert_eq!((*l, f.as_str()), (line, field), "{e}");
            assert!(
                e.to_string().starts_with("users file /etc/volley/users.jsonl, line"),
                "{e}"
            );
        }
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate_password().expect("random");
        let b = generate_password().expect("random");
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
