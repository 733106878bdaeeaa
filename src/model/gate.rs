//! The data-quality gates of a run (docs/design.md §7).

use std::fmt;

/// A gate an operator may override with `--allow-gate` (docs/design.md §7).
/// Schema problems are not gates: without the columns there is nothing to
/// compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Gate {
    /// No usable transaction is dated in the period.
    NoData,
    /// Too many rows rejected (`quality.max_reject_ratio`).
    RejectRatio,
    /// Active customers moved too much against the previous period.
    ActiveCustomersChange,
    /// Revenue moved too much against the previous period.
    RevenueChange,
}

impl Gate {
    /// Every gate, in the order runs check them.
    pub const ALL: [Gate; 4] = [
        Gate::NoData,
        Gate::RejectRatio,
        Gate::ActiveCustomersChange,
        Gate::RevenueChange,
    ];

    /// The name in flags, manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Gate::NoData => "no_data",
            Gate::RejectRatio => "reject_ratio",
            Gate::ActiveCustomersChange => "active_customers_change",
            Gate::RevenueChange => "revenue_change",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;
    use clap::ValueEnum;

    #[test]
    fn names_are_the_flag_values() {
        for gate in Gate::ALL {
            let value = gate.to_possible_value().unwrap();
            assert_eq!(value.get_name(), gate.name());
            assert_eq!(Gate::from_str(gate.name(), false), Ok(gate));
        }
    }
}
