//! The first impression: `segments quickstart` on a copy of the repository's
//! jobs, SQL and config, and every command it prints afterwards works as
//! printed with what the README's commands install (DuckDB through Python,
//! `segments` through `cargo run --`).

use std::process::Command;

use crate::common::{copy_dir, repo, segments_ok};

#[test]
fn quickstart_prints_commands_that_work() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["config", "jobs", "sql"] {
        copy_dir(&repo().join(folder), &dir.path().join(folder));
    }
    let stdout = segments_ok(dir.path(), &["quickstart", "--customers", "300"]);
    assert!(
        dir.path()
            .join("warehouse/rfm_monthly/_runs/period=2025-12/_SUCCESS")
            .exists(),
        "{stdout}"
    );
    assert!(
        !stdout.contains("duckdb -c"),
        "the DuckDB CLI is not installed by anything: {stdout}"
    );

    // The DuckDB queries, through the shell exactly as printed.
    let queries: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| l.starts_with("python3 -c "))
        .collect();
    assert_eq!(queries.len(), 2, "{stdout}");
    let mut printed = Vec::new();
    for query in &queries {
        let output = Command::new("sh")
            .args(["-c", query])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{query}\nfailed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(text.contains('│'), "{query} printed no table: {text}");
        printed.push(text);
    }
    // The first query lists the segments of the published snapshot.
    assert!(
        printed[0].contains("champions") || printed[0].contains("lost"),
        "{}",
        printed[0]
    );

    // Every `cargo run -- <command>` it suggests names a real subcommand.
    let mut suggested = Vec::new();
    let mut rest = stdout.as_str();
    while let Some(at) = rest.find("`cargo run -- ") {
        rest = &rest[at + "`cargo run -- ".len()..];
        let command = rest.split([' ', '`']).next().unwrap().to_string();
        // `cargo run -- …` stands for any command.
        if command != "…" {
            suggested.push(command);
        }
    }
    assert!(suggested.len() >= 3, "{stdout}");
    for command in suggested {
        segments_ok(dir.path(), &[command.as_str(), "--help"]);
    }
}
