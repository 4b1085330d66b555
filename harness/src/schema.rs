//! What the charm declares, read the way Juju reads it: `metadata.yaml`
//! (name, endpoints, bindings), `config.yaml` (typed options with defaults)
//! and `actions.yaml` (a JSON schema per action).
//!
//! Juju checks config values and action params against these before the
//! charm ever runs; the in-memory Juju and charm-sim both do it here, so
//! neither can feed the charm something a real model never would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::HarnessError;

/// Which side of a relation an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Provides,
    Requires,
    Peers,
}

/// One endpoint from metadata.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointMeta {
    pub role: Role,
    pub interface: String,
    /// `limit:`, when given.
    pub limit: Option<u32>,
    /// `global` (the default) or `container`.
    pub scope: String,
}

/// A config option's declared type.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::AsRefStr, Serialize, Deserialize,
)]
#[strum(serialize_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum OptionType {
    String,
    Int,
    Float,
    Boolean,
    /// A secret URI (`secret:...`), passed as a string.
    Secret,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigOption {
    /// `type:`, as config.yaml spells it.
    #[serde(rename = "type")]
    pub kind: OptionType,
    pub default: Option<Value>,
    /// Shown by `charm-sim config`, as `juju config` shows it.
    #[serde(default)]
    pub description: String,
}

/// metadata.yaml, config.yaml and actions.yaml, parsed. charm-sim keeps
/// it in its model as JSON, so hook tools never read the YAML again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharmMeta {
    /// The application name Juju gives the charm by default.
    pub name: String,
    pub endpoints: BTreeMap<String, EndpointMeta>,
    #[serde(default)]
    pub extra_bindings: BTreeSet<String>,
    pub options: BTreeMap<String, ConfigOption>,
    /// Each action's params as one JSON schema (`type: object`), built as
    /// Juju builds it from the action's `params`, `required` and
    /// `additionalProperties`.
    pub actions: BTreeMap<String, Value>,
}

fn meta_error(file: &str, message: impl Into<String>) -> HarnessError {
    HarnessError::Metadata {
        file: file.to_string(),
        message: message.into(),
    }
}

fn parse_yaml(file: &str, text: &str) -> Result<Value, HarnessError> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| meta_error(file, e.to_string()))?;
    Ok(if value.is_null() {
        Value::Object(Map::new())
    } else {
        value
    })
}

impl CharmMeta {
    /// Read the three files from a charm directory. `metadata.yaml` is
    /// required (Juju refuses a charm without it); the others are optional.
    pub fn load(charm_dir: &Path) -> Result<CharmMeta, HarnessError> {
        let read = |name: &str| -> Result<Option<String>, HarnessError> {
            match std::fs::read_to_string(charm_dir.join(name)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(meta_error(name, format!("{}: {e}", charm_dir.display()))),
            }
        };
        let metadata = read("metadata.yaml")?.ok_or_else(|| {
            meta_error(
                "metadata.yaml",
                format!("not found in {}", charm_dir.display()),
            )
        })?;
        CharmMeta::from_yaml(
            &metadata,
            read("config.yaml")?.as_deref(),
            read("actions.yaml")?.as_deref(),
        )
    }

