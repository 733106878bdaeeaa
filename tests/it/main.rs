//! Integration tests: one binary, so the linker runs once. Each module runs the
//! real `segments` binary or its library parts against real files.

// Fixture expectations are literal tuples, written to be read against the rows.
#![allow(clippy::type_complexity)]

mod backfill;
mod bad_input;
#[cfg(feature = "ballista")]
mod ballista;
mod cli;
mod common;
mod compare;
mod deploy;
mod export;
mod fixture;
mod invariants;
mod jobs;
mod memory;
mod readers;
mod reference;
mod s3;
mod sandbox;
mod timezone;
mod yaml_props;
