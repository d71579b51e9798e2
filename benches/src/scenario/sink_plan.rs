//! [`plan`]: which sink process serves which domain groups, with which settings. Groups
//! without a `sink` table of their own share the scenario's `sinks` processes (`[sink]`
//! settings; the `k`-th such group goes to shared sink `k % sinks`); every group with its own
//! `[domains.sink]` table gets a process of its own after them. Sink 0 is the catch-all route.

use super::spec::{Scenario, SinkSpec};

/// One sink process of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedSink<'a> {
    /// Its settings.
    pub spec: &'a SinkSpec,
    /// Indexes of the domain groups routed to it.
    pub groups: Vec<usize>,
}

/// The sink processes of `scenario`, in start order.
pub fn plan(scenario: &Scenario) -> Vec<PlannedSink<'_>> {
    let shared: Vec<usize> = (0..scenario.domains.len())
        .filter(|&g| scenario.domains[g].sink.is_none())
        .collect();
    let mut sinks = Vec::new();
    if !shared.is_empty() {
        let n = scenario.sinks.max(1);
        for j in 0..n {
            sinks.push(PlannedSink {
                spec: &scenario.sink,
                groups: shared.iter().copied().skip(j).step_by(n).collect(),
            });
        }
    }
    for (g, group) in scenario.domains.iter().enumerate() {
        if let Some(spec) = &group.sink {
            sinks.push(PlannedSink { spec, groups: vec![g] });
        }
    }
    sinks
}

/// The sink index of every domain group (`plan(..)[result[g]]` serves group `g`).
pub fn sink_of_groups(plan: &[PlannedSink<'_>], groups: usize) -> Vec<usize> {
    let mut of = vec![0; groups];
    for (index, sink) in plan.iter().enumerate() {
        for &g in &sink.groups {
            if let Some(slot) = of.get_mut(g) {
                *slot = index;
            }
        }
    }
    of
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn shared_groups_go_round_robin_and_own_sinks_follow() {
        let text = "sinks = 2\n\
            [[domains]]\nname = \"a\"\nweight = 1\ndomain = \"a.test\"\n\
            [[domains]]\nname = \"big\"\nweight = 1\ndomain = \"big.test\"\n\
            [domains.sink]\nmax_connections_per_client = 3\nlatency = \"50ms\"\n\
            [[domains]]\nname = \"b\"\nweight = 1\ndomain = \"b.test\"\n\
            [[domains]]\nname = \"c\"\nweight = 1\ndomain = \"c.test\"\n";
        let s = Scenario::parse(text, Path::new("s.toml")).unwrap();
        let plan = plan(&s);
        let groups: Vec<Vec<usize>> = plan.iter().map(|p| p.groups.clone()).collect();
        assert_eq!(groups, [vec![0, 3], vec![2], vec![1]]);
        assert_eq!(plan[2].spec.max_connections_per_client, Some(3));
        assert_eq!(plan[0].spec, &s.sink);
        assert_eq!(sink_of_groups(&plan, 4), [0, 2, 1, 0]);
        let flags = s.sink_flags(plan[2].spec, None);
        assert_eq!(flags, ["--latency", "50ms", "--max-connections-per-client", "3"]);
    }
}
