//! YAML helpers shared by job and config parsing: serde errors with their
//! location, `${VAR}` interpolation and finding the line of a key.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::error::Problem;

/// Parse YAML text strictly, turning serde's error into a located problem.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Problem> {
    serde_yaml_ng::from_str(text).map_err(|error| {
        let location = error.location();
        // serde_yaml_ng prefixes the key path ("steps[0]: unknown field …") and
        // suffixes the location; keep the first and drop the second, we print it.
        let message = error.to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        let (key, message) = match message.split_once(": ") {
            Some((key, rest)) if !key.contains(' ') => (key.to_string(), rest.to_string()),
            _ => (String::new(), message),
        };
        Problem {
            file: file.to_path_buf(),
            key,
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    })
}

/// Replace `${NAME}` with the environment variable's value. Done per line so
/// line numbers survive; a missing variable is an error naming it, never its
/// would-be value.
pub fn interpolate(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut out = String::with_capacity(text.len());
    for (index, full_line) in text.split_inclusive('\n').enumerate() {
        // Comments are left as they are: `${VAR}` in a comment is prose.
        let (line, comment) = full_line.split_at(comment_start(full_line));
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                problems.push(Problem {
                    file: file.to_path_buf(),
                    key: String::new(),
                    line: Some(index + 1),
                    column: Some(line.len() - rest.len() + start + 1),
                    message: "unclosed `${`: write `${NAME}` to read the environment variable NAME"
                        .into(),
                });
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            match (valid, lookup(name)) {
                (true, Some(value)) => out.push_str(&value),
                (true, None) => {
                    problems.push(Problem {
                        file: file.to_path_buf(),
                        key: String::new(),
                        line: Some(index + 1),
                        column: Some(line.len() - rest.len() + start + 1),
                        message: format!(
                            "environment variable {name} is not set; export it before running"
                        ),
                    });
                }
                (false, _) => problems.push(Problem {
                    file: file.to_path_buf(),
                    key: String::new(),
                    line: Some(index + 1),
                    column: Some(line.len() - rest.len() + start + 1),
                    message: format!(
                        "`${{{name}}}` is not a variable name (letters, digits and _ only)"
                    ),
                }),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Byte offset where a YAML comment starts in a line (a `#` at the start
/// or after white space, outside quotes), or the line's length.
fn comment_start(line: &str) -> usize {
    let mut quote = None;
    let mut previous = ' ';
    for (offset, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return offset,
            _ => {}
        }
        previous = c;
    }
    line.len()
}

/// The 1-based line of the first line at or after `from_line` that contains
/// `needle`, used to point semantic problems at the YAML that caused them.
pub fn line_of(text: &str, needle: &str, from_line: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find(|(_, line)| line.contains(needle))
        .map(|(index, _)| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_reports_missing() {
        let file = Path::new("c.yaml");
        let env = |name: &str| (name == "BUCKET").then(|| "b1".to_string());
        assert_eq!(
            interpolate(file, "url: s3://${BUCKET}/x\n", env).unwrap(),
            "url: s3://b1/x\n"
        );
        let problems = interpolate(file, "a: 1\nkey: ${SECRET_KEY}\n", env).unwrap_err();
        assert_eq!(problems[0].line, Some(2));
        assert!(problems[0].message.contains("SECRET_KEY"));
        assert!(interpolate(file, "a: ${oops\n", env).is_err());
        // Comments are prose: a variable named there is not needed.
        assert_eq!(
            interpolate(
                file,
                "# set ${SECRET_KEY}\nurl: s3://${BUCKET}/x # not ${X}\nk: \"a#${BUCKET}\"\n",
                env
            )
            .unwrap(),
            "# set ${SECRET_KEY}\nurl: s3://b1/x # not ${X}\nk: \"a#b1\"\n"
        );
    }

    #[test]
    fn finds_lines() {
        let text = "a: 1\nsegments:\n  - name: x\n  - name: y\n";
        assert_eq!(line_of(text, "name: y", 1), Some(4));
        assert_eq!(line_of(text, "name: x", 4), None);
    }
}
