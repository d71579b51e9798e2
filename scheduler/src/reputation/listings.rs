//! Blocklist listings of the source IPs, as the monitor last found them, and operators'
//! overrides (send although listed), which live in `<state_dir>/holds/overrides/<ip>` so that
//! they survive a restart and end when the listing clears.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::{HoldDir, ReputationError};

/// What a listing does to the IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnListed {
    /// The IP sends nothing until the listing clears or an operator overrides it.
    #[default]
    Pause,
    /// The listing is shown and logged; the IP goes on sending.
    Warn,
}

/// One zone listing one IP.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    pub zone: String,
    /// The zone's return codes.
    pub codes: Vec<Ipv4Addr>,
    /// When the monitor first saw it (RFC 3339).
    pub since: String,
}

/// One source IP's blocklist state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListingView {
    pub source_ip: IpAddr,
    /// The zones it was checked against.
    pub checked: Vec<String>,
    pub listed: Vec<Listing>,
    /// Whether the listing keeps it from sending (`on_listed = "pause"`, no override).
    pub held: bool,
    /// Whether an operator let it send although listed.
    pub overridden: bool,
}

#[derive(Debug)]
struct IpState {
    checked: Vec<String>,
    listed: Vec<Listing>,
    on_listed: OnListed,
}

/// Every IP's listings and the overrides.
#[derive(Debug, Default)]
pub(super) struct Listings {
    by_ip: BTreeMap<IpAddr, IpState>,
    overrides: HashSet<IpAddr>,
}

impl Listings {
    /// Replaces `ip`'s listings; whether a listing cleared (listed before, not now).
    pub(super) fn set(&mut self, ip: IpAddr, checked: &[String], listed: Vec<Listing>, on_listed: OnListed) -> bool {
        let before = self.by_ip.remove(&ip);
        let was: Vec<Listing> = before.map(|s| s.listed).unwrap_or_default();
        let mut now = Vec::with_capacity(listed.len());
        for mut l in listed {
            match was.iter().find(|w| w.zone == l.zone) {
                // Still listed: since the first sighting.
                Some(w) => l.since.clone_from(&w.since),
                None => tracing::warn!(
                    "blocklists: {ip} is listed on {} ({}){}",
                    l.zone,
                    codes(&l.codes),
                    match on_listed {
                        OnListed::Pause if !self.overrides.contains(&ip) =>
                            "; it sends nothing until the listing clears or an operator overrides it",
                        _ => "",
                    }
                ),
            }
            now.push(l);
        }
        for w in &was {
            if !now.iter().any(|l| l.zone == w.zone) {
                tracing::warn!("blocklists: {ip} is no longer listed on {}", w.zone);
            }
        }
        let cleared = !was.is_empty() && now.is_empty();
        if cleared {
            self.overrides.remove(&ip);
        }
        self.by_ip.insert(
            ip,
            IpState {
                checked: checked.to_vec(),
                listed: now,
                on_listed,
            },
        );
        cleared
    }

    pub(super) fn is_listed(&self, ip: IpAddr) -> bool {
        self.by_ip.get(&ip).is_some_and(|s| !s.listed.is_empty())
    }

    /// Whether a listing keeps `ip` from sending.
    pub(super) fn blocks(&self, ip: IpAddr) -> bool {
        self.by_ip
            .get(&ip)
            .is_some_and(|s| !s.listed.is_empty() && s.on_listed == OnListed::Pause)
            && !self.overrides.contains(&ip)
    }

    pub(super) fn any_blocking(&self) -> bool {
        self.by_ip.keys().any(|ip| self.blocks(*ip))
    }

    pub(super) fn set_override(&mut self, ip: IpAddr, on: bool) {
        if on {
            self.overrides.insert(ip);
        } else {
            self.overrides.remove(&ip);
        }
    }

    /// Takes the overrides found on disk (placed or removed by another process).
    pub(super) fn load_overrides(&mut self, on_disk: &[IpAddr]) {
        self.overrides = on_disk.iter().copied().collect();
    }

    /// Overrides of IPs that were checked and are not listed.
    pub(super) fn stale_overrides(&self) -> Vec<IpAddr> {
        self.overrides
            .iter()
            .filter(|ip| self.by_ip.get(ip).is_some_and(|s| s.listed.is_empty()))
            .copied()
            .collect()
    }

