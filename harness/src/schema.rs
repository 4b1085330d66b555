//! What the charm declares, read the way Juju reads it: `metadata.yaml`
//! (name, endpoints, bindings), `config.yaml` (typed options with defaults)
//! and `actions.yaml` (a JSON schema per action).
//!
//! Juju refuses a charm whose YAML breaks its rules, and checks config
//! values and action params against the YAML before the charm ever runs.
//! The in-memory Juju, charm-sim and `cargo xtask pack` all do it here, so
//! none of them can feed the charm, or ship, something a real model never
//! would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::HarnessError;

/// Which side of a relation an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::AsRefStr, Serialize, Deserialize)]
#[strum(serialize_all = "lowercase")]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// One thing in the charm's YAML that Juju would refuse, worded for the
/// person who edits the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProblem {
    pub file: &'static str,
    pub message: String,
}

impl std::fmt::Display for MetaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// Why Juju would refuse the charm: every problem found, not just the
/// first, so one edit of the YAML can fix them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharmRefused(pub Vec<MetaProblem>);

impl std::fmt::Display for CharmRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Juju would refuse this charm:")?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CharmRefused {}

fn meta_error(file: &str, message: impl Into<String>) -> HarnessError {
    HarnessError::Metadata {
        file: file.to_string(),
        message: message.into(),
    }
}

