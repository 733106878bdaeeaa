//! The layering of `src/` (see `src/lib.rs`): every module imports only from
//! itself and the layers below it, so the crate has no module cycle and a
//! newcomer can read it from the bottom up. In the spirit of DataFusion's
//! crate dependency check: the rule is data, the check reads the sources.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, bottom first. Modules on one line share a
/// layer and must not import each other either.
const LAYERS: &[&[&str]] = &[
    &["model"],
    &["storage", "metrics", "lineage"],
    &["config"],
    &["warehouse"],
    &["engine"],
    &["inputs"],
    &["facts"],
    &["pipeline"],
    &["predict"],
    &["outputs"],
    &["analysis", "catalog", "generate", "init"],
    &["run", "lifecycle"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a source text names as `crate::<module>`, outside
/// comments (doc links may point anywhere).
fn crate_references(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = match code.find(" // ") {
            Some(comment) => &code[..comment],
            None => code,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` and `some_crate::` are not this crate.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b};`
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        found.insert(name.to_string());
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Wrong-way imports of one file of `module`: (referenced module, why).
fn violations(module: &str, source: &str) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return vec![format!(
            "`{module}` is in no layer: add it to LAYERS in tests/it/layers.rs"
        )];
    };
    crate_references(source)
        .into_iter()
        .filter(|used| used != module)
        .filter_map(|used| match layer_of(&used) {
            Some(layer) if layer < own => None,
            Some(layer) if layer == own => Some(format!(
                "imports `{used}`, which shares its layer {own}: move what both need below them"
            )),
            Some(layer) => Some(format!(
                "imports `{used}` (layer {layer}) from layer {own}: move what it needs down, or the code up"
            )),
            None => Some(format!("imports `{used}`, which is in no layer")),
        })
        .collect()
}

/// `source` with every `super::` chain that climbs to the crate root from a
/// file `depth` modules deep (`src/a/mod.rs`: 1, `src/a/b.rs`: 2) written
/// as `crate::`, so that `super::super::run` counts like `crate::run`.
fn resolve_super(source: &str, depth: usize) -> String {
    let chain = "super::".repeat(depth);
    let mut resolved = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find(&chain) {
        let before = &rest[..at];
        let after = &rest[at + chain.len()..];
        // Part of a longer chain, or of a longer word: not the crate root.
        let longer = before.ends_with("super::")
            || before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            || after.starts_with("super::");
        resolved.push_str(before);
        resolved.push_str(if longer { &chain } else { "crate::" });
        rest = after;
    }
    resolved.push_str(rest);
    resolved
}

/// How many modules deep a file under `src/` is.
fn module_depth(relative: &Path) -> usize {
    let components = relative.components().count();
    if relative.file_name().is_some_and(|n| n == "mod.rs") {
        components - 1
    } else {
        components
    }
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_from_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        modules.insert(module.clone());
        let source = resolve_super(
            &std::fs::read_to_string(file).unwrap(),
            module_depth(relative),
        );
        for problem in violations(&module, &source) {
            problems.push(format!("src/{}: {problem}", relative.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "wrong-way imports:\n{}",
        problems.join("\n")
    );
    // Every layer names a module that exists, so the table stays the map.
    for layer in LAYERS {
        for module in *layer {
            assert!(
                modules.contains(*module),
                "LAYERS names `{module}`, which src/ has not"
            );
        }
    }
}

#[test]
fn the_check_finds_wrong_way_and_sideways_imports() {
    // A configuration module reaching up into the runner, one of the
    // imports that made the old module cycle.
    let upward = "use crate::model::Period;\nuse crate::run::RunError;\n";
    assert_eq!(
        violations("config", upward).len(),
        1,
        "{:?}",
        violations("config", upward)
    );
    // Grouped imports and paths in expressions count; comments do not.
    let grouped = "use crate::{model::Period, outputs::PeriodTables};\n// crate::cli::x\n";
    assert_eq!(violations("pipeline", grouped).len(), 1);
    let inline = "    let x = crate::analysis::report::render(&built);\n";
    assert_eq!(violations("warehouse", inline).len(), 1);
    // Same layer, other module: refused too.
    assert_eq!(violations("catalog", "use crate::generate::x;").len(), 1);
    // Downward imports and `$crate::` are fine.
    assert!(violations("cli", "use crate::run::RunError; $crate::x::y").is_empty());
    assert!(violations("run", "use crate::model::Period;").is_empty());
    // `super::` that climbs to the crate root counts like `crate::`.
    let climbing = resolve_super("use super::super::run::RunError;\nuse super::x;\n", 2);
    assert_eq!(violations("config", &climbing).len(), 1, "{climbing}");
    let within = resolve_super("use super::super::run::RunError;\n", 3);
    assert!(violations("config", &within).is_empty(), "{within}");
    assert_eq!(module_depth(Path::new("config/mod.rs")), 1);
    assert_eq!(module_depth(Path::new("config/job.rs")), 2);
}
