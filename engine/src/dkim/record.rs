//! The DNS side of a key: [`DkimPublicKey`], its name (`<selector>._domainkey.<domain>`) and its
//! TXT record (`v=DKIM1; k=...; p=...`, RFC 6376 §3.6.1), also split for zone files.

use base64::Engine as _;

use super::DkimAlgorithm;

/// Longest character-string in a TXT record (RFC 1035 §3.3).
pub const TXT_STRING_MAX: usize = 255;

/// A public key as it must be published for receivers to verify our signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimPublicKey {
    /// The signing domain (`d=`), lowercased.
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// The key's algorithm.
    pub algorithm: DkimAlgorithm,
    /// The `p=` bytes: SubjectPublicKeyInfo DER (RSA) or the raw 32-byte key (Ed25519, RFC 8463 §4).
    pub public_key: Vec<u8>,
}

impl DkimPublicKey {
    /// Where the record lives: `<selector>._domainkey.<domain>` (no trailing dot).
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's text: `v=DKIM1; k=rsa; p=<base64>`.
    pub fn txt_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.key_type(),
            base64::engine::general_purpose::STANDARD.encode(&self.public_key)
        )
    }

    /// The TXT record as a zone-file line: the text split into quoted strings of at most 255
    /// bytes, which resolvers join back together (RFC 6376 §3.6.2.2).
    pub fn zone_file_line(&self) -> String {
        let quoted = split_txt(&self.txt_record())
            .iter()
            .map(|part| format!("\"{part}\""))
            .collect::<Vec<_>>()
            .join(" ");
        format!("{}. IN TXT ( {quoted} )", self.dns_name())
    }
}

/// `text` cut into pieces of at most [`TXT_STRING_MAX`] bytes (the record is ASCII).
pub fn split_txt(text: &str) -> Vec<&str> {
    let mut parts = Vec::with_capacity(text.len() / TXT_STRING_MAX + 1);
    let mut rest = text;
    while rest.len() > TXT_STRING_MAX {
        let mut cut = TXT_STRING_MAX;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_long_records_into_255_byte_strings() {
        let text = "x".repeat(600);
        let parts = split_txt(&text);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [255, 255, 90]);
        assert_eq!(parts.concat(), text);
        assert_eq!(split_txt("short"), ["short"]);
    }

    #[test]
    fn formats_name_record_and_zone_line() {
        let key = DkimPublicKey {
            domain: "example.com".into(),
            selector: "s1".into(),
            algorithm: DkimAlgorithm::Ed25519Sha256,
            public_key: vec![0; 32],
        };
        assert_eq!(key.dns_name(), "s1._domainkey.example.com");
        assert_eq!(
            key.txt_record(),
            "v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
        assert_eq!(
            key.zone_file_line(),
            "s1._domainkey.example.com. IN TXT ( \"v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" )"
        );
    }
}
