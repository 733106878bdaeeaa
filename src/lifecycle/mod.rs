//! The data lifecycle of a warehouse after publishing: erasure of customers
//! (`segments forget`, [`forget`]) and restatement of periods whose inputs
//! changed (`segments status` and `backfill --changed`, [`restate`]).

pub mod forget;
pub mod restate;
