//! Sans-IO tests of the sink's layer: bytes in, replies and counters out, no sockets. The
//! protocol itself (sequencing, line limits, STARTTLS resets, BDAT reading) is tested in
//! `volley-smtp-server`.

use std::net::IpAddr;

use super::*;
use crate::sink::canned::{CannedReply, Stage};
use crate::sink::config::SinkConfig;
use crate::sink::fault_plan::Fault;

struct Harness {
    shared: Shared,
    session: Session,
}

impl Harness {
    fn new(config: SinkConfig) -> Self {
        let shared = Shared::new(config).expect("valid config");
        Harness {
            session: Session::new(IpAddr::from([127, 0, 0, 7]), Arc::clone(&shared.smtp)),
            shared,
        }
    }

    /// Feeds `input` as one read; returns the replies of that batch and the flow.
    fn feed(&mut self, input: &[u8]) -> (String, Flow) {
        self.session.smtp.input_mut().extend_from_slice(input);
        let flow = self.session.process(&self.shared);
        let out = self.session.smtp.output().to_vec();
        self.session.smtp.clear_output();
        (String::from_utf8(out).expect("replies are UTF-8"), flow)
    }

    /// Reply codes of a batch, one per reply (continuation lines skipped).
    fn codes(&mut self, input: &[u8]) -> Vec<u16> {
        let (text, _) = self.feed(input);
        text.split("\r\n")
            .filter(|line| line.len() >= 4 && line.as_bytes()[3] == b' ' || line.len() == 3)
            .map(|line| line[..3].parse().expect("reply code"))
            .collect()
    }
}

#[test]
fn pipelined_transaction_yields_one_reply_per_command() {
    let mut h = Harness::new(SinkConfig::default());
    assert_eq!(h.codes(b"EHLO c.test\r\n"), [250]);
    let codes = h.codes(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<a@X.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n");
    assert_eq!(codes, [250, 250, 250, 354]);
    let (text, flow) = h.feed(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert!(text.starts_with("250 2.0.0 Ok: queued as "), "{text}");
    assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text}");
    assert_eq!(flow, Flow::Close);
    let stats = h.shared.counters.snapshot();
    assert_eq!((stats.messages, stats.recipients, stats.commands), (1, 2, 6));
    assert_eq!(h.shared.addresses.get("a@x.test"), 1);
}

#[test]
fn size_limits() {
    let mut h = Harness::new(SinkConfig {
        max_message_size: 10,
        ..SinkConfig::default()
    });
    h.feed(b"EHLO c\r\n");
    assert_eq!(h.codes(b"MAIL FROM:<> SIZE=11\r\n"), [552]);
    assert_eq!(
        h.codes(b"MAIL FROM:<> SIZE=10\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"),
        [250, 250, 354]
    );
    assert_eq!(h.codes(b"0123456789ABC\r\n.\r\n"), [552]);
    assert_eq!(h.shared.counters.snapshot().messages, 0);
    // The transaction is over; a new one fits.
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"),
        [250, 250, 354]
    );
    assert_eq!(h.codes(b"0123456\r\n.\r\n"), [250]);
}

