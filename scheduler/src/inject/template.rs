//! Injection by template (`POST /messages` with `subject`/`text`/`html` and recipients with
//! substitutions, like KumoMTA's inject API): the template is checked once, as a campaign's
//! is, then each recipient's message is built by the campaign message builder — so the same
//! `{{name}}` placeholders, encodings and header-injection refusal apply — and injected as
//! a message of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::address::EmailAddress;
use crate::campaign::Campaign;
use crate::message::MessageFactory;
use crate::recipients::RecipientRow;

/// The template part of a request.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TemplateSpec {
    /// `From`: `Name <address>` or an address.
    pub from: String,
    /// `Reply-To`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The subject template.
    pub subject: String,
    /// The text body template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The HTML body template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Extra headers (name -> template).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// The campaign file a template becomes (never written: only parsed).
#[derive(serde::Serialize)]
struct AsCampaign<'a> {
    id: &'a str,
    recipients: &'a str,
    #[serde(flatten)]
    spec: &'a TemplateSpec,
}

/// A checked template, ready to build one message per recipient.
#[derive(Debug)]
pub struct Templated {
    factory: MessageFactory,
    columns: Vec<String>,
    from_address: String,
}

impl Templated {
    /// Checks `spec` for campaign `campaign` with substitution names `names` (the email
    /// column comes first); the error names the field.
    pub fn new(campaign: &str, spec: &TemplateSpec, names: &[String]) -> Result<Templated, String> {
        let text = toml::to_string(&AsCampaign {
            id: campaign,
            recipients: "(api).jsonl",
            spec,
        })
        .map_err(|e| format!("the template cannot be written as a campaign: {e}"))?;
        let source = Path::new("(request)");
        let parsed = Campaign::from_toml(source, &text).map_err(|e| e.to_string())?;
        let mut columns = vec!["email".to_owned()];
        columns.extend(names.iter().filter(|n| n.as_str() != "email").cloned());
        let compiled = parsed.compile(&columns).map_err(|e| e.to_string())?;
        Ok(Templated {
            factory: MessageFactory::new(&compiled),
            columns,
            from_address: parsed.from().address.as_str().to_owned(),
        })
    }

    /// The From address (the default envelope sender).
    pub fn from_address(&self) -> &str {
        &self.from_address
    }

    /// The message for `email` with `values`; the reason when this recipient is refused
    /// (a bad address, a value that would inject a header).
    pub fn build(&self, seq: u64, email: &str, values: &HashMap<String, String>) -> Result<Vec<u8>, String> {
        let email = EmailAddress::parse(email).map_err(|e| format!("{email:?}: {}", e.problem))?;
        let row_values = self
            .columns
            .iter()
            .map(|c| {
                if c == "email" {
                    email.as_str().to_owned()
                } else {
                    values.get(c).cloned().unwrap_or_default()
                }
            })
            .collect();
        let row = RecipientRow {
            line: seq,
            offset: 0,
            email,
            values: row_values,
        };
        self.factory
            .build(seq, &row)
            .map(|b| b.bytes)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TemplateSpec {
        TemplateSpec {
            from: "Shop <shop@example.com>".into(),
            subject: "Hello {{name}}".into(),
            text: Some("Your code: {{code}}".into()),
            headers: [("X-Order".to_string(), "{{code}}".to_string())].into_iter().collect(),
            ..TemplateSpec::default()
        }
    }

    #[test]
    fn each_recipient_gets_its_message_and_injection_is_refused_per_recipient() {
        let names = vec!["name".to_string(), "code".to_string()];
        let t = Templated::new("shop", &spec(), &names).expect("valid");
        assert_eq!(t.from_address(), "shop@example.com");
        let values: HashMap<_, _> = [("name", "Ann"), ("code", "42")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let msg = String::from_utf8(t.build(1, "ann@x.test", &values).expect("built")).expect("utf8");
        assert!(msg.contains("Subject: Hello Ann"), "{msg}");
        assert!(msg.contains("X-Order: 42"), "{msg}");
        assert!(msg.contains("Your code: 42"), "{msg}");
        let mut evil = values.clone();
        evil.insert("name".into(), "x\r\nBcc: victim@x.test".into());
        let e = t.build(2, "bob@x.test", &evil).expect_err("header injection");
        assert!(e.contains("Subject") && e.contains("control character"), "{e}");
        assert!(t.build(3, "not an address", &values).is_err());
    }

    #[test]
    fn a_bad_template_names_the_field() {
        let mut bad = spec();
        bad.subject = "Hello {{unknown}}".into();
        let e = Templated::new("shop", &bad, &["name".to_string()]).expect_err("unknown placeholder");
        assert!(e.contains("unknown"), "{e}");
        let mut bad = spec();
        bad.from = "nobody".into();
        let e = Templated::new("shop", &bad, &[]).expect_err("bad from");
        assert!(e.contains("from"), "{e}");
    }
}
