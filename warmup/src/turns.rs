//! Smooth weighted round robin: whose turn it is among a pool's IPs. Each gets its weight's
//! share of turns, spread evenly rather than in bursts (nginx's algorithm). The run's IP
//! rotation and the planner take turns the same way.

/// The turns of `weights.len()` slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedTurns {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl WeightedTurns {
    /// Turns in proportion to `weights` (a slot of weight 0 never gets one).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> WeightedTurns {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let total = weights.iter().sum();
        WeightedTurns {
            current: vec![0; weights.len()],
            weights,
            total,
        }
    }

    /// The slot whose turn is next (0 when there is none).
    pub fn next_turn(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        if let Some(c) = self.current.get_mut(best) {
            *c -= self.total;
        }
        best
    }

    /// The turns of one full cycle: the sum of the weights. After a cycle the turns start over
    /// exactly where they were.
    pub fn cycle(&self) -> u64 {
        u64::try_from(self.total).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_follow_the_weights_smoothly_and_repeat_each_cycle() {
        let mut t = WeightedTurns::new([1, 3, 0]);
        let start = t.clone();
        let picks: Vec<usize> = (0..t.cycle()).map(|_| t.next_turn()).collect();
        assert_eq!(picks, [1, 0, 1, 1]);
        assert_eq!(t, start, "a cycle ends where it began");
    }
}