#[test]
fn drop_after_dot_is_not_counted() {
    let mut h = Harness::new(SinkConfig::default());
    assert_eq!(
        h.codes(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n"),
        [250, 250, 250]
    );
    // Force the last drop point to test the RFC 1047 window deterministically.
    h.session.envelope.drop_at = Some(DropPoint::AfterDot);
    assert_eq!(h.codes(b"DATA\r\n"), [354]);
    let (text, flow) = h.feed(b"body\r\n.\r\n");
    assert_eq!((text.as_str(), flow), ("", Flow::Drop));
    let stats = h.shared.counters.snapshot();
    assert_eq!((stats.drops, stats.drops_after_data, stats.messages), (1, 1, 0));
}

#[test]
fn canned_data_reply_uses_the_first_recipient_domain() {
    let mut h = Harness::new(SinkConfig {
        canned: vec![CannedReply {
            domain: "gmail.test".into(),
            stage: Stage::Data,
            text: "421-4.7.28 rate limited {ip}\r\n421 4.7.28 for {domain}".into(),
            percent: 100.0,
        }],
        ..SinkConfig::default()
    });
    h.feed(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@other.test>\r\nRCPT TO:<b@gmail.test>\r\nDATA\r\n");
    assert_eq!(h.codes(b".\r\n"), [250], "first recipient is not at gmail.test");
    h.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@GMAIL.test>\r\nDATA\r\n");
    let (text, flow) = h.feed(b"x\r\n.\r\n");
    assert_eq!(
        text,
        "421-4.7.28 rate limited 127.0.0.7\r\n421 4.7.28 for gmail.test\r\n"
    );
    assert_eq!(flow, Flow::Close, "421 closes the channel");
    let stats = h.shared.counters.snapshot();
    assert_eq!((stats.messages, stats.canned_replies), (1, 1));
}

#[test]
fn canned_mail_reply_and_connect_banner() {
    let mut h = Harness::new(SinkConfig {
        canned: vec![
            CannedReply {
                domain: "*".into(),
                stage: Stage::Mail,
                text: "550 5.7.1 sender {rcpt} at {domain} refused".into(),
                percent: 100.0,
            },
            CannedReply {
                domain: "*".into(),
                stage: Stage::Connect,
                text: "554 5.7.1 no service for {ip}".into(),
                percent: 100.0,
            },
        ],
        ..SinkConfig::default()
    });
    assert_eq!(h.session.greeting(&h.shared), Flow::Close);
    assert_eq!(h.session.smtp.output(), b"554 5.7.1 no service for 127.0.0.7\r\n");
    h.session.smtp.clear_output();
    let (text, _) = h.feed(b"HELO c\r\nMAIL FROM:<s@Sender.test>\r\nRCPT TO:<a@x.test>\r\n");
    assert_eq!(
        text,
        "250 sink.volley.test\r\n550 5.7.1 sender s@Sender.test at Sender.test refused\r\n\
         503 5.5.1 Error: need MAIL command\r\n"
    );
}

fn chunking() -> Harness {
    let mut h = Harness::new(SinkConfig {
        chunking: true,
        ..SinkConfig::default()
    });
    let (ehlo, _) = h.feed(b"EHLO c\r\n");
    assert!(
        ehlo.contains("250-CHUNKING\r\n") || ehlo.ends_with("250 CHUNKING\r\n"),
        "{ehlo}"
    );
    h
}

#[test]
fn bdat_last_pipelined_with_the_envelope_is_one_batch() {
    let mut h = chunking();
    // The chunk holds what would end DATA content and what looks like commands: BDAT reads
    // octets, not lines, and nothing in them is interpreted.
    let body = b"Subject: x\r\n\r\n.\r\nQUIT\r\n";
    let mut group = format!(
        "MAIL FROM:<s@c.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nBDAT {} LAST\r\n",
        body.len()
    )
    .into_bytes();
    group.extend_from_slice(body);
    group.extend_from_slice(b"NOOP\r\n");
    let (text, flow) = h.feed(&group);
    assert_eq!(flow, Flow::Continue);
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[3].starts_with("250 2.0.0 Ok: queued as "), "{text}");
    assert_eq!(lines[4], "250 2.0.0 Ok");
    let stats = h.shared.counters.snapshot();
    assert_eq!((stats.messages, stats.recipients), (1, 2));
}

#[test]
fn bdat_chunks_split_across_reads_are_read_exactly() {
    let mut h = chunking();
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 10\r\n0123"),
        [250, 250]
    );
    assert_eq!(h.codes(b"45678"), Vec::<u16>::new());
    assert_eq!(h.codes(b"9BDAT 3 LAST\r\nab"), [250], "first chunk complete");
    assert_eq!(h.codes(b"cRSET\r\n"), [250, 250], "last chunk, then RSET");
    assert_eq!(h.shared.counters.snapshot().messages, 1);
    // A zero-length last chunk ends a transaction at once (RFC 3030 §2).
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 0 LAST\r\n"),
        [250, 250, 250]
    );
    assert_eq!(h.shared.counters.snapshot().messages, 2);
    assert_eq!(h.shared.counters.snapshot().bdat_chunks, 3);
}

#[test]
fn failed_bdat_is_read_and_answered_with_an_error() {
    let mut h = Harness::new(SinkConfig {
        chunking: true,
        permfail_pct: 100.0,
        ..SinkConfig::default()
    });
    h.feed(b"EHLO c\r\n");
    // RFC 3030 §2: the chunk's octets are read and discarded even when the transaction failed.
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 6 LAST\r\nRSET\r\nNOOP\r\n"),
        [250, 550, 554, 250]
    );
    // Without MAIL the chunk is still consumed.
    assert_eq!(h.codes(b"BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n"), [503, 250]);
    assert_eq!(h.shared.counters.snapshot().messages, 0);
}

#[test]
fn bdat_last_reply_takes_data_end_faults() {
    let mut h = Harness::new(SinkConfig {
        chunking: true,
        faults: vec![Fault::new(FaultStage::DataEnd, FaultKind::Close, 100.0, None)],
        ..SinkConfig::default()
    });
    h.feed(b"EHLO c\r\n");
    let (text, flow) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 2 LAST\r\nab");
    assert_eq!(flow, Flow::Drop);
    assert_eq!(text, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    assert_eq!(
        h.shared.counters.snapshot().messages,
        1,
        "accepted, reply lost (RFC 1047)"
    );
}
