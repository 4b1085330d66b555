//! Action parameters: parsing `key=value` arguments the way `juju run`
//! does (values are YAML scalars, dotted keys nest) and checking them
//! against the action's schema in actions.yaml: the JSON-schema subset Juju
//! enforces for charms (type, required, additionalProperties — true by
//! default in Juju 3 — properties, enum, minLength/maxLength,
//! minimum/maximum), then filling in defaults.

use serde_json::{Map, Value};

use super::charm::ActionSpec;
use super::store::insert_dotted;
use super::Result;
use crate::sim_err;

/// Parse `juju run`-style arguments into a params object.
pub fn parse_params(args: &[String]) -> Result<Value> {
    let mut params = Value::Object(Map::new());
    for arg in args {
        let (key, raw) = arg
            .split_once('=')
            .ok_or_else(|| sim_err!("argument {arg:?} must be key=value"))?;
        if key.is_empty() {
            return Err(sim_err!("argument {arg:?} has an empty key"));
        }
        let value: Value = if raw.is_empty() {
            Value::String(String::new())
        } else {
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(raw)
                .ok()
                .and_then(|v| serde_json::to_value(v).ok())
                .unwrap_or_else(|| Value::String(raw.to_string()))
        };
        insert_dotted(&mut params, key, value);
    }
    Ok(params)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        other => type_name(value) == other,
    }
}

/// Check one value against its schema; errors name the parameter path.
fn check_value(path: &str, schema: &Value, value: &Value) -> Result<()> {
    if let Some(expected) = schema.get("type") {
        let allowed: Vec<&str> = match expected {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| type_matches(t, value)) {
            let hint = if allowed.contains(&"string") {
                format!(" (quote it to pass a string: {path}=\"'...'\")")
            } else {
                String::new()
            };
            return Err(sim_err!(
                "{path}: Invalid type. Expected: {}, given: {}{hint}",
                allowed.join(", "),
                type_name(value)
            ));
        }
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        if !choices.contains(value) {
            return Err(sim_err!(
                "{path}: must be one of the following: {}",
                choices
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                return Err(sim_err!(
                    "{path}: String length must be greater than or equal to {min}"
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                return Err(sim_err!(
                    "{path}: String length must be less than or equal to {max}"
                ));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(sim_err!("{path}: Must be greater than or equal to {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(sim_err!("{path}: Must be less than or equal to {max}"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (key, sub) in obj {
            if let Some(sub_schema) = props.get(key) {
                check_value(&format!("{path}.{key}"), sub_schema, sub)?;
            }
        }
    }
    Ok(())
}

/// Validate `params` for `action` and return them with defaults filled in.
pub fn validate(action_name: &str, spec: &ActionSpec, params: Value) -> Result<Value> {
    let mut params = match params {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (key, value) in &params {
        match spec.params.get(key) {
            Some(schema) => check_value(key, schema, value)?,
            None if !spec.additional_properties => {
                return Err(sim_err!(
                    "action {action_name:?}: additional property {key:?} is not allowed (known: {})",
                    spec.params.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            None => {}
        }
    }
    for required in &spec.required {
        if !params.contains_key(required) {
            return Err(sim_err!("action {action_name:?}: {required} is required"));
        }
    }
    for (key, schema) in &spec.params {
        if let Some(default) = schema.get("default") {
            params.entry(key.clone()).or_insert_with(|| default.clone());
        }
    }
    Ok(Value::Object(params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn spec() -> ActionSpec {
        let mut params = BTreeMap::new();
        params.insert("symlink".into(), json!({"type": "string", "minLength": 1}));
        params.insert("count".into(), json!({"type": "integer", "default": 3}));
        ActionSpec {
            description: String::new(),
            params,
            required: vec!["symlink".into()],
            additional_properties: false,
        }
    }

    #[test]
    fn params_are_yaml_scalars_and_validated() {
        let p = parse_params(&["symlink=r2".into(), "a.b=1".into()]).unwrap();
        assert_eq!(p, json!({"symlink": "r2", "a": {"b": 1}}));
        let ok = validate("x", &spec(), parse_params(&["symlink=r2".into()]).unwrap()).unwrap();
        assert_eq!(ok, json!({"symlink": "r2", "count": 3}));
        assert!(validate("x", &spec(), json!({})).is_err());
        assert!(validate("x", &spec(), json!({"symlink": "r2", "other": 1})).is_err());
        assert!(validate("x", &spec(), json!({"symlink": 2})).is_err());
        assert!(validate("x", &spec(), json!({"symlink": ""})).is_err());
    }
}
