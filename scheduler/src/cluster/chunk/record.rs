//! A record of a chunk campaign's accounting log as the merge reads it: found by its key bytes
//! when the accounting log wrote it ([`Spans`]), parsed field by field otherwise.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::json_string;

/// A record of a chunk campaign's log, as the merge needs it.
pub(super) enum Parsed<'a> {
    /// As [`crate::accounting::AccountingLog`] writes it: found by [`Spans::find`] without
    /// parsing the line (parsing every field was most of a merge's cost: benches/cluster.sh).
    Written(Spans<'a>),
    /// Anything else that is a JSON object: its fields in their order.
    Other(Vec<(Cow<'a, str>, &'a RawValue)>),
}

impl<'a> Parsed<'a> {
    /// `None` for a line that is not a JSON object.
    pub(super) fn of(text: &'a [u8]) -> Option<Parsed<'a>> {
        if let Some(spans) = Spans::find(text) {
            return Some(Parsed::Written(spans));
        }
        serde_json::from_slice::<Record>(text).ok().map(|r| Parsed::Other(r.0))
    }

    fn field(fields: &[(Cow<'a, str>, &'a RawValue)], name: &str) -> Option<&'a str> {
        fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.get())
    }

    /// The record's line in the chunk's rows.
    pub(super) fn local_line(&self) -> Option<u64> {
        match self {
            Parsed::Written(s) => Some(s.line),
            Parsed::Other(fields) => Self::field(fields, "line").and_then(|v| serde_json::from_str(v).ok()),
        }
    }

    /// The outcome (empty when the record has none).
    pub(super) fn outcome(&self) -> Cow<'a, str> {
        match self {
            Parsed::Written(s) => Cow::Borrowed(s.outcome),
            Parsed::Other(fields) => Self::field(fields, "outcome")
                .and_then(|v| serde_json::from_str::<Cow<'_, str>>(v).ok())
                .unwrap_or_default(),
        }
    }

    /// Appends the record as the node's log has it: the fields in their order, values as
    /// written, `line` (the original line) and `campaign` (JSON `campaign`) replaced, `node`
    /// (JSON) last; then a newline.
    pub(super) fn write_merged(&self, out: &mut Vec<u8>, line: u64, campaign: &str, node: &str) {
        match self {
            Parsed::Written(s) => {
                let text = s.text;
                let line_buf = itoa_buf(line);
                let line = line_buf.as_str();
                let (first, second) = match s.campaign.start < s.line_digits.start {
                    true => ((&s.campaign, campaign), (&s.line_digits, line)),
                    false => ((&s.line_digits, line), (&s.campaign, campaign)),
                };
                out.extend_from_slice(&text[..first.0.start]);
                out.extend_from_slice(first.1.as_bytes());
                out.extend_from_slice(&text[first.0.end..second.0.start]);
                out.extend_from_slice(second.1.as_bytes());
                // Without the closing brace (checked by `Spans::find`).
                out.extend_from_slice(&text[second.0.end..text.len() - 1]);
                out.extend_from_slice(b",");
            }
            Parsed::Other(fields) => {
                out.push(b'{');
                for (key, value) in fields {
                    if key == "node" {
                        continue;
                    }
                    out.extend_from_slice(json_string(key).as_bytes());
                    out.push(b':');
                    match &**key {
                        "line" => out.extend_from_slice(line.to_string().as_bytes()),
                        "campaign" => out.extend_from_slice(campaign.as_bytes()),
                        _ => out.extend_from_slice(value.get().as_bytes()),
                    }
                    out.push(b',');
                }
            }
        }
        out.extend_from_slice(b"\"node\":");
        out.extend_from_slice(node.as_bytes());
        out.extend_from_slice(b"}\n");
    }
}

/// Where a record line as the accounting log writes it (one flat JSON object, `campaign` an
/// id, `outcome` a word, `line` a number, no `node`) has the values the merge reads or
/// replaces.
///
/// A key is found by its bytes `"name":` right after `{` or `,`: inside a JSON string every
/// quote is escaped, so those bytes are never inside a value. Each key must occur once (a
/// nested object could hold another) and the line must be an object; anything else is left
/// to the parser.
pub(super) struct Spans<'a> {
    text: &'a [u8],
    line: u64,
    line_digits: std::ops::Range<usize>,
    outcome: &'a str,
    /// The `campaign` value with its quotes.
    campaign: std::ops::Range<usize>,
}