    /// Parse the files' contents, e.g. for a test charm declared inline.
    pub fn from_yaml(
        metadata: &str,
        config: Option<&str>,
        actions: Option<&str>,
    ) -> Result<CharmMeta, HarnessError> {
        let metadata = parse_yaml("metadata.yaml", metadata)?;
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| meta_error("metadata.yaml", "`name` is required"))?
            .to_string();
        let mut endpoints = BTreeMap::new();
        for (section, role) in [
            ("provides", Role::Provides),
            ("requires", Role::Requires),
            ("peers", Role::Peers),
        ] {
            let Some(map) = metadata.get(section).and_then(Value::as_object) else {
                continue;
            };
            for (endpoint, spec) in map {
                let interface = spec
                    .get("interface")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        meta_error(
                            "metadata.yaml",
                            format!("{section}.{endpoint} has no interface"),
                        )
                    })?;
                let limit = spec.get("limit").and_then(Value::as_u64).map(|l| l as u32);
                let scope = spec
                    .get("scope")
                    .and_then(Value::as_str)
                    .unwrap_or("global");
                endpoints.insert(
                    endpoint.clone(),
                    EndpointMeta {
                        role,
                        interface: interface.to_string(),
                        limit,
                        scope: scope.to_string(),
                    },
                );
            }
        }
        let extra_bindings = metadata
            .get("extra-bindings")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();

        let mut options = BTreeMap::new();
        if let Some(config) = config {
            let config = parse_yaml("config.yaml", config)?;
            if let Some(map) = config.get("options").and_then(Value::as_object) {
                for (option, spec) in map {
                    let kind = spec.get("type").and_then(Value::as_str).ok_or_else(|| {
                        meta_error("config.yaml", format!("{option} has no type"))
                    })?;
                    let kind: OptionType = kind.parse().map_err(|_| {
                        meta_error(
                            "config.yaml",
                            format!("{option}: unknown type {kind:?}, expected string, int, float, boolean or secret"),
                        )
                    })?;
                    let default = spec.get("default").filter(|d| !d.is_null()).cloned();
                    if let Some(d) = &default {
                        check_option_value(kind, d).map_err(|m| {
                            meta_error("config.yaml", format!("{option}: default {m}"))
                        })?;
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
            }
        }

        let mut actions_map = BTreeMap::new();
        if let Some(actions) = actions {
            let actions = parse_yaml("actions.yaml", actions)?;
            let Value::Object(map) = actions else {
                return Err(meta_error("actions.yaml", "must be a map of action names"));
            };
            for (action, spec) in map {
                actions_map.insert(action.clone(), action_schema(&action, &spec)?);
            }
        }
        Ok(CharmMeta {
            name,
            endpoints,
            extra_bindings,
            options,
            actions: actions_map,
        })
    }

    /// What `config-get --format=json` prints for `overrides` (the operator's
    /// `juju config` values): every option that is set or has a default.
    /// Unknown options and values of the wrong type are refused, as `juju
    /// config` refuses them.
    pub fn config_values(
        &self,
        overrides: &BTreeMap<String, Value>,
    ) -> Result<Map<String, Value>, HarnessError> {
        let mut values = Map::new();
        for (option, spec) in &self.options {
            if let Some(d) = &spec.default {
                values.insert(option.clone(), juju_numbers(d));
            }
        }
        for (option, value) in overrides {
            let spec = self
                .options
                .get(option)
                .ok_or_else(|| HarnessError::Config {
                    option: option.clone(),
                    message: format!(
                        "is not an option in config.yaml (known: {})",
                        self.options.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })?;
            check_option_value(spec.kind, value).map_err(|message| HarnessError::Config {
                option: option.clone(),
                message,
            })?;
            values.insert(option.clone(), juju_numbers(value));
        }
        Ok(values)
    }

    /// Validate `params` for `action` against actions.yaml and fill in the
    /// defaults, as Juju does before it queues the action.
    ///
    /// `Err` is a test-setup error (the charm declares no such action);
    /// `Ok(Err(refusal))` is Juju refusing the params: the action fails and
    /// the charm never runs.
    pub fn action_params(
        &self,
        action: &str,
        params: &Value,
    ) -> Result<Result<Map<String, Value>, ParamsRefused>, HarnessError> {
        let schema = self
            .actions
            .get(action)
            .ok_or_else(|| HarnessError::UnknownAction(action.to_string()))?;
        let params = match params {
            Value::Null => Value::Object(Map::new()),
            other => other.clone(),
        };
        let mut problems = Vec::new();
        validate(&params, schema, "(root)", &mut problems);
        if !problems.is_empty() {
            return Ok(Err(ParamsRefused(problems)));
        }
        let mut params = params;
        insert_defaults(&mut params, schema);
        match params {
            Value::Object(map) => Ok(Ok(map)),
            _ => unreachable!("validated as an object"),
        }
    }

    pub fn is_peer(&self, endpoint: &str) -> bool {
        self.endpoints
            .get(endpoint)
            .is_some_and(|e| e.role == Role::Peers)
    }
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

/// Build the JSON schema Juju validates an action's params against.
fn action_schema(action: &str, spec: &Value) -> Result<Value, HarnessError> {
    let Value::Object(spec) = spec else {
        return Err(meta_error(
            "actions.yaml",
            format!("{action} must be a map"),
        ));
    };
    let mut schema = Map::new();
    schema.insert("type".into(), "object".into());
    for (key, value) in spec {
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
    if contains_key(&Value::Object(schema.clone()), &["$ref", "$schema"]) {
        return Err(meta_error(
            "actions.yaml",
            format!("{action}: $ref and $schema are not allowed"),
        ));
    }
    Ok(Value::Object(schema))
}

fn contains_key(value: &Value, keys: &[&str]) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| keys.contains(&k.as_str()) || contains_key(v, keys)),
        Value::Array(items) => items.iter().any(|v| contains_key(v, keys)),
        _ => false,
    }
}

