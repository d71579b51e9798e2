//! The `dkim` check of one `[[dkim]]` key: the TXT record at `<selector>._domainkey.<domain>`
//! exists, is the only DKIM record there, has `v=DKIM1` first when present, a `k=` that is the
//! key's type, and a `p=` equal to the public half of the private key Volley signs with
//! (RFC 6376 §3.6.1). An empty `p=` is a revoked key.

use base64::Engine as _;
use volley_engine::dkim::{DkimKeyConfig, DkimPublicKey, DkimSigners};
use volley_engine::mx::DnsAnswer;

use crate::check_spf::txt_line;
use crate::lookup::Dns;
use crate::report::{quoted, Check, CheckKind, Status};

pub(crate) async fn check(dns: &Dns, config: &DkimKeyConfig) -> Check {
    let subject = format!("{}._domainkey.{}", config.selector, config.domain.to_ascii_lowercase());
    let loaded = DkimSigners::load(std::slice::from_ref(config))
        .map_err(|e| e.to_string())
        .and_then(|(signers, _)| {
            signers
                .public_keys()
                .next()
                .cloned()
                .ok_or_else(|| "no key loaded".to_owned())
        });
    let key = match loaded {
        Ok(key) => key,
        Err(e) => {
            return Check::new(
                CheckKind::Dkim,
                subject,
                Status::Fail,
                format!("the private key cannot be used: {e}"),
            )
        }
    };
    let name = key.dns_name();
    let advice = txt_line(&name, &key.txt_record());
    let new = |status, message: String| Check::new(CheckKind::Dkim, &name, status, message);
    let txt = match dns.txt(&name).await {
        DnsAnswer::Records(txt, _) => txt,
        DnsAnswer::NoData | DnsAnswer::NxDomain => {
            return new(Status::Fail, format!("no TXT record at {name}")).advice(advice);
        }
        DnsAnswer::Failed(reason) => return Check::unchecked(CheckKind::Dkim, &name, &format!("TXT {name}"), &reason),
    };
    let records: Vec<&String> = txt.iter().filter(|t| tag(t, "p").is_some()).collect();
    let record = match records[..] {
        [one] => one.clone(),
        [] => {
            let found = txt.join(" | ");
            return new(
                Status::Fail,
                format!("{}: not a DKIM key record (no p= tag)", quoted(&found)),
            )
            .record(found)
            .advice(advice);
        }
        ref several => {
            let found = several.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | ");
            return new(
                Status::Fail,
                format!(
                    "{} DKIM records at {name} ({}): receivers may use either",
                    several.len(),
                    quoted(&found)
                ),
            )
            .record(found)
            .advice(advice);
        }
    };
    let (status, message) = verdict(&record, &key, &config.key.display().to_string());
    let out = new(status, message).record(record);
    if status == Status::Pass {
        out
    } else {
        out.advice(advice)
    }
}

/// Compares the published `record` with `key` (whose private half is in `path`).
fn verdict(record: &str, key: &DkimPublicKey, path: &str) -> (Status, String) {
    let shown = quoted(record);
    let first_tag = record
        .split(';')
        .next()
        .and_then(|t| t.split_once('='))
        .map(|(n, _)| n.trim());
    if let Some(version) = tag(record, "v") {
        if first_tag != Some("v") || version != "DKIM1" {
            return (
                Status::Fail,
                format!("{shown}: v= must be the first tag and be DKIM1 (RFC 6376 §3.6.1)"),
            );
        }
    }
    let published_type = tag(record, "k").unwrap_or_else(|| "rsa".to_owned());
    let p = tag(record, "p").unwrap_or_default();
    if p.is_empty() {
        return (Status::Fail, format!("{shown}: the key is revoked (empty p=)"));
    }
    if !published_type.eq_ignore_ascii_case(key.algorithm.key_type()) {
        return (
            Status::Fail,
            format!(
                "{shown}: k={published_type} but the key in {path} is {}",
                key.algorithm.key_type()
            ),
        );
    }
    match base64::engine::general_purpose::STANDARD.decode(&p) {
        Ok(bytes) if bytes == key.public_key => (Status::Pass, format!("{shown} matches the private key in {path}")),
        Ok(_) => (
            Status::Fail,
            format!("{shown}: p= is not the public half of the private key in {path}"),
        ),
        Err(e) => (Status::Fail, format!("{shown}: p= is not base64: {e}")),
    }
}

/// The value of tag `name` in a DKIM tag list (RFC 6376 §3.2), whitespace removed.
fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|item| {
        let (tag, value) = item.split_once('=')?;
        (tag.trim() == name).then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_engine::dkim::DkimAlgorithm;

    fn key() -> DkimPublicKey {
        DkimPublicKey {
            domain: "example.test".into(),
            selector: "s1".into(),
            algorithm: DkimAlgorithm::Ed25519Sha256,
            public_key: vec![7; 32],
        }
    }

    #[test]
    fn compares_version_type_and_key() {
        let key = key();
        let good = key.txt_record();
        assert_eq!(verdict(&good, &key, "k.pem").0, Status::Pass);
        let folded = good.replace("p=", "p= ").replace("; ", ";\t");
        assert_eq!(verdict(&folded, &key, "k.pem").0, Status::Pass, "{folded}");
        let (status, message) = verdict("v=DKIM1; k=ed25519; p=", &key, "k.pem");
        assert_eq!(status, Status::Fail);
        assert!(message.contains("revoked"), "{message}");
        let (_, message) = verdict(&good.replace("ed25519", "rsa"), &key, "k.pem");
        assert!(message.contains("k=rsa but the key in k.pem is ed25519"), "{message}");
        let (_, message) = verdict("k=ed25519; v=DKIM1; p=AAAA", &key, "k.pem");
        assert!(message.contains("first tag"), "{message}");
        let other = "v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let (status, message) = verdict(other, &key, "k.pem");
        assert_eq!(status, Status::Fail);
        assert!(
            message.contains("not the public half") && message.contains(other),
            "{message}"
        );
    }
}
