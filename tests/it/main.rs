//! Integration tests: one binary, so the linker runs once. Each module runs the
//! real `segments` binary or its library parts against real files.

// Fixture expectations are literal tuples, written to be read against the rows.
#![allow(clippy::type_complexity)]

mod audiences;
mod backfill;
mod bad_input;
#[cfg(feature = "ballista")]
mod ballista;
mod catalog;
mod cli;
mod common;
mod compare;
mod concurrency;
mod container;
mod delta;
mod deploy;
mod diff;
mod duplicates;
mod export;
mod fixture;
mod fuzz;
mod generated;
mod incremental;
mod init;
mod invariants;
mod jobs;
mod labels;
mod layers;
mod lifecycle;
mod lineage;
mod lint;
mod memory;
mod metrics;
mod own_columns;
mod predict;
mod quickstart;
mod readers;
mod reference;
mod report;
mod sandbox;
mod scoring;
mod steps;
mod store_summary;
mod stores;
mod timezone;
mod why;
mod yaml_props;
