//! `volley dkim keygen`: a new DKIM key pair. The private key goes to a new file (mode 0600,
//! never over an existing file); the TXT record to publish, its zone-file line and the
//! `[[dkim]]` entry for `volley.toml` go to standard output.
//!
//! Key generation is CPU work (an RSA-2048 key takes up to a second or two): this runs outside
//! the async runtime.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use volley_engine::dkim::{generate, GeneratedKey, KeyAlgorithm, DEFAULT_RSA_BITS, RSA_BITS};

/// Arguments of `volley dkim`.
#[derive(clap::Args)]
pub struct DkimArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Generate a signing key: write the private key to --out and print the DNS TXT record to
    /// publish at `<selector>._domainkey.<domain>` and the `[[dkim]]` entry for volley.toml.
    #[command(
        after_help = "Examples:\n  volley dkim keygen --domain example.com --selector s2026 --out s2026.pem\n  \
                            volley dkim keygen --domain example.com --selector e2026 --algorithm ed25519 --out e2026.pem"
    )]
    Keygen(KeygenArgs),
}

/// Arguments of `volley dkim keygen`.
#[derive(clap::Args)]
struct KeygenArgs {
    /// The From domain the key signs for (the `d=` tag).
    #[arg(long)]
    domain: String,
    /// The selector (the `s=` tag), e.g. `s2026`.
    #[arg(long)]
    selector: String,
    /// The key type.
    #[arg(long, value_enum, default_value_t = Algorithm::Rsa)]
    algorithm: Algorithm,
    /// RSA modulus size in bits, 2048 to 4096 (RSA only; without it: 2048).
    #[arg(long)]
    bits: Option<usize>,
    /// Where to write the private key (PKCS#8 PEM, mode 0600). Must not exist yet.
    #[arg(long)]
    out: PathBuf,
}

/// The key types `--algorithm` accepts.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Algorithm {
    /// RSA (`rsa-sha256`), what every verifier understands.
    Rsa,
    /// Ed25519 (`ed25519-sha256`, RFC 8463); sign with an RSA key too, as not every verifier
    /// understands it yet.
    Ed25519,
}

/// Runs the command.
pub fn run(args: DkimArgs) -> anyhow::Result<bool> {
    match args.action {
        Action::Keygen(args) => keygen(args),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<bool> {
    let algorithm = match (args.algorithm, args.bits) {
        (Algorithm::Rsa, bits) => {
            let bits = bits.unwrap_or(DEFAULT_RSA_BITS);
            if !RSA_BITS.contains(&bits) {
                bail!(
                    "--bits {bits}: choose {} to {} bits (RFC 8301 §3.2)",
                    RSA_BITS.start(),
                    RSA_BITS.end()
                );
            }
            KeyAlgorithm::Rsa { bits }
        }
        (Algorithm::Ed25519, None) => KeyAlgorithm::Ed25519,
        (Algorithm::Ed25519, Some(bits)) => bail!("--bits {bits}: only RSA keys have a size; drop it for ed25519"),
    };
    // Checked before the (slow) generation; the write below refuses too (create_new).
    refuse_existing(&args.out)?;
    let key = generate(algorithm, &args.domain, &args.selector)
        .with_context(|| format!("cannot generate a key for {}._domainkey.{}", args.selector, args.domain))?;
    key.write_private_key(&args.out)
        .with_context(|| format!("cannot write the private key to {}", args.out.display()))?;
    // volley.toml resolves relative key paths against its own folder: print an absolute one.
    let key_path = std::fs::canonicalize(&args.out).unwrap_or_else(|_| args.out.clone());
    print!("{}", report(&key, &key_path));
    Ok(true)
}

/// A clear refusal when `out` exists (a file, a directory or a dangling link).
fn refuse_existing(out: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(out).is_ok() {
        bail!(
            "refusing to overwrite {}: it already exists (keys are never replaced in place; \
             choose another --out, or remove the old file once its selector is retired)",
            out.display()
        );
    }
    Ok(())
}

/// What keygen prints: where the key is, the record to publish, the `[[dkim]]` entry.
fn report(key: &GeneratedKey, key_path: &Path) -> String {
    let algorithm = key.public_key.algorithm;
    let domain = &key.public_key.domain;
    let selector = &key.public_key.selector;
    format!(
        "Private key ({algorithm}) written to {path} (mode 0600).\n\
         \n\
         Publish this DNS TXT record:\n\
         \x20 name:  {name}\n\
         \x20 value: {value}\n\
         \n\
         Zone-file line:\n\
         {zone}\n\
         \n\
         Add to volley.toml (same domain twice, e.g. RSA and Ed25519, signs twice):\n\
         [[dkim]]\n\
         domain = {domain:?}\n\
         selector = {selector:?}\n\
         key = {path_toml:?}\n\
         algorithm = \"{algorithm}\"\n",
        path = key_path.display(),
        name = key.dns_name,
        value = key.txt_record,
        zone = key.zone_file_line(),
        path_toml = key_path.display().to_string(),
    )
}
