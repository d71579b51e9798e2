//! Random fault decisions: percentage draws and where a dropped transaction dies.

/// True with probability `pct` percent. 0 never draws, 100 always does, so tests at the
/// extremes are deterministic.
pub(crate) fn chance(pct: f64) -> bool {
    if pct <= 0.0 {
        false
    } else if pct >= 100.0 {
        true
    } else {
        fastrand::f64() * 100.0 < pct
    }
}

/// Where a transaction chosen for a drop loses its connection. The sink closes the socket
/// instead of answering the command at that point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropPoint {
    /// Instead of answering MAIL FROM.
    Mail,
    /// Instead of answering the transaction's first RCPT TO.
    Rcpt,
    /// Instead of answering DATA (no 354).
    Data,
    /// After the final dot, before the final reply: the RFC 1047 window in which the client
    /// cannot know whether the message was taken. Such a message is not counted as accepted.
    AfterDot,
}

impl DropPoint {
    /// Decides once per transaction, at MAIL: with probability `drop_pct` percent, a point
    /// picked uniformly among the four.
    pub(crate) fn draw(drop_pct: f64) -> Option<DropPoint> {
        if !chance(drop_pct) {
            return None;
        }
        Some(match fastrand::u8(0..4) {
            0 => DropPoint::Mail,
            1 => DropPoint::Rcpt,
            2 => DropPoint::Data,
            _ => DropPoint::AfterDot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_are_deterministic() {
        assert!((0..1000).all(|_| chance(100.0)));
        assert!((0..1000).all(|_| !chance(0.0)));
        assert!((0..1000).all(|_| DropPoint::draw(0.0).is_none()));
        assert!((0..1000).all(|_| DropPoint::draw(100.0).is_some()));
    }

    #[test]
    fn half_is_roughly_half() {
        let hits = (0..10_000).filter(|_| chance(50.0)).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
    }

    #[test]
    fn every_drop_point_occurs() {
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let i = match DropPoint::draw(100.0) {
                Some(DropPoint::Mail) => 0,
                Some(DropPoint::Rcpt) => 1,
                Some(DropPoint::Data) => 2,
                Some(DropPoint::AfterDot) => 3,
                None => unreachable!("100% always draws"),
            };
            seen[i] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