/// The YAML document, or `None` (and the problem) when it does not parse.
/// An empty file is an empty mapping.
fn parse_yaml(text: &str, problems: &mut Vec<String>) -> Option<Value> {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Null) => Some(Value::Object(Map::new())),
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(format!("is not valid YAML: {e}"));
            None
        }
    }
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

    /// Parse the files' contents, e.g. for a test charm declared inline,
    /// and check them as Juju checks a charm; a refusal lists every problem
    /// ([`CharmRefused`]).
    pub fn from_yaml(
        metadata: &str,
        config: Option<&str>,
        actions: Option<&str>,
    ) -> Result<CharmMeta, HarnessError> {
        let mut metadata_problems = Vec::new();
        let mut config_problems = Vec::new();
        let mut actions_problems = Vec::new();
        let meta = CharmMeta {
            options: config
                .map(|text| read_options(text, &mut config_problems))
                .unwrap_or_default(),
            actions: actions
                .map(|text| read_actions(text, &mut actions_problems))
                .unwrap_or_default(),
            ..read_metadata(metadata, &mut metadata_problems)
        };
        let problems: Vec<MetaProblem> = [
            ("metadata.yaml", metadata_problems),
            ("config.yaml", config_problems),
            ("actions.yaml", actions_problems),
        ]
        .into_iter()
        .flat_map(|(file, messages)| {
            messages
                .into_iter()
                .map(move |message| MetaProblem { file, message })
        })
        .collect();
        if problems.is_empty() {
            Ok(meta)
        } else {
            Err(CharmRefused(problems).into())
        }
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

/// Keys Juju refuses in a "v2" charm, one whose bases come from
/// manifest.yaml (shared/reference/ops-and-interfaces.md §2.2). Every charm
/// `cargo xtask pack` writes is one, and that is the charm the harness
/// stands for.
const V2_FORBIDDEN_KEYS: [&str; 3] = ["series", "min-juju-version", "deployment"];

/// metadata.yaml as Juju reads it (shared/reference/ops-and-interfaces.md
/// §2.2): the fields its schema requires, the v2 format, and what
/// `Meta.Check` rejects in the relations. Options and actions are left
/// empty.
fn read_metadata(text: &str, problems: &mut Vec<String>) -> CharmMeta {
    let mut meta = CharmMeta::default();
    let Some(metadata) = parse_yaml(text, problems) else {
        return meta;
    };
    let Some(map) = metadata.as_object() else {
        problems.push("must be a mapping".into());
        return meta;
    };
    for key in ["name", "summary", "description"] {
        match map.get(key) {
            Some(Value::String(text)) if !text.trim().is_empty() => {}
            Some(_) => problems.push(format!("`{key}` must be a non-empty string")),
            None => problems.push(format!("`{key}` is required")),
        }
    }
    meta.name = map
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for key in V2_FORBIDDEN_KEYS {
        if map.contains_key(key) {
            problems.push(format!(
                "`{key}` is not allowed: bases come from manifest.yaml (Juju's v2 charm format)"
            ));
        }
    }
    let subordinate = map.get("subordinate").and_then(Value::as_bool) == Some(true);
    let mut container_requires = false;
    for role in [Role::Provides, Role::Requires, Role::Peers] {
        let Some(relations) = map.get(role.as_ref()) else {
            continue;
        };
        let Some(relations) = relations.as_object() else {
            problems.push(format!(
                "`{}` must be a mapping of relation names",
                role.as_ref()
            ));
            continue;
        };
        for (name, spec) in relations {
            let endpoint = read_endpoint(role, name, spec, subordinate, problems);
            container_requires |= role == Role::Requires && endpoint.scope == "container";
            match meta.endpoints.get(name) {
                Some(first) => problems.push(format!(
                    "relation {name:?} is declared in both {} and {}",
                    first.role.as_ref(),
                    role.as_ref()
                )),
                None => {
                    meta.endpoints.insert(name.clone(), endpoint);
                }
            }
        }
    }
    if subordinate && !container_requires {
        problems.push("a subordinate charm needs a container-scoped `requires` relation".into());
    }
    meta.extra_bindings = map
        .get("extra-bindings")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    meta
}

/// One relation entry: an interface name, or a mapping with `interface`,
/// `limit` and `scope`.
fn read_endpoint(
    role: Role,
    name: &str,
    spec: &Value,
    subordinate: bool,
    problems: &mut Vec<String>,
) -> EndpointMeta {
    let (interface, limit, scope) = match spec {
        Value::String(interface) => (interface.as_str(), None, "global"),
        Value::Object(m) => (
            m.get("interface")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            m.get("limit").and_then(Value::as_u64),
            m.get("scope").and_then(Value::as_str).unwrap_or("global"),
        ),
        _ => ("", None, "global"),
    };
    let role_name = role.as_ref();
    if !is_valid_relation_name(name) {
        problems.push(format!(
            "{role_name}.{name}: relation names are lowercase letters and digits, \
             separated by `-` or `_`, starting with a letter"
        ));
    }
    // Juju allows a reserved name only for a subordinate's
    // container-scoped requires (juju-info, mostly).
    let reserved_allowed = subordinate && role == Role::Requires && scope == "container";
    if is_reserved(name) && !reserved_allowed {
        problems.push(format!(
            "{role_name}.{name}: `juju` and `juju-*` are reserved"
        ));
    }
    if interface.is_empty() {
        problems.push(format!("{role_name}.{name}: no interface"));
    } else if role != Role::Requires && is_reserved(interface) {
        problems.push(format!(
            "{role_name}.{name}: interface {interface:?} is reserved (`juju-*`)"
        ));
    }
    if !["global", "container"].contains(&scope) {
        problems.push(format!(
            "{role_name}.{name}: scope must be global or container"
        ));
    }
    EndpointMeta {
        role,
        interface: interface.to_string(),
        limit: limit.map(|l| l as u32),
        scope: scope.to_string(),
    }
}

/// config.yaml's options (shared/reference/ops-and-interfaces.md §2.4):
/// each has a known `type`, and a `default` of that type if any.
fn read_options(text: &str, problems: &mut Vec<String>) -> BTreeMap<String, ConfigOption> {
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

/// actions.yaml (shared/reference/ops-and-interfaces.md §2.2, §2.5): names
/// as Juju's `actions.go` accepts them, and each action's params schema.
fn read_actions(text: &str, problems: &mut Vec<String>) -> BTreeMap<String, Value> {
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

fn is_reserved(name: &str) -> bool {
    name == "juju" || name.starts_with("juju-")
}

/// `^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`
fn is_valid_action_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.chars().all(|c| ok_char(c) || c == '-')
        && name.starts_with(ok_char)
        && name.ends_with(ok_char)
}

/// `^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$`: our reading of Juju's endpoint
/// names (a letter first; separators never doubled or at the end).
fn is_valid_relation_name(name: &str) -> bool {
    let mut parts = name.split(['-', '_']);
    let first = parts.next().unwrap_or_default();
    let alnum = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    alnum(first) && first.starts_with(|c: char| c.is_ascii_lowercase()) && parts.all(alnum)
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

/// The JSON schema Juju validates an action's params against, built from
/// the action's entry in actions.yaml.
fn action_schema(spec: &Value) -> Result<Value, String> {
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
fn forbidden_schema_key(value: &Value) -> Option<&'static str> {
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
            "name: demo\nsummary: s\ndescription: d\npeers:\n  cluster:\n    interface: demo-peer\n",
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

    /// What Juju would refuse in these files, one problem a line.
    fn refusal(metadata: &str, config: Option<&str>, actions: Option<&str>) -> String {
        match CharmMeta::from_yaml(metadata, config, actions) {
            Err(HarnessError::CharmRefused(refused)) => refused.to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_minimal_v2_charm_passes() {
        let meta = CharmMeta::from_yaml(
            "name: x\nsummary: s\ndescription: d\nprovides: {website: {interface: http}}\n",
            None,
            None,
        )
        .unwrap();
        assert_eq!(meta.endpoints["website"].interface, "http");
    }

    #[test]
    fn a_relation_may_be_just_its_interface() {
        let meta = CharmMeta::from_yaml(
            "name: x\nsummary: s\ndescription: d\nprovides: {website: http}\n",
            None,
            None,
        )
        .unwrap();
        assert_eq!(meta.endpoints["website"].interface, "http");
        assert_eq!(meta.endpoints["website"].scope, "global");
    }

    #[test]
    fn each_rule_is_reported() {
        let problems = refusal(
            "name: x\nsummary: ''\nseries: [jammy]\n\
             provides: {juju-info: {interface: juju-info}, db: {interface: pgsql}}\n\
             requires: {db: {interface: pgsql}, Bad_Name: {interface: http}, nointerface: {}}\n",
            None,
            None,
        );
        for expected in [
            "metadata.yaml: `summary` must be a non-empty string",
            "metadata.yaml: `description` is required",
            "metadata.yaml: `series` is not allowed",
            "provides.juju-info: `juju` and `juju-*` are reserved",
            "interface \"juju-info\" is reserved",
            "relation \"db\" is declared in both provides and requires",
            "requires.Bad_Name: relation names",
            "requires.nointerface: no interface",
        ] {
            assert!(
                problems.contains(expected),
                "{expected:?} not in:\n{problems}"
            );
        }
    }

    #[test]
    fn every_file_is_checked_before_refusing() {
        let problems = refusal(
            "name: x\nsummary: s\n",
            Some("options:\n  port: {type: int, default: eighty}\n  label: {}\n"),
            Some("juju-run: {}\nok: {params: {a: {$ref: '#/x'}}}\n"),
        );
        for expected in [
            "metadata.yaml: `description` is required",
            "config.yaml: port: default must be a whole number",
            "config.yaml: label has no type",
            "actions.yaml: action \"juju-run\": `juju` and `juju-*` are reserved",
            "actions.yaml: action \"ok\": `$ref` is not allowed",
        ] {
            assert!(
                problems.contains(expected),
                "{expected:?} not in:\n{problems}"
            );
        }
    }

    #[test]
    fn a_subordinate_may_require_juju_info_in_container_scope() {
        CharmMeta::from_yaml(
            "name: x\nsummary: s\ndescription: d\nsubordinate: true\n\
             requires: {juju-info: {interface: juju-info, scope: container}}\n",
            None,
            None,
        )
        .unwrap();
        let no_container = refusal(
            "name: x\nsummary: s\ndescription: d\nsubordinate: true\n",
            None,
            None,
        );
        assert!(no_container.contains("subordinate"), "{no_container}");
    }

    #[test]
    fn action_names_follow_juju() {
        for good in ["rollback", "set-current-symlink", "a", "list-builds2"] {
            assert!(is_valid_action_name(good), "{good}");
        }
        for bad in ["", "-x", "x-", "Set", "set_current", "a b"] {
            assert!(!is_valid_action_name(bad), "{bad}");
        }
        let problems = refusal(
            "name: x\nsummary: s\ndescription: d\n",
            None,
            Some("juju-run: {}\nok: {params: {a: {$ref: '#/x'}}}\n"),
        );
        assert!(problems.contains("reserved"), "{problems}");
        assert!(problems.contains("`$ref`"), "{problems}");
    }

    #[test]
    fn relation_names() {
        for good in ["website", "nrpe-external-master", "db2", "a_b"] {
            assert!(is_valid_relation_name(good), "{good}");
        }
        for bad in ["", "2db", "a--b", "a-", "Web", "a.b"] {
            assert!(!is_valid_relation_name(bad), "{bad}");
        }
    }

    #[test]
    fn charm_sim_can_keep_it_as_json() {
        let m = meta();
        let stored = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<CharmMeta>(&stored).unwrap(), m);
        assert_eq!(m.endpoints["cluster"].scope, "global");
    }
}
