//! Key loading errors and warnings, PEM flavours, and keygen output round trips.

use std::os::unix::fs::PermissionsExt;

use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use volley_engine::dkim::{generate, DkimAlgorithm, DkimError, DkimSigners, KeyAlgorithm};

use super::{config, ed25519_key, key_file, message, rsa_key, Dns};

const FIELDS: &str = "domain = \"news.volley.test\"\nselector = \"s1\"";

/// Loads one entry and returns the error.
fn load_err(fields: &str, path: &std::path::Path) -> DkimError {
    DkimSigners::load(&[config(fields, path)]).expect_err("the key must be refused")
}

/// The error names the domain, the selector and the file.
fn assert_names_key(err: &DkimError, path: &std::path::Path) {
    let text = err.to_string();
    assert!(text.contains("s1._domainkey.news.volley.test"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(err.is_config_error(), "{text}");
}

fn rsa_pem(bits: usize) -> String {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).unwrap();
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

#[test]
fn unreadable_key_file_names_domain_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = load_err(FIELDS, &missing);
    assert!(matches!(err, DkimError::ReadKey { .. }), "{err}");
    assert_names_key(&err, &missing);
    // A device is refused without being read (reading /dev/zero would never end).
    let err = load_err(FIELDS, std::path::Path::new("/dev/zero"));
    assert!(matches!(err, DkimError::ReadKey { .. }), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn garbage_is_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("garbage.pem", "this is not a key\n"),
        (
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        (
            "bad64.pem",
            "-----BEGIN PRIVATE KEY-----\n!!!notbase64!!!\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        let path = key_file(dir.path(), name, text, 0o600);
        let err = load_err(FIELDS, &path);
        assert!(matches!(err, DkimError::NotPem { .. }), "{name}: {err}");
        assert_names_key(&err, &path);
    }
}

#[test]
fn valid_pem_with_a_broken_key_is_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(
        dir.path(),
        "junk.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n",
        0o600,
    );
    let err = load_err(FIELDS, &path);
    assert!(matches!(err, DkimError::BadKey { .. }), "{err}");
    assert_names_key(&err, &path);
}

#[test]
fn small_rsa_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bits in [512, 1024] {
        let path = key_file(dir.path(), &format!("rsa{bits}.pem"), &rsa_pem(bits), 0o600);
        let err = load_err(FIELDS, &path);
        assert!(
            matches!(err, DkimError::RsaKeySize { bits: b, .. } if b == bits),
            "{err}"
        );
        assert_names_key(&err, &path);
        assert!(err.to_string().contains(&format!("{bits}-bit")), "{err}");
    }
}

#[test]
fn declared_algorithm_must_match_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = key_file(dir.path(), "rsa.pem", &rsa_key().private_pem, 0o600);
    let err = load_err(&format!("{FIELDS}\nalgorithm = \"ed25519-sha256\""), &rsa);
    assert!(
        matches!(
            err,
            DkimError::WrongAlgorithm {
                declared: "ed25519-sha256",
                found: "rsa-sha256",
                ..
            }
        ),
        "{err}"
    );
    assert_names_key(&err, &rsa);

    let ed = key_file(dir.path(), "ed.pem", &ed25519_key().private_pem, 0o600);
    let err = load_err(&format!("{FIELDS}\nalgorithm = \"rsa-sha256\""), &ed);
    assert!(matches!(err, DkimError::WrongAlgorithm { .. }), "{err}");
}

#[test]
fn group_readable_key_loads_with_a_warning_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path(), "open.pem", &ed25519_key().private_pem, 0o640);
    let (signers, warnings) = DkimSigners::load(&[config(FIELDS, &path)]).unwrap();
    assert_eq!(signers.len(), 1);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&path.display().to_string()), "{warnings:?}");
    assert!(warnings[0].contains("0640"), "{warnings:?}");
}

#[test]
fn config_mistakes_are_refused_before_the_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path(), "ed.pem", &ed25519_key().private_pem, 0o600);
    for (fields, field) in [
        (format!("{FIELDS}\nheaders = [\"Subject\", \"To\"]"), "headers"),
        (format!("{FIELDS}\nheaders = [\"From\", \"Bad Name\"]"), "headers"),
        ("domain = \"\"\nselector = \"s1\"".to_owned(), "domain"),
        (
            "domain = \"news.volley.test\"\nselector = \"a;b\"".to_owned(),
            "selector",
        ),
    ] {
        let err = load_err(&fields, &path);
        assert!(
            matches!(err, DkimError::Config { field: f, .. } if f == field),
            "{fields}: {err}"
        );
    }
}

