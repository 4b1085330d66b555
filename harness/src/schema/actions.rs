//! actions.yaml and action params: each action's params as one JSON
//! schema, the subset of JSON Schema Juju checks params against, and the
//! defaults it fills in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::*;

/// actions.yaml (shared/reference/ops-and-interfaces.md §2.2, §2.5): names
/// as Juju's `actions.go` accepts them, and each action's params schema.
pub(super) fn read_actions(text: &str, problems: &mut Vec<String>) -> BTreeMap<String, Value> {
    let mut actions = BTreeMap::new();
    let Some(document) = parse_yaml(text, problems) else {
        return actions;
    };
    let Value::Object(map) = document else {
        problems.push("must be a mapping of action names".into());
        return actions;
    };
    for (name, spec) in map {
        if !is_valid_action_name(&name) {
            problems.push(format!(
                "action {name:?}: names are lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit"
            ));
        }
        if is_reserved(&name) {
            problems.push(format!("action {name:?}: `juju` and `juju-*` are reserved"));
        }
        match action_schema(&spec) {
            Ok(schema) => {
                actions.insert(name, schema);
            }
            Err(problem) => problems.push(format!("action {name:?}: {problem}")),
        }
    }
    actions
}

/// `^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`
pub(super) fn is_valid_action_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.chars().all(|c| ok_char(c) || c == '-')
        && name.starts_with(ok_char)
        && name.ends_with(ok_char)
}

/// Why Juju refused an action's params: every problem found, not just the
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsRefused(pub Vec<ParamProblem>);

impl std::fmt::Display for ParamsRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let problems: Vec<String> = self.0.iter().map(ParamProblem::to_string).collect();
        write!(f, "validation failed: {}", problems.join("; "))
    }
}

/// One problem with action params, worded as Juju's validator words it
/// (`<path>: <what>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// `(root)` for the params object itself, else the dotted path
    /// (`target`, `tags.1`).
    pub path: String,
    pub what: String,
    /// For a value of the wrong type, the types the schema allows (so a
    /// command line, which reads values as YAML, can suggest quoting).
    pub allowed_types: Vec<String>,
}

impl ParamProblem {
    fn new(path: &str, what: String) -> ParamProblem {
        ParamProblem {
            path: path.to_string(),
            what,
            allowed_types: Vec::new(),
        }
    }
}

impl std::fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// The JSON schema Juju validates an action's params against, built from
/// the action's entry in actions.yaml.
pub(super) fn action_schema(spec: &Value) -> Result<Value, String> {
    let Value::Object(fields) = spec else {
        return Err("must be a mapping".into());
    };
    if let Some(key) = forbidden_schema_key(spec) {
        return Err(format!("`{key}` is not allowed in schemas"));
    }
    let mut schema = Map::new();
    schema.insert("type".into(), "object".into());
    for (key, value) in fields {
        match key.as_str() {
            "params" => {
                schema.insert("properties".into(), value.clone());
            }
            // Juju's own keys, not part of the schema.
            "description" | "title" | "parallel" | "execution-group" => {}
            _ => {
                schema.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Value::Object(schema))
}

/// The first `$ref` or `$schema` key in `value`, at any depth: Juju
/// prohibits both anywhere in an action
/// (shared/reference/ops-and-interfaces.md §2.5).
pub(super) fn forbidden_schema_key(value: &Value) -> Option<&'static str> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| match k.as_str() {
            "$ref" => Some("$ref"),
            "$schema" => Some("$schema"),
            _ => forbidden_schema_key(v),
        }),
        Value::Array(items) => items.iter().find_map(forbidden_schema_key),
        _ => None,
    }
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() != 0.0) => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(super) fn has_type(value: &Value, wanted: &str) -> bool {
    match wanted {
        "number" => value.is_number(),
        "integer" => type_name(value) == "integer",
        other => type_name(value) == other,
    }
}

/// The JSON-schema subset actions use: `type`, `enum`, `minLength`,
/// `maxLength`, `minimum`, `maximum`, `properties`, `required`,
/// `additionalProperties` and `items`. Problems are worded as Juju's
/// validator words them (`<path>: <what>`).
pub(super) fn validate(
    value: &Value,
    schema: &Value,
    path: &str,
    problems: &mut Vec<ParamProblem>,
) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(wanted) = schema.get("type") {
        let allowed: Vec<&str> = match wanted {
            Value::String(s) => vec![s.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
            problems.push(ParamProblem {
                allowed_types: allowed.iter().map(|t| t.to_string()).collect(),
                ..ParamProblem::new(
                    path,
                    format!(
                        "Invalid type. Expected: {}, given: {}",
                        allowed.join(", "),
                        type_name(value)
                    ),
                )
            });
            return;
        }
    }
    if let Some(Value::Array(choices)) = schema.get("enum") {
        if !choices.contains(value) {
            let list: Vec<String> = choices.iter().map(Value::to_string).collect();
            problems.push(ParamProblem::new(
                path,
                format!("{path} must be one of the following: {}", list.join(", ")),
            ));
        }
    }
    if let Value::String(s) = value {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                problems.push(ParamProblem::new(
                    path,
                    format!("String length must be greater than or equal to {min}"),
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                problems.push(ParamProblem::new(
                    path,
                    format!("String length must be less than or equal to {max}"),
                ));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                problems.push(ParamProblem::new(
                    path,
                    format!("Must be greater than or equal to {min}"),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                problems.push(ParamProblem::new(
                    path,
                    format!("Must be less than or equal to {max}"),
                ));
            }
        }
    }
    if let Value::Object(map) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    problems.push(ParamProblem::new(path, format!("{name} is required")));
                }
            }
        }
        for (key, item) in map {
            let child = if path == "(root)" {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => validate(item, sub, &child, problems),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => problems.push(ParamProblem::new(
                        path,
                        format!("Additional property {key} is not allowed"),
                    )),
                    Some(sub @ Value::Object(_)) => validate(item, sub, &child, problems),
                    // Absent means allowed on Juju 3 (shared/reference §2.5).
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &format!("{path}.{i}"), problems);
        }
    }
}

/// Fill in `default`s of properties the user left out, recursively.
pub(super) fn insert_defaults(value: &mut Value, schema: &Value) {
    let (Value::Object(map), Some(properties)) =
        (value, schema.get("properties").and_then(Value::as_object))
    else {
        return;
    };
    for (key, sub) in properties {
        match map.get_mut(key) {
            Some(existing) => insert_defaults(existing, sub),
            None => {
                if let Some(default) = sub.get("default") {
                    map.insert(key.clone(), default.clone());
                }
            }
        }
    }
}
