//! Integration tests: one binary, so the linker runs once. Each module runs the
//! real `segments` binary or its library parts against real files.

mod common;
mod cli;
mod fixture;
mod readers;
mod reference;