#[tokio::test]
async fn pkcs1_rsa_and_openssl_style_ed25519_pem_load_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    // PKCS#1 ("BEGIN RSA PRIVATE KEY") from the same RSA key.
    let rsa = rsa::RsaPrivateKey::from_pkcs8_pem(&rsa_key().private_pem).unwrap();
    let pkcs1 = rsa.to_pkcs1_pem(LineEnding::LF).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let rsa_path = key_file(dir.path(), "pkcs1.pem", &pkcs1, 0o600);
    // PKCS#8 v1 Ed25519 (no public key inside), as `openssl genpkey -algorithm ed25519` writes.
    let seed = [7u8; 32];
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend_from_slice(&seed);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    let ed_path = key_file(dir.path(), "v1.pem", &pem, 0o600);

    let (signers, warnings) = DkimSigners::load(&[
        config("domain = \"news.volley.test\"\nselector = \"rsa1\"", &rsa_path),
        config("domain = \"news.volley.test\"\nselector = \"edv1\"", &ed_path),
    ])
    .unwrap();
    assert!(warnings.is_empty());
    let algorithms: Vec<DkimAlgorithm> = signers.public_keys().map(|k| k.algorithm).collect();
    assert_eq!(algorithms, [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256]);
    // The PKCS#1 key publishes the same record as the PKCS#8 original.
    let rsa_public = signers.public_keys().next().unwrap();
    assert_eq!(rsa_public.txt_record(), rsa_key().txt_record);

    let dns = Dns::publish(signers.public_keys()).await;
    let signed = signers
        .sign_message("news.volley.test", message("news.volley.test", "", "PEM flavours.\r\n"))
        .unwrap();
    dns.assert_passes(&signed, 2).await;
    dns.server.shutdown().await;
}

#[tokio::test]
async fn keygen_keys_sign_and_verify_with_the_printed_record() {
    let dir = tempfile::tempdir().unwrap();
    let domain = "fresh.volley.test";
    let rsa = generate(KeyAlgorithm::Rsa { bits: 2048 }, domain, "gen-rsa").unwrap();
    let ed = generate(KeyAlgorithm::Ed25519, domain, "gen-ed").unwrap();
    assert_eq!(rsa.dns_name, "gen-rsa._domainkey.fresh.volley.test");
    assert!(
        rsa.txt_record.starts_with("v=DKIM1; k=rsa; p=MII"),
        "{}",
        rsa.txt_record
    );
    // A 2048-bit SPKI is ~392 base64 characters: the record needs two TXT strings.
    assert_eq!(rsa.txt_strings.len(), 2);
    assert!(rsa.txt_strings.iter().all(|s| s.len() <= 255));
    assert_eq!(rsa.txt_strings.concat(), rsa.txt_record);
    assert!(rsa
        .zone_file_line()
        .starts_with("gen-rsa._domainkey.fresh.volley.test. IN TXT ( \"v=DKIM1; k=rsa; p="));

    let mut configs = Vec::new();
    for (key, selector) in [(&rsa, "gen-rsa"), (&ed, "gen-ed")] {
        let path = dir.path().join(format!("{selector}.pem"));
        key.write_private_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(key.write_private_key(&path).is_err(), "no overwrite");
        configs.push(config(
            &format!("domain = \"{domain}\"\nselector = \"{selector}\""),
            &path,
        ));
    }
    let (signers, warnings) = DkimSigners::load(&configs).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");

    // Publish exactly what keygen printed, not what the signers derive.
    let mut zone = volley_bench::dns::TxtZone::new(super::ORIGIN);
    zone.add(&rsa.dns_name, &rsa.txt_record)
        .add(&ed.dns_name, &ed.txt_record);
    let server = volley_bench::dns::BenchDns::start_txt("127.0.0.1:0".parse().unwrap(), &zone)
        .await
        .unwrap();
    let dns = Dns {
        verifier: super::verifier_for(server.local_addr()),
        server,
    };
    let signed = signers
        .sign_message(domain, message(domain, "", "Freshly generated.\r\n"))
        .unwrap();
    dns.assert_passes(&signed, 2).await;
    dns.server.shutdown().await;
}
