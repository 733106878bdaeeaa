//! JSON Schemas of job and config files, generated from the very types that
//! parse them, and the Markdown key reference built from a schema.
//!
//! The schemas are checked in (`schemas/job.schema.json`,
//! `schemas/config.schema.json`) for editors: every shipped YAML names its
//! schema on a first `# yaml-language-server: $schema=…` line. A test fails
//! when a checked-in schema or a generated reference page is stale, and
//! rewrites them with `SEGMENTS_UPDATE_GENERATED=1` (as uv does).
//!
//! The schema checks shape (keys, types, allowed values); the parser's second
//! phase still checks meaning (files exist, names resolve, SQL parses).

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::job::JobFile;
use super::settings::ConfigFile;

/// A `${VAR}` placeholder: a config may give any value through one.
const VARIABLE_PATTERN: &str = r"^.*\$\{[A-Za-z_][A-Za-z0-9_]*\}.*$";

/// The JSON Schema (draft 7, the draft editors support best) of a job file.
pub fn job_schema() -> Value {
    let schema = SchemaSettings::draft07()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<JobFile>();
    finish(schema.to_value(), "job")
}

/// The JSON Schema of a config file. Numbers and booleans may also be
/// written as `${VAR}`: the variable is interpolated before parsing.
pub fn config_schema() -> Value {
    let schema = SchemaSettings::draft07()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<ConfigFile>();
    let mut value = schema.to_value();
    allow_variables(&mut value);
    finish(value, "config")
}

/// Add to the description where the schema comes from.
fn finish(mut schema: Value, kind: &str) -> Value {
    if let Value::Object(map) = &mut schema {
        let what = map
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        map.insert(
            "description".into(),
            json!(format!(
                "{what}\n\nGenerated from the Rust types that parse the file; see docs/reference/{}.md.",
                if kind == "job" { "job" } else { "configuration" }
            )),
        );
    }
    schema
}

/// Let every non-string scalar also be a `${VAR}` text.
fn allow_variables(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for value in map.values_mut() {
                allow_variables(value);
            }
            let scalar = |name: &str| matches!(name, "integer" | "number" | "boolean");
            let widened = match map.get("type") {
                Some(Value::String(name)) if scalar(name) => Some(json!([name, "string"])),
                Some(Value::Array(names))
                    if names.iter().any(|n| n.as_str().is_some_and(scalar))
                        && !names.iter().any(|n| n == "string") =>
                {
                    let mut names = names.clone();
                    names.push(json!("string"));
                    Some(Value::Array(names))
                }
                _ => None,
            };
            if let Some(types) = widened {
                // The string branch must be a placeholder: keep the other
                // constraints for the scalar and test strings by pattern.
                map.insert("type".into(), types);
                map.insert("pattern".into(), json!(VARIABLE_PATTERN));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_variables),
        _ => {}
    }
}

/// One documented key of a schema, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    /// `inputs.<name>.csv.delimiter`, `steps[].name`.
    pub path: String,
    /// `string`, `integer`, one of the values, …
    pub kind: String,
    /// `(required)`, the default as YAML, or empty.
    pub default: String,
    pub description: String,
    /// A page of the docs, relative to `docs/`.
    pub docs: Option<String>,
}

/// Every key of a schema, depth first: a key is followed by its sub-keys.
pub fn keys(schema: &Value) -> Vec<KeyDoc> {
    let mut keys = Vec::new();
    walk(schema, schema, "", &mut keys);
    keys
}

/// The `| key | type | default | what it does |` table of every key.
pub fn keys_markdown(schema: &Value) -> String {
    let mut out = String::from("| key | type | default | what it does |\n|---|---|---|---|\n");
    for key in keys(schema) {
        let more = key
            .docs
            .map(|page| format!(" ([more](../{page}))"))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {} | {} | {}{} |\n",
            key.path,
            key.kind,
            key.default,
            cell(&key.description),
            more
        ));
    }
    out
}

