//! The scheduler's integration tests, one module per area, linked into one test binary
//! (one link and one copy of the dependencies instead of one per file).

mod blocklist_monitor;
mod bounce_rules;
mod common;
mod fault_matrix;
mod inbound_listener;
mod inbound_postfix;
mod inject_spool;
mod input_campaign;
mod input_fetch;
mod input_message;
mod input_recipients;
mod input_streaming;
mod input_unsubscribe;
mod late_feedback;
mod reputation_guard;
mod send_destinations;
mod send_dkim;
mod send_fairness;
mod send_mta_sts;
mod send_mx;
mod send_priority;
mod send_receivers;
mod send_run;
mod send_verp;
mod send_warmup;
mod service;
mod submission_clients;
mod submission_policy;
mod submission_setup;
mod suppression_outage;
mod suppression_run;
mod suppression_store;
mod tls_rpt_delivery;
mod unsubscribe_endpoint;
mod warmup_redis;
