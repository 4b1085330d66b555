//! config.yaml's options and the values an operator gives them: the
//! declared types, and numbers as Juju's JSON hands them to a charm.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;

/// config.yaml's options (shared/reference/ops-and-interfaces.md §2.4):
/// each has a known `type`, and a `default` of that type if any.
pub(super) fn read_options(
    text: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, ConfigOption> {
    let mut options = BTreeMap::new();
    let Some(config) = parse_yaml(text, problems) else {
        return options;
    };
    let Some(map) = config.get("options").and_then(Value::as_object) else {
        return options;
    };
    for (option, spec) in map {
        let Some(spelled) = spec.get("type").and_then(Value::as_str) else {
            problems.push(format!("{option} has no type"));
            continue;
        };
        let Ok(kind) = spelled.parse::<OptionType>() else {
            problems.push(format!(
                "{option}: unknown type {spelled:?}, expected string, int, float, boolean or secret"
            ));
            continue;
        };
        let default = spec.get("default").filter(|d| !d.is_null()).cloned();
        if let Some(Err(message)) = default.as_ref().map(|d| check_option_value(kind, d)) {
            problems.push(format!("{option}: default {message}"));
        }
        let description = spec
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        options.insert(
            option.clone(),
            ConfigOption {
                kind,
                default,
                description,
            },
        );
    }
    options
}

/// Values reach the charm through Juju's JSON API as float64 and are
/// printed as Go prints them, so a whole-number float is `2`, not `2.0`
/// (shared/reference/juju-hook-tools.md §3.1, §3.6).
pub fn juju_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(juju_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), juju_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether `value` may be given to an option of type `kind`.
pub fn check_option_value(kind: OptionType, value: &Value) -> Result<(), String> {
    let ok = match kind {
        OptionType::String => value.is_string(),
        OptionType::Secret => value.as_str().is_some_and(|s| s.starts_with("secret:")),
        OptionType::Boolean => value.is_boolean(),
        OptionType::Float => value.is_number(),
        OptionType::Int => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
    };
    if ok {
        Ok(())
    } else {
        let expected = match kind {
            OptionType::String => "a string",
            OptionType::Secret => "a secret URI (\"secret:...\")",
            OptionType::Boolean => "true or false",
            OptionType::Float => "a number",
            OptionType::Int => "a whole number",
        };
        Err(format!(
            "must be {expected} (type {} in config.yaml), got {value}",
            kind.as_ref()
        ))
    }
}