/// Text fit for one Markdown table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn walk(root: &Value, object: &Value, prefix: &str, keys: &mut Vec<KeyDoc>) {
    let object = resolve(root, object);
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let target = resolve(root, property);
        let description = text_of(property)
            .or_else(|| text_of(target))
            .unwrap_or_default();
        let default = if required.contains(&name.as_str()) {
            "(required)".to_string()
        } else {
            property
                .get("default")
                .or_else(|| target.get("default"))
                .filter(|value| !value.is_null())
                .map(yaml_of)
                .filter(|text| !text.is_empty())
                .map(|text| format!("`{text}`"))
                .unwrap_or_default()
        };
        let docs = property
            .get("x-docs")
            .and_then(Value::as_str)
            .map(String::from);
        keys.push(KeyDoc {
            path: path.clone(),
            kind: kind_of(root, property),
            default,
            description,
            docs,
        });
        descend(root, property, &path, keys);
    }
}

/// The sub-keys of a key: an object's properties, a map's or a list's items.
fn descend(root: &Value, property: &Value, path: &str, keys: &mut Vec<KeyDoc>) {
    let target = resolve(root, property);
    if target.get("properties").is_some() {
        walk(root, target, path, keys);
    } else if let Some(values) = target.get("additionalProperties").filter(|v| v.is_object()) {
        descend(root, values, &format!("{path}.<name>"), keys);
    } else if let Some(items) = target.get("items") {
        descend(root, items, &format!("{path}[]"), keys);
    } else if let Some(choices) = target.get("anyOf").and_then(Value::as_array) {
        for choice in choices {
            descend(root, choice, path, keys);
        }
    }
}

/// Follow a `$ref` into `definitions`, and an `allOf`/`anyOf` of one
/// reference plus `null` (schemars' shape of `Option<T>`).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if let Some(target) = root.get("definitions").and_then(|d| d.get(name)) {
            return resolve(root, target);
        }
    }
    for combinator in ["allOf", "anyOf"] {
        if let Some(choices) = schema.get(combinator).and_then(Value::as_array) {
            let non_null: Vec<&Value> = choices
                .iter()
                .filter(|c| c.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if let [only] = non_null.as_slice() {
                return resolve(root, only);
            }
        }
    }
    schema
}

fn text_of(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(String::from)
}

/// A short type: `string`, `integer`, `list of string`, `map of input`, or
/// the allowed values.
fn kind_of(root: &Value, schema: &Value) -> String {
    let target = resolve(root, schema);
    if let Some(values) = allowed_values(target) {
        return values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let types: Vec<&str> = match target.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    // A scalar that may also be a `${VAR}` is still that scalar.
    let main: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| *t != "null")
        .filter(|t| !(*t == "string" && types.len() > 1 && target.get("pattern").is_some()))
        .collect();
    match main.as_slice() {
        ["array"] => {
            let items = target.get("items").map(|i| kind_of(root, i));
            format!("list of {}", items.unwrap_or_else(|| "values".into()))
        }
        ["object"] if target.get("properties").is_some() => "map".into(),
        ["object"]
            if target
                .get("additionalProperties")
                .is_some_and(|v| resolve(root, v).get("properties").is_some()) =>
        {
            "map of maps".into()
        }
        ["object"] => {
            let values = target
                .get("additionalProperties")
                .filter(|v| v.is_object())
                .map(|v| kind_of(root, v));
            match values {
                Some(values) => format!("map of {values}"),
                None => "map".into(),
            }
        }
        [single] => (*single).into(),
        [] => match target.get("anyOf").and_then(Value::as_array) {
            Some(choices) => choices
                .iter()
                .map(|c| kind_of(root, c))
                .collect::<Vec<_>>()
                .join(" or "),
            None => "any".into(),
        },
        many => many.join(" or "),
    }
}

/// The values of an enum: `enum: [...]` or a `oneOf` of constants.
fn allowed_values(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(yaml_of).collect());
    }
    let choices = schema.get("oneOf")?.as_array()?;
    let mut values = Vec::new();
    for choice in choices {
        if let Some(value) = choice.get("const") {
            values.push(yaml_of(value));
        } else {
            values.extend(allowed_values(choice)?);
        }
    }
    Some(values)
}

/// A JSON value as a YAML user writes it.
fn yaml_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Object(map) if map.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}
