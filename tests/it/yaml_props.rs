//! Property tests over job and config YAML (issue 4): random edits of the
//! shipped files never panic the loaders, and every refusal names where the
//! problem is — a key path or a line.

use std::path::Path;

use proptest::prelude::*;
use segments::config::{Config, ConfigError, Job};

use crate::common::{default_job, repo};

/// One random edit of a YAML text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceValue(usize, String),
    InsertKey(usize, String),
    Indent(usize, usize),
    Truncate(usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        Just("".to_string()),
        Just("[".to_string()),
        Just("{a: 1}".to_string()),
        Just("-3".to_string()),
        Just("yes".to_string()),
        Just("'unterminated".to_string()),
        Just("${NOT_SET_ANYWHERE}".to_string()),
        "[a-z_]{1,12}".prop_map(|s| s),
        "[ -~]{0,20}".prop_map(|s| s),
    ];
    prop_oneof![
        (0usize..200).prop_map(Edit::DeleteLine),
        (0usize..200).prop_map(Edit::DuplicateLine),
        ((0usize..200), token.clone()).prop_map(|(l, t)| Edit::ReplaceValue(l, t)),
        ((0usize..200), "[a-z_]{1,10}").prop_map(|(l, k)| Edit::InsertKey(l, k)),
        ((0usize..200), (1usize..5)).prop_map(|(l, n)| Edit::Indent(l, n)),
        (0usize..4000).prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match edit {
            Edit::DeleteLine(l) => {
                lines.remove(l % n);
            }
            Edit::DuplicateLine(l) => {
                let line = lines[l % n].clone();
                lines.insert(l % n, line);
            }
            Edit::ReplaceValue(l, token) => {
                let line = &mut lines[l % n];
                if let Some(colon) = line.find(": ") {
                    line.truncate(colon + 2);
                    line.push_str(token);
                }
            }
            Edit::InsertKey(l, key) => {
                let indent: String = lines[l % n].chars().take_while(|c| *c == ' ').collect();
                lines.insert(l % n, format!("{indent}{key}: 1"));
            }
            Edit::Indent(l, spaces) => {
                let line = format!("{}{}", " ".repeat(*spaces), lines[l % n]);
                lines[l % n] = line;
            }
            Edit::Truncate(at) => {
                let joined = lines.join("\n");
                let cut = (*at).min(joined.len());
                let cut = (0..=cut)
                    .rev()
                    .find(|i| joined.is_char_boundary(*i))
                    .unwrap_or(0);
                lines = joined[..cut].lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n") + "\n"
}

fn located(error: &ConfigError) {
    match error {
        ConfigError::Invalid(problems) => {
            assert!(!problems.is_empty());
            for problem in problems {
                assert!(
                    !problem.key.is_empty() || problem.line.is_some(),
                    "a problem without key or line: {problem}"
                );
                assert!(!problem.message.is_empty());
            }
        }
        ConfigError::Read { .. } => panic!("the file exists: {error}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_jobs_load_or_name_the_problem(edits in proptest::collection::vec(edit_strategy(), 1..4)) {
        let original = std::fs::read_to_string(default_job()).unwrap();
        // The job must sit next to the real sql/ folder: write beside it in a temp dir.
        let temp = tempfile::tempdir().unwrap();
        let text = apply(&original, &edits).replace("version: 1\n", &format!("version: 1\nsql_dir: {}\n", repo().join("sql").display()));
        let path = temp.path().join("job.yaml");
        std::fs::write(&path, &text).unwrap();
        if let Err(error) = Job::load(&path) {
            located(&error);
        }
    }

    #[test]
    fn mutated_configs_load_or_name_the_problem(edits in proptest::collection::vec(edit_strategy(), 1..4)) {
        let original = std::fs::read_to_string(repo().join("config/local.yaml")).unwrap();
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("config.yaml");
        std::fs::write(&path, apply(&original, &edits)).unwrap();
        if let Err(error) = Config::load_with_env(Path::new(&path), |_| None) {
            located(&error);
        }
    }
}