fn type_name(value: &Value) -> &'static str {
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

fn has_type(value: &Value, wanted: &str) -> bool {
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
fn validate(value: &Value, schema: &Value, path: &str, problems: &mut Vec<ParamProblem>) {
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
fn insert_defaults(value: &mut Value, schema: &Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACTIONS: &str = r#"
backup:
  description: Take a backup.
  params:
    target:
      type: string
      minLength: 1
    compress:
      type: boolean
      default: true
    level:
      type: integer
      minimum: 1
      maximum: 9
      default: 6
    tags:
      type: array
      items: {type: string}
  required: [target]
  additionalProperties: false
open:
  description: Anything goes.
"#;

    fn meta() -> CharmMeta {
        CharmMeta::from_yaml(
            "name: demo\npeers:\n  cluster:\n    interface: demo-peer\n",
            Some("options:\n  port: {type: int, default: 80}\n  ratio: {type: float, default: 2.0}\n  token: {type: string}\n"),
            Some(ACTIONS),
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_filled_after_validation() {
        let params = meta()
            .action_params("backup", &json!({"target": "s3"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            Value::Object(params),
            json!({"target": "s3", "compress": true, "level": 6})
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let m = meta();
        let refuse = |p: Value| {
            m.action_params("backup", &p)
                .unwrap()
                .unwrap_err()
                .to_string()
        };
        assert!(refuse(json!({})).contains("(root): target is required"));
        assert!(refuse(json!({"target": "x", "extra": 1}))
            .contains("Additional property extra is not allowed"));
        assert!(refuse(json!({"target": 3}))
            .contains("target: Invalid type. Expected: string, given: integer"));
        let wrong_type = m
            .action_params("backup", &json!({"target": 3}))
            .unwrap()
            .unwrap_err();
        assert_eq!(wrong_type.0[0].allowed_types, ["string"]);
        assert!(refuse(json!({"target": ""})).contains("greater than or equal to 1"));
        assert!(refuse(json!({"target": "x", "level": 10})).contains("less than or equal to 9"));
        assert!(refuse(json!({"target": "x", "level": 2.5})).contains("given: number"));
        assert!(refuse(json!({"target": "x", "tags": ["a", 1]})).contains("tags.1"));
        // Whole floats are integers, as JSON schema says.
        assert!(m
            .action_params("backup", &json!({"target": "x", "level": 3.0}))
            .unwrap()
            .is_ok());
        // No additionalProperties: Juju 3 allows anything.
        assert!(m.action_params("open", &json!({"x": 1})).unwrap().is_ok());
        assert!(matches!(
            m.action_params("nope", &json!({})),
            Err(HarnessError::UnknownAction(_))
        ));
    }

    #[test]
    fn config_is_typed_and_defaulted() {
        let m = meta();
        let values = m.config_values(&BTreeMap::new()).unwrap();
        // No default and not set: absent. Whole floats print as integers.
        assert_eq!(Value::Object(values), json!({"port": 80, "ratio": 2}));
        let bad = [("port".to_string(), json!("80"))].into();
        let err = m.config_values(&bad).unwrap_err().to_string();
        assert!(
            err.contains("port") && err.contains("whole number"),
            "{err}"
        );
        let unknown = [("prot".to_string(), json!(80))].into();
        assert!(m.config_values(&unknown).is_err());
        assert!(m.is_peer("cluster"));
    }

    #[test]
    fn charm_sim_can_keep_it_as_json() {
        let m = meta();
        let stored = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<CharmMeta>(&stored).unwrap(), m);
        assert_eq!(m.endpoints["cluster"].scope, "global");
    }
}
