//! Support for the DKIM tests: keys generated once per test binary, key files in a temp dir, a
//! real DNS server on loopback serving the keys' TXT records, and mail-auth's verifier pointed
//! at it.

#![allow(dead_code)]

pub mod keys;
pub mod pool;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use volley_bench::dns::{BenchDns, BenchDnsHandle, TxtZone};
use volley_engine::dkim::{generate, DkimKeyConfig, DkimPublicKey, DkimSigners, GeneratedKey, KeyAlgorithm};

/// Every test domain lives under this zone.
pub const ORIGIN: &str = "volley.test";

/// One RSA-2048 key for the whole test binary (generation takes a while).
pub fn rsa_key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| generate(KeyAlgorithm::Rsa { bits: 2048 }, "news.volley.test", "rsa1").unwrap())
}

/// One Ed25519 key for the whole test binary.
pub fn ed25519_key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| generate(KeyAlgorithm::Ed25519, "news.volley.test", "ed1").unwrap())
}

/// Writes `pem` to `dir/name` with `mode` and returns the path.
pub fn key_file(dir: &Path, name: &str, pem: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A `[[dkim]]` entry from TOML fields (without `key`), pointing at `key`.
pub fn config(toml_fields: &str, key: &Path) -> DkimKeyConfig {
    let text = format!("{toml_fields}\nkey = {:?}", key.display().to_string());
    toml::from_str(&text).unwrap()
}

/// Loads one signer per `(fields, key)` and expects no warnings.
pub fn signers(dir: &Path, entries: &[(&str, &GeneratedKey)]) -> DkimSigners {
    let configs: Vec<DkimKeyConfig> = entries
        .iter()
        .enumerate()
        .map(|(i, (fields, key))| config(fields, &key_file(dir, &format!("k{i}.pem"), &key.private_pem, 0o600)))
        .collect();
    let (signers, warnings) = DkimSigners::load(&configs).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    signers
}

/// A DNS server on 127.0.0.1 publishing `keys`, and a verifier that asks it (and nothing else).
pub struct Dns {
    pub server: BenchDnsHandle,
    pub verifier: MessageAuthenticator,
}

impl Dns {
    /// Publishes each key's TXT record at its DNS name.
    pub async fn publish<'a>(keys: impl IntoIterator<Item = &'a DkimPublicKey>) -> Dns {
        let mut zone = TxtZone::new(ORIGIN);
        for key in keys {
            zone.add(key.dns_name(), key.txt_record());
        }
        let server = BenchDns::start_txt(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &zone)
            .await
            .unwrap();
        let verifier = verifier_for(server.local_addr());
        Dns { server, verifier }
    }

    /// The DKIM results mail-auth gives `signed`, one per signature.
    pub async fn verify(&self, signed: &[u8]) -> Vec<DkimResult> {
        let message = AuthenticatedMessage::parse(signed).expect("signed message parses");
        self.verifier
            .verify_dkim(&message)
            .await
            .iter()
            .map(|output| output.result().clone())
            .collect()
    }

    /// Asserts `signed` carries `signatures` DKIM signatures and all of them pass.
    pub async fn assert_passes(&self, signed: &[u8], signatures: usize) {
        let results = self.verify(signed).await;
        assert_eq!(
            results.len(),
            signatures,
            "{results:?}\n{}",
            String::from_utf8_lossy(signed)
        );
        assert!(
            results.iter().all(|r| *r == DkimResult::Pass),
            "{results:?}\n{}",
            String::from_utf8_lossy(signed)
        );
    }
}

/// mail-auth's verifier with `dns` (a loopback address) as its only name server, UDP and TCP.
pub fn verifier_for(dns: SocketAddr) -> MessageAuthenticator {
    volley_bench::dns::verifier_for(dns).unwrap()
}

/// A message From `user@domain` with `extra` header lines (CRLF-terminated) and `body`.
pub fn message(domain: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Volley News <news@{domain}>\r\n\
         To: reader@example.net\r\n\
         Subject: Weekly digest\r\n\
         Date: Fri, 2 Jan 2026 10:00:00 +0000\r\n\
         Message-ID: <1@{domain}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         List-Unsubscribe: <https://{domain}/u/1>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
         {extra}\r\n{body}"
    )
    .into_bytes()
}