impl<'a> Spans<'a> {
    fn find(text: &'a [u8]) -> Option<Spans<'a>> {
        if text.first() != Some(&b'{') || text.last() != Some(&b'}') {
            return None;
        }
        let [Some(start), Some(outcome), Some(campaign), None] = keys(text)? else {
            return None;
        };
        let len = text[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        let line_digits = start..start + len;
        let line = std::str::from_utf8(&text[line_digits.clone()]).ok()?.parse().ok()?;
        if text.get(line_digits.end).is_some_and(|b| !matches!(b, b',' | b'}')) {
            return None;
        }
        let outcome = plain_string(text, outcome)?;
        let campaign = campaign..campaign + plain_string(text, campaign)?.len() + 2;
        (!outcome.is_empty()).then_some(Spans {
            text,
            line,
            line_digits,
            outcome,
            campaign,
        })
    }
}

/// `n` in decimal, formatted without a heap allocation.
fn itoa_buf(n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    let mut n = n;
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// A number's decimal digits (see [`itoa_buf`]).
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// The keys [`keys`] looks for, as their bytes `"name":`.
static KEYS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 4]> = std::sync::LazyLock::new(|| {
    [r#""line":"#, r#""outcome":"#, r#""campaign":"#, r#""node":"#].map(memchr::memmem::Finder::new)
});

/// Where the values of the top-level [`KEYS`] start; `None` when one occurs twice (see
/// [`Spans`]).
fn keys(text: &[u8]) -> Option<[Option<usize>; 4]> {
    let mut found = [None; 4];
    for (slot, finder) in found.iter_mut().zip(KEYS.iter()) {
        for at in finder.find_iter(text) {
            if at == 0 || !matches!(text[at - 1], b'{' | b',') {
                continue;
            }
            if slot.is_some() {
                return None;
            }
            *slot = Some(at + finder.needle().len());
        }
    }
    Some(found)
}

/// The string value at `at` when it has no escapes (ids, outcome words).
fn plain_string(text: &[u8], at: usize) -> Option<&str> {
    let rest = text.get(at..)?.strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then(|| std::str::from_utf8(&rest[..end]).ok())?
}

/// An accounting record's fields in their order, values as raw JSON; keys are borrowed from
/// the line unless escaped.
struct Record<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Record<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(Key(key)) = map.next_key()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(Record(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A key, borrowed from the input unless it had to be unescaped.
#[derive(serde::Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the accounting log writes it is merged without parsing it, to the same
    /// bytes the parser's path gives, even with key-like text inside its values.
    #[test]
    fn a_written_record_is_merged_without_parsing_to_the_same_bytes() {
        use crate::accounting::AccountingRecord;
        use crate::outcome::Outcome;
        let record = AccountingRecord {
            ts: "2026-12-04T16:00:21.896Z".into(),
            campaign: "c.c1",
            recipient: "a@x.test",
            domain: "x.test",
            source_ip: Some("127.0.0.2".parse().expect("ip")),
            mx: Some("mx.x.test"),
            site: Some("mx.x.test"),
            provider: None,
            outcome: Outcome::Bounced,
            code: Some(550),
            enhanced: Some("5.1.1".into()),
            category: "bad-mailbox",
            attempt: 2,
            latency_ms: 12,
            message_id: Some("m1@x.test"),
            phase: Some("rcpt"),
            text: "no ,\"line\":5,\"node\":\"x\",\"campaign\":\"y\" {\"outcome\":\"z\"} \\",
            tls: false,
            maybe_duplicate: false,
            line: 1,
            next_attempt: None,
            suppression: None,
        };
        let text = serde_json::to_vec(&record).expect("json");
        let Some(Parsed::Written(spans)) = Parsed::of(&text) else {
            panic!("not found without parsing: {}", String::from_utf8_lossy(&text));
        };
        assert_eq!((spans.line, spans.outcome), (1, "bounced"));
        let fast = Parsed::Written(spans);
        let slow = Parsed::Other(serde_json::from_slice::<Record>(&text).expect("record").0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        fast.write_merged(&mut a, 41, "\"c\"", "\"n1\"");
        slow.write_merged(&mut b, 41, "\"c\"", "\"n1\"");
        assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        let got: serde_json::Value = serde_json::from_slice(&a).expect("one JSON line");
        assert_eq!((got["line"].as_u64(), got["campaign"].as_str()), (Some(41), Some("c")));
        assert_eq!(
            (got["node"].as_str(), got["text"].as_str()),
            (Some("n1"), Some(record.text))
        );
        // Not as the log writes it: the parser's path.
        for other in [
            &br#"{"line":1,"outcome":"delivered","campaign":"c.c1","node":"n0"}"#[..],
            br#"{"line":1,"outcome":"delivered","campaign":"c.c1","x":{"line":2}}"#,
            br#"{"line":1,"outcome":"deliv\u0065red","campaign":"c.c1"}"#,
            br#"{"line":1.5,"outcome":"delivered","campaign":"c.c1"}"#,
        ] {
            assert!(
                matches!(Parsed::of(other), Some(Parsed::Other(_))),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 41, 1_000_000, u64::MAX] {
            assert_eq!(itoa_buf(n).as_str(), n.to_string());
        }
    }
}
