//! Shared helpers for the engine's integration tests: a pool pointed at an in-process sink.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use volley_engine::smtp::dot::prepare;
use volley_engine::smtp::session::SessionParams;
use volley_engine::{Delivery, DeliveryPool, DeliveryReport, Envelope, MxHost, RouteKey, SmtpConfig, SourceIp};

pub fn source(last_octet: u8) -> SourceIp {
    SourceIp {
        ip: [127, 0, 0, last_octet].into(),
        ehlo_name: Arc::from(format!("mta{last_octet}.volley.test")),
    }
}

pub fn route(last_octet: u8, sink: SocketAddr) -> RouteKey {
    RouteKey::new(
        source(last_octet),
        MxHost {
            name: Arc::from("sink.volley.test"),
            addr: sink,
        },
    )
}

pub fn message(n: u64) -> Vec<u8> {
    format!(
        "From: <news@sender.test>\r\nTo: <x@dest.test>\r\nSubject: test {n}\r\nMessage-ID: <{n}@sender.test>\r\n\r\nBody of message {n}.\r\n.leading dot\r\n"
    )
    .into_bytes()
}

pub fn params(config: &SmtpConfig) -> SessionParams {
    config.session_params().expect("valid test config")
}

/// Short timeouts so fault tests finish quickly.
pub fn fast_config() -> SmtpConfig {
    SmtpConfig {
        timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(5)),
        ..SmtpConfig::default()
    }
}

/// Submits one single-recipient delivery per address and collects every report.
pub async fn deliver_all(config: SmtpConfig, routes: &[RouteKey], recipients: &[String]) -> Vec<DeliveryReport<usize>> {
    deliver_all_learning(config, routes, recipients).await.0
}

/// [`deliver_all`], plus the connection limits the pool learned on the way.
pub async fn deliver_all_learning(
    config: SmtpConfig,
    routes: &[RouteKey],
    recipients: &[String],
) -> (Vec<DeliveryReport<usize>>, Vec<volley_engine::pool::RouteConcurrency>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = DeliveryPool::new(config.clone(), params(&config), tx);
    let learned = pool.clone();
    let submitter = {
        let pool = pool.clone();
        let routes = routes.to_vec();
        let recipients = recipients.to_vec();
        tokio::spawn(async move {
            for (i, rcpt) in recipients.into_iter().enumerate() {
                let delivery = Delivery {
                    tag: i,
                    route: routes[i % routes.len()].clone(),
                    envelope: Envelope {
                        mail_from: "bounces@sender.test".into(),
                        recipients: vec![rcpt],
                    },
                    payload: prepare(&message(i as u64)).expect("valid message"),
                };
                pool.submit(delivery).await;
            }
            pool.close().await;
        })
    };
    let mut reports = Vec::new();
    while reports.len() < recipients.len() {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(r)) => reports.push(r),
            Ok(None) => break,
            Err(_) => panic!("no report within 60 s; got {} of {}", reports.len(), recipients.len()),
        }
    }
    submitter.await.expect("submitter");
    (reports, learned.concurrency())
}

/// Sends one delivery to `recipients` on `route` and returns its statuses.
pub async fn deliver_one(
    config: SmtpConfig,
    route: RouteKey,
    recipients: Vec<String>,
) -> Vec<volley_engine::RecipientStatus> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = DeliveryPool::new(config.clone(), params(&config), tx);
    pool.submit(Delivery {
        tag: 0usize,
        route,
        envelope: Envelope {
            mail_from: "bounces@sender.test".into(),
            recipients,
        },
        payload: prepare(&message(0)).expect("valid message"),
    })
    .await;
    let report = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a report within 30 s")
        .expect("a report");
    pool.close().await;
    report.statuses
}
