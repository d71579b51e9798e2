//! The files of a run, written into its work directory: `campaign.toml`, `body.txt`,
//! `recipients.csv`, the DKIM key (`volley dkim keygen`) and `volley.toml` (once the sinks'
//! addresses are known).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::ScenarioError;
use super::process::failed;
use super::recipients::{body, write_recipients, GroupCount};
use super::sink_plan::{plan, sink_of_groups};
use super::spec::{DkimMode, Scenario};

/// The From domain of the scenario's messages (and the DKIM `d=`).
pub const SENDER_DOMAIN: &str = "sender.bench.test";
/// The DKIM selector of the generated key.
pub const DKIM_SELECTOR: &str = "bench";
/// The campaign id, which names the state folder.
pub const CAMPAIGN_ID: &str = "scenario";

/// Paths of the files in a work directory.
#[derive(Clone, Debug)]
pub struct WorkDir {
    /// The folder.
    pub root: PathBuf,
}

impl WorkDir {
    /// `campaign.toml`.
    pub fn campaign(&self) -> PathBuf {
        self.root.join("campaign.toml")
    }
    /// `volley.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("volley.toml")
    }
    /// `summary.json`, written by `volley send --summary-json`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// `recipients.csv`.
    pub fn recipients(&self) -> PathBuf {
        self.root.join("recipients.csv")
    }
    /// The DKIM private key.
    pub fn dkim_key(&self) -> PathBuf {
        self.root.join("dkim.pem")
    }

    /// Writes the recipients, the body, the campaign and (when signing) the DKIM key; returns
    /// the recipients per domain group.
    pub fn write_inputs(&self, scenario: &Scenario, volley: &Path) -> Result<Vec<GroupCount>, ScenarioError> {
        let counts = write_recipients(&self.recipients(), scenario)?;
        let body_path = self.root.join("body.txt");
        std::fs::write(&body_path, body(scenario.message_size)).map_err(ScenarioError::io(&body_path))?;
        let campaign = format!(
            "# Written by volley-bench run.\n\
             id = \"{CAMPAIGN_ID}\"\n\
             from = \"Bench <news@{SENDER_DOMAIN}>\"\n\
             envelope_from = \"bounces@{SENDER_DOMAIN}\"\n\
             subject = \"Hello {{{{first_name}}}}\"\n\
             text_file = \"body.txt\"\n\
             recipients = \"recipients.csv\"\n"
        );
        std::fs::write(self.campaign(), campaign).map_err(ScenarioError::io(self.campaign()))?;
        if let Some(algorithm) = match scenario.dkim {
            DkimMode::Off => None,
            DkimMode::Rsa => Some("rsa"),
            DkimMode::Ed25519 => Some("ed25519"),
        } {
            self.keygen(volley, algorithm)?;
        }
        Ok(counts)
    }

    /// `volley dkim keygen` into [`WorkDir::dkim_key`].
    fn keygen(&self, volley: &Path, algorithm: &str) -> Result<(), ScenarioError> {
        let what = "volley dkim keygen";
        let stderr = self.root.join("dkim-keygen.stderr");
        let err = std::fs::File::create(&stderr).map_err(ScenarioError::io(&stderr))?;
        let key = self.dkim_key();
        let status = Command::new(volley)
            .args(["dkim", "keygen", "--domain", SENDER_DOMAIN, "--selector", DKIM_SELECTOR])
            .args(["--algorithm", algorithm, "--out"])
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .map_err(|source| ScenarioError::Spawn {
                what: what.to_owned(),
                program: volley.to_path_buf(),
                source,
            })?;
        if !status.success() {
            return Err(failed(what, format!("exited with {status}"), &stderr));
        }
        Ok(())
    }

    /// Writes `volley.toml`: source IPs, a route per domain group to its sink, TLS policy,
    /// retry schedule, DKIM key, then the scenario's `volley_config` merged over it.
    pub fn write_config(&self, scenario: &Scenario, sinks: &[SocketAddr]) -> Result<(), ScenarioError> {
        let text = toml::to_string(&volley_config(scenario, sinks)).map_err(|e| ScenarioError::Output {
            path: self.config(),
            line: None,
            reason: format!("cannot render the configuration: {e}"),
        })?;
        let text = format!("# Written by volley-bench run.\n{text}");
        std::fs::write(self.config(), text).map_err(ScenarioError::io(self.config()))
    }
}

