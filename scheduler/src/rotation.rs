//! Source-IP rotation: smooth weighted round robin (each IP gets its weight's share, spread
//! evenly rather than in bursts).

use volley_engine::SourceIp;

/// Picks source IPs in proportion to their weights.
#[derive(Clone, Debug)]
pub struct IpRotation {
    ips: Vec<(SourceIp, i64, i64)>, // (ip, weight, current)
    total: i64,
}

impl IpRotation {
    /// A rotation over `(ip, weight)`; IPs with weight 0 are left out. Returns `None` when no
    /// IP has a positive weight.
    pub fn new(ips: impl IntoIterator<Item = (SourceIp, u32)>) -> Option<IpRotation> {
        let ips: Vec<_> = ips
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(ip, w)| (ip, i64::from(w), 0))
            .collect();
        let total = ips.iter().map(|(_, w, _)| w).sum();
        if ips.is_empty() {
            None
        } else {
            Some(IpRotation { ips, total })
        }
    }

    /// The next source IP.
    pub fn next_ip(&mut self) -> &SourceIp {
        let mut best = 0;
        for i in 0..self.ips.len() {
            self.ips[i].2 += self.ips[i].1;
            if self.ips[i].2 > self.ips[best].2 {
                best = i;
            }
        }
        self.ips[best].2 -= self.total;
        &self.ips[best].0
    }

    /// The IPs in rotation.
    pub fn ips(&self) -> impl Iterator<Item = &SourceIp> {
        self.ips.iter().map(|(ip, _, _)| ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(last: u8) -> SourceIp {
        SourceIp {
            ip: [127, 0, 0, last].into(),
            ehlo_name: Arc::from("x"),
        }
    }

    #[test]
    fn weights_are_respected_and_spread() {
        let mut r = IpRotation::new([(ip(2), 1), (ip(3), 3), (ip(4), 0)]).expect("rotation");
        let picks: Vec<u8> = (0..8)
            .map(|_| {
                if let std::net::IpAddr::V4(v) = r.next_ip().ip {
                    v.octets()[3]
                } else {
                    0
                }
            })
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 2);
        assert_eq!(picks.iter().filter(|&&p| p == 3).count(), 6);
        assert!(!picks.contains(&4));
        // smooth: never more than 3 of the heavy IP in a row
        assert!(!picks.windows(4).any(|w| w.iter().all(|&p| p == 3)));
        assert!(IpRotation::new([(ip(2), 0)]).is_none());
    }
}
