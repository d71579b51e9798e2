//! `volley user`: the users of the submission listener (SMTP AUTH for applications) — add,
//! remove, list. The users file is `[submission] users` in volley.toml, by default
//! `<state_dir>/submission/users.jsonl`; a running listener picks changes up within a second.
//!
//! `add` takes the password from standard input with `--password-stdin` (one line); without
//! it a random password is generated and printed once. Only its Argon2id hash is stored, and
//! `list` never prints a password or a hash.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use volley_scheduler::config::SendConfig;
use volley_scheduler::submission::{self, users};
use volley_warmup::Rate;

/// Arguments of `volley user`.
#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

/// Where the users file is.
#[derive(clap::Args)]
struct UsersFile {
    /// The operator configuration (it names the users file).
    #[arg(long, default_value = "volley.toml")]
    config: PathBuf,
    /// This users file instead of the one the configuration names.
    #[arg(long)]
    users: Option<PathBuf>,
}

impl UsersFile {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.users {
            return Ok(path.clone());
        }
        let config = SendConfig::load_unchecked(&self.config)
            .with_context(|| format!("reading {} for the users file", self.config.display()))?;
        Ok(submission::users_path(&config))
    }
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Add a user who may send from the given domains.
    #[command(
        after_help = "Examples:\n  volley user add shop --from-domain shop.example.com --rate 10/s\n  \
                            printf '%s\\n' \"$PASSWORD\" | volley user add crm --from-domain example.com --password-stdin"
    )]
    Add {
        /// The user name (letters, digits, '.', '_', '-'); also the campaign its mail is
        /// logged under.
        name: String,
        /// A domain the user may send from (header From and envelope sender); repeat for more.
        #[arg(long = "from-domain", required = true)]
        from_domains: Vec<String>,
        /// The most messages the user may submit: N/s, N/min, N/h or N/d (none: no limit).
        #[arg(long)]
        rate: Option<Rate>,
        /// Read the password from the first line of standard input; without it a random
        /// password is generated and printed once.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        file: UsersFile,
    },
    /// Remove a user (its next AUTH fails; connections already authenticated finish).
    #[command(after_help = "Example:\n  volley user remove shop")]
    Remove {
        /// The user name.
        name: String,
        #[command(flatten)]
        file: UsersFile,
    },
    /// List the users: name, From domains, rate (never a password or a hash).
    #[command(after_help = "Example:\n  volley user list --config volley.toml")]
    List {
        #[command(flatten)]
        file: UsersFile,
    },
}

/// Runs the command (blocking: file I/O and password hashing).
pub fn run(args: UserArgs) -> anyhow::Result<bool> {
    match args.command {
        UserCommand::Add {
            name,
            from_domains,
            rate,
            password_stdin,
            file,
        } => {
            let path = file.path()?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                let password = line.trim_end_matches(['\r', '\n']).to_string();
                anyhow::ensure!(
                    !password.is_empty(),
                    "--password-stdin: standard input gave an empty password"
                );
                (password, false)
            } else {
                (users::generate_password()?, true)
            };
            let user = users::add(&path, &name, &from_domains, rate, &password)
                .with_context(|| format!("adding user {name:?} to {}", path.display()))?;
            println!(
                "added user {} (from {}; rate {}) to {}",
                user.name,
                user.from_domains.join(", "),
                user.rate.map_or_else(|| "unlimited".to_string(), |r| r.to_string()),
                path.display()
            );
            if generated {
                println!("password: {password}");
                println!("(shown once: Volley keeps only its hash)");
            }
            Ok(true)
        }
        UserCommand::Remove { name, file } => {
            let path = file.path()?;
            users::remove(&path, &name).with_context(|| format!("removing user {name:?} from {}", path.display()))?;
            println!("removed user {name} from {}", path.display());
            Ok(true)
        }
        UserCommand::List { file } => {
            let path = file.path()?;
            let list = users::load(&path)?;
            if list.is_empty() {
                println!("no users in {}", path.display());
                return Ok(true);
            }
            let width = list.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
            println!("{:width$}  {:9}  FROM DOMAINS", "NAME", "RATE");
            for u in list {
                let rate = u.rate.map_or_else(|| "unlimited".to_string(), |r| r.to_string());
                println!("{:width$}  {rate:9}  {}", u.name, u.from_domains.join(", "));
            }
            Ok(true)
        }
    }
}
