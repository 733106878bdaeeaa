//! `segments`: monthly customer segmentation on Apache DataFusion.
//!
//! The modules are layers, each importing only from those below it (checked
//! by `tests/it/layers.rs`); data flows down the list one way:
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | 0 | [`model`] | the vocabulary: periods, tables and their contracts, locales, manifest, gates, exit statuses, error causes |
//! | 1 | [`storage`], [`metrics`], [`lineage`] | object stores by URL, credentials, faults; the run's outcome pushed to a Prometheus Pushgateway; OpenLineage run events |
//! | 2 | [`config`] | job and config files, read and checked |
//! | 3 | [`warehouse`] | the layout and publishing protocol: publish, read back, lease, retention, erasure log |
//! | 4 | [`engine`] | the DataFusion session, its functions, bound parameters, Ballista |
//! | 5 | [`inputs`] | sources registered as canonical views, rejects, merges, readiness |
//! | 6 | [`facts`] | month facts of incremental steps: fingerprints, stored facts, their merge |
//! | 7 | [`pipeline`] | the job's SQL steps and the classification |
//! | 8 | [`predict`] | the predictive models and their tables |
//! | 9 | [`outputs`] | the output tables of a period |
//! | 10 | [`analysis`], [`catalog`], [`generate`], [`init`] | compare, diff, why, lint, report; BI catalogs; sample data; a project for the user's own export |
//! | 11 | [`run`], [`lifecycle`] | one period end to end; forget and restate |
//! | 12 | [`cli`] | the command line |
//!
//! The product contract is `docs/design.md`.

// Errors carry DataFusion's error (large) on cold paths; boxing them all would
// only add noise.
#![allow(clippy::result_large_err)]

pub mod model;

pub mod lineage;
pub mod metrics;
pub mod storage;

pub mod config;

pub mod warehouse;

pub mod engine;

pub mod inputs;

pub mod facts;

pub mod pipeline;

pub mod predict;

pub mod outputs;

pub mod analysis;
pub mod catalog;
pub mod generate;
pub mod init;

pub mod lifecycle;
pub mod run;

pub mod cli;
