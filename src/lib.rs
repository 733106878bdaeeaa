//! `segments`: monthly customer segmentation on Apache DataFusion.
//!
//! Data flows one way: [`config`] → [`engine`] (inputs) → [`pipeline`] (SQL
//! steps and classification) → [`outputs`] (tables) → [`publish`]
//! (warehouse). [`runner`] strings them together for one period; [`cli`] is
//! the command line on top.

// Errors carry DataFusion's error (large) on cold paths; boxing them all would
// only add noise.
#![allow(clippy::result_large_err)]

pub mod catalog;
pub mod cli;
pub mod compare;
pub mod config;
pub mod diff;
pub mod engine;
pub mod erasure;
pub mod generate;
pub mod lease;
pub mod lint;
pub mod outputs;
pub mod period;
pub mod pipeline;
pub mod predict;
pub mod publish;
pub mod readiness;
pub mod report;
pub mod restate;
pub mod retention;
pub mod runner;
pub mod storage;
pub mod why;
