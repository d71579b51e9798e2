//! Header-style field blocks (RFC 3464 §2.1: "a set of fields … in the same syntax as
//! RFC 822 headers"; groups separated by blank lines): the body of a
//! `message/delivery-status` part, and a returned message's headers.

/// One block of fields: names lower-cased, values unfolded and trimmed, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldBlock {
    fields: Vec<(String, String)>,
}

impl FieldBlock {
    /// The first value of field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the block has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Why a block does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// 1-based line in the text.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// The most fields accepted in all blocks together; a report with more is malformed.
pub const MAX_FIELDS: usize = 10_000;

/// Splits `text` (CRLF or LF line ends) into blocks separated by blank lines. A line starting
/// with a blank continues the previous field (RFC 5322 §2.2.3 folding).
pub fn parse_blocks(text: &str) -> Result<Vec<FieldBlock>, FieldError> {
    let mut blocks = Vec::new();
    let mut current = FieldBlock::default();
    let mut count = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(FieldError {
                    line: i + 1,
                    reason: "continuation line without a field",
                });
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(FieldError {
                line: i + 1,
                reason: "line is neither `Name: value` nor a continuation",
            });
        };
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError {
                line: i + 1,
                reason: "bad field name",
            });
        }
        count += 1;
        if count > MAX_FIELDS {
            return Err(FieldError {
                line: i + 1,
                reason: "too many fields",
            });
        }
        current
            .fields
            .push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    Ok(blocks)
}

/// The part after `type;` of a typed DSN field (`rfc822; user@example.com`,
/// `smtp; 550 5.1.1 …`, `dns; mx.example.com`), trimmed; the whole value when it has no type.
pub fn typed_value(value: &str) -> &str {
    value.split_once(';').map_or(value, |(_, rest)| rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fold_and_lowercase() {
        let text = "Reporting-MTA: dns; mx.test\r\n\r\nFinal-Recipient: rfc822; a@b.test\r\nDiagnostic-Code: smtp; 550\r\n  user unknown\r\n\r\n\r\n";
        let blocks = parse_blocks(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].get("reporting-mta"), Some("dns; mx.test"));
        assert_eq!(blocks[1].get("DIAGNOSTIC-CODE"), Some("smtp; 550 user unknown"));
        assert_eq!(typed_value(blocks[1].get("final-recipient").unwrap()), "a@b.test");
    }

    #[test]
    fn garbage_names_its_line() {
        assert_eq!(
            parse_blocks("A: b\nno colon here\n"),
            Err(FieldError {
                line: 2,
                reason: "line is neither `Name: value` nor a continuation"
            })
        );
        assert_eq!(parse_blocks(" folded\n").unwrap_err().line, 1);
    }
}