    pub(super) fn views(&self) -> Vec<ListingView> {
        self.by_ip
            .iter()
            .map(|(ip, s)| ListingView {
                source_ip: *ip,
                checked: s.checked.clone(),
                listed: s.listed.clone(),
                held: self.blocks(*ip),
                overridden: self.overrides.contains(ip),
            })
            .collect()
    }
}

fn codes(codes: &[Ipv4Addr]) -> String {
    codes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

fn overrides_dir(dir: &HoldDir) -> PathBuf {
    dir.path().join("overrides")
}

fn file_of(ip: IpAddr) -> String {
    ip.to_string().replace(':', "_")
}

fn io(path: PathBuf, action: &'static str) -> impl FnOnce(std::io::Error) -> ReputationError {
    move |source| ReputationError::Io { path, action, source }
}

/// Records an operator's override of `ip`'s listing (`volley reputation resume --ip`); a
/// running process takes it within about a second.
pub fn write_override(dir: &HoldDir, ip: IpAddr) -> Result<(), ReputationError> {
    let folder = overrides_dir(dir);
    std::fs::create_dir_all(&folder).map_err(io(folder.clone(), "create the overrides folder"))?;
    let path = folder.join(file_of(ip));
    let file = std::fs::File::create(&path).map_err(io(path.clone(), "write an override"))?;
    file.sync_all().map_err(io(path, "sync an override"))?;
    let _ = volley_files::sync_dir(&folder);
    Ok(())
}

/// Forgets `ip`'s override (its listing cleared).
pub(super) fn remove_override(dir: &HoldDir, ip: IpAddr) -> Result<(), ReputationError> {
    let path = overrides_dir(dir).join(file_of(ip));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, "remove an override")(e)),
        _ => Ok(()),
    }
}

/// The overrides on disk (names that are not addresses are ignored).
pub fn read_overrides(dir: &HoldDir) -> Vec<IpAddr> {
    let Ok(entries) = std::fs::read_dir(overrides_dir(dir)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.replace('_', ":").parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(zone: &str, since: &str) -> Listing {
        Listing {
            zone: zone.into(),
            codes: vec![Ipv4Addr::new(127, 0, 0, 2)],
            since: since.into(),
        }
    }

    #[test]
    fn a_pausing_listing_blocks_until_it_clears_or_is_overridden() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let zones = vec!["bl.test".to_string()];
        let mut l = Listings::default();
        assert!(!l.set(ip, &zones, vec![], OnListed::Pause));
        assert!(!l.blocks(ip));
        l.set(ip, &zones, vec![listing("bl.test", "t1")], OnListed::Pause);
        assert!(l.blocks(ip) && l.any_blocking());
        // Still listed at the next check: the first sighting's time is kept.
        l.set(ip, &zones, vec![listing("bl.test", "t2")], OnListed::Pause);
        assert_eq!(l.views()[0].listed[0].since, "t1");
        l.set_override(ip, true);
        assert!(!l.blocks(ip));
        assert!(l.views()[0].overridden);
        // Cleared: the override ends with it, and a new listing blocks again.
        assert!(l.set(ip, &zones, vec![], OnListed::Pause));
        l.set(ip, &zones, vec![listing("bl.test", "t3")], OnListed::Pause);
        assert!(l.blocks(ip));
        // `warn` never blocks.
        l.set(ip, &zones, vec![listing("bl.test", "t3")], OnListed::Warn);
        assert!(!l.blocks(ip) && !l.any_blocking());
    }

    #[test]
    fn overrides_are_kept_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let holds = HoldDir::new(dir.path());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        write_override(&holds, a).unwrap();
        write_override(&holds, b).unwrap();
        let mut found = read_overrides(&holds);
        found.sort();
        assert_eq!(found, vec![a, b]);
        remove_override(&holds, a).unwrap();
        remove_override(&holds, a).unwrap();
        assert_eq!(read_overrides(&holds), vec![b]);
        // The overrides folder is not a hold file.
        let (holds_found, errors) = holds.list();
        assert!(holds_found.is_empty() && errors.is_empty(), "{errors:?}");
    }
}