/// The `volley.toml` of a scenario whose sinks listen on `sinks` (at least one).
pub fn volley_config(scenario: &Scenario, sinks: &[SocketAddr]) -> toml::Table {
    use toml::Value;
    let mut config = toml::Table::new();
    config.insert("state_dir".into(), Value::from("state"));
    let ips: Vec<Value> = (0..scenario.source_ips)
        .map(|i| {
            let n = u16::from(i) + 2;
            let mut ip = toml::Table::new();
            ip.insert("address".into(), Value::from(format!("127.0.0.{n}")));
            ip.insert("ehlo_name".into(), Value::from(format!("mta{n}.volley.test")));
            Value::Table(ip)
        })
        .collect();
    config.insert("source_ips".into(), Value::Array(ips));
    let mut routes = toml::Table::new();
    if let Some(first) = sinks.first() {
        routes.insert("*".into(), Value::from(first.to_string()));
    }
    // Each group to its sink (see sink_plan.rs); sink 0 is the catch-all.
    let of = sink_of_groups(&plan(scenario), scenario.domains.len());
    for (g, group) in scenario.domains.iter().enumerate() {
        let index = of[g];
        let Some(sink) = sinks.get(index).filter(|_| index != 0) else {
            continue;
        };
        for domain in group.domains() {
            routes.insert(domain, Value::from(sink.to_string()));
        }
    }
    config.insert("routes".into(), Value::Table(routes));
    let mut smtp = toml::Table::new();
    let tls = if scenario.tls { "opportunistic" } else { "disabled" };
    smtp.insert("tls".into(), Value::from(tls));
    config.insert("smtp".into(), Value::Table(smtp));
    let mut retry = toml::Table::new();
    retry.insert(
        "schedule".into(),
        Value::Array(vec![Value::from(scenario.retry_after.clone())]),
    );
    config.insert("retry".into(), Value::Table(retry));
    // A scenario's bounces are its fault mix, not a list going bad: no reputation holds (a
    // `volley_config` may turn them back on).
    let mut reputation = toml::Table::new();
    reputation.insert("enabled".into(), Value::from(false));
    config.insert("reputation".into(), Value::Table(reputation));
    if scenario.dkim != DkimMode::Off {
        let mut key = toml::Table::new();
        key.insert("domain".into(), Value::from(SENDER_DOMAIN));
        key.insert("selector".into(), Value::from(DKIM_SELECTOR));
        key.insert("key".into(), Value::from("dkim.pem"));
        config.insert("dkim".into(), Value::Array(vec![Value::Table(key)]));
    }
    if let Some(extra) = &scenario.volley_config {
        merge(&mut config, extra);
    }
    config
}

/// Merges `extra` into `base`: tables merge key by key, any other value replaces.
fn merge(base: &mut toml::Table, extra: &toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => merge(into, from),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_routed_round_robin_over_the_sinks() {
        let mut scenario = Scenario::builtin().unwrap();
        scenario.sinks = 2;
        scenario.volley_config =
            Some(toml::from_str("max_in_flight = 7\n[smtp]\nmax_connections_per_host = 3").unwrap());
        let sinks: Vec<SocketAddr> = vec!["127.0.0.1:1000".parse().unwrap(), "127.0.0.1:2000".parse().unwrap()];
        let config = volley_config(&scenario, &sinks);
        let routes = config["routes"].as_table().unwrap();
        assert_eq!(routes["*"].as_str(), Some("127.0.0.1:1000"));
        // Groups 1 (outlook-like) and 3 (tail) go to the second sink; 0 and 2 to the first.
        assert_eq!(routes["outlook-like.bench.test"].as_str(), Some("127.0.0.1:2000"));
        assert_eq!(routes["tail999.bench.test"].as_str(), Some("127.0.0.1:2000"));
        assert!(!routes.contains_key("gmail-like.bench.test"));
        assert_eq!(routes.len(), 1 + 1 + 1000);
        assert_eq!(config["source_ips"].as_array().unwrap().len(), 4);
        assert_eq!(config["source_ips"][3]["address"].as_str(), Some("127.0.0.5"));
        // volley_config merged: the table keeps `tls` and gains the new key.
        assert_eq!(config["smtp"]["tls"].as_str(), Some("opportunistic"));
        assert_eq!(config["smtp"]["max_connections_per_host"].as_integer(), Some(3));
        assert_eq!(config["max_in_flight"].as_integer(), Some(7));
        assert!(!config.contains_key("dkim"));
    }
}
