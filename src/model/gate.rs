//! The data-quality gates of a run (docs/design.md §7).

/// Gates an operator may override (docs/design.md §7). Schema problems are not
/// gates: without the columns there is nothing to compute.
pub const GATES: [&str; 4] = [
    "no_data",
    "reject_ratio",
    "active_customers_change",
    "revenue_change",
];
