//! The command-line reference page (`docs/reference/cli.md`, section
//! "Every command"), generated from the clap definitions so the page and
//! `--help` cannot drift apart. A test compares the page with [`markdown`].

use clap::{Arg, ArgAction, Command, CommandFactory};

use super::Cli;

/// Every command of the default build: its description, usage, options and
/// examples. The Ballista processes (`--features ballista`) are left out so
/// the page is the same whichever features built the binary.
pub fn markdown() -> String {
    let mut command = Cli::command();
    command.build();
    let documented: Vec<&Command> = command
        .get_subcommands()
        .filter(|sub| {
            let name = sub.get_name();
            !sub.is_hide_set() && name != "help" && !name.starts_with("ballista-")
        })
        .collect();
    let mut out = String::from("| command | what it does |\n|---|---|\n");
    for sub in &documented {
        let about = sub.get_about().map(|a| sentence(&a.to_string()));
        out.push_str(&format!(
            "| [`{name}`](#segments-{name}) | {} |\n",
            about.unwrap_or_default().replace('|', "\\|"),
            name = sub.get_name()
        ));
    }
    out.push_str("\nGlobal options, accepted by every command:\n\n");
    options_table(
        &mut out,
        command.get_arguments().filter(|a| a.is_global_set()),
    );
    for sub in documented {
        command_section(&mut out, sub);
    }
    out
}

fn command_section(out: &mut String, sub: &Command) {
    out.push_str(&format!("\n### `segments {}`\n\n", sub.get_name()));
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        out.push_str(&format!("{}\n\n", sentence(&about.to_string())));
    }
    let usage = sub.clone().render_usage().to_string();
    out.push_str(&format!("```text\n{}\n```\n\n", usage.trim_end()));
    let options: Vec<&Arg> = sub
        .get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set() && !is_help(a))
        .collect();
    if !options.is_empty() {
        options_table(out, options.into_iter());
    }
    if let Some(after) = sub.get_after_help() {
        out.push_str(&format!("```text\n{}\n```\n", after.to_string().trim_end()));
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
}

fn is_help(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
}

fn options_table<'a>(out: &mut String, args: impl Iterator<Item = &'a Arg>) {
    out.push_str("| option | what it does |\n|---|---|\n");
    for arg in args {
        if is_help(arg) {
            continue;
        }
        out.push_str(&format!("| {} | {} |\n", name_of(arg), description_of(arg)));
    }
    out.push('\n');
}

/// `` `--job <JOB>` ``, `` `-v`, `--verbose` ``, `` `<SHELL>` ``.
fn name_of(arg: &Arg) -> String {
    let value = if arg.get_action().takes_values() {
        let names = arg
            .get_value_names()
            .map(|names| names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
        names
            .iter()
            .map(|n| format!("<{n}>"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::new()
    };
    match (arg.get_short(), arg.get_long()) {
        (Some(short), Some(long)) => format!("`-{short}`, `--{long}`"),
        (None, Some(long)) if value.is_empty() => format!("`--{long}`"),
        (None, Some(long)) => format!("`--{long} {value}`"),
        (Some(short), None) => format!("`-{short}`"),
        (None, None) => format!("`{value}`"),
    }
}

/// The help text, then the possible values, the default, the variable and
/// whether the option repeats.
fn description_of(arg: &Arg) -> String {
    let mut parts = Vec::new();
    if let Some(help) = arg.get_long_help().or(arg.get_help()) {
        parts.push(sentence(&help.to_string()));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() {
        parts.push(format!("Values: {}.", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| format!("`{}`", v.to_string_lossy()))
        .collect();
    let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::Count);
    if !defaults.is_empty() && !flag {
        parts.push(format!("Default: {}.", defaults.join(", ")));
    }
    if let Some(variable) = arg.get_env() {
        parts.push(format!("Environment: `{}`.", variable.to_string_lossy()));
    }
    if matches!(arg.get_action(), ArgAction::Append | ArgAction::Count) {
        parts.push("Repeatable.".into());
    }
    parts.join(" ").replace('|', "\\|")
}

/// A help text on one line, ending with a full stop (clap drops the one of
/// a single-sentence doc comment), with `<` and `>` outside code spans
/// escaped so Markdown does not read `<out>` as HTML.
fn sentence(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.ends_with(['.', ':', '?', '!']) {
        line.push('.');
    }
    let mut escaped = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                escaped.push(c);
            }
            '<' if !in_code => escaped.push_str("&lt;"),
            '>' if !in_code => escaped.push_str("&gt;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
