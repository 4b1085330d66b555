//! What the charm declares, read the way Juju reads it: `metadata.yaml`
//! (name, endpoints, bindings), `config.yaml` (typed options with defaults)
//! and `actions.yaml` (a JSON schema per action).
//!
//! Juju refuses a charm whose YAML breaks its rules, and checks config
//! values and action params against the YAML before the charm ever runs.
//! The in-memory Juju, charm-sim and `cargo xtask pack` all do it here, so
//! none of them can feed the charm, or ship, something a real model never
//! would.
//!
//! This module holds [`CharmMeta`] and its entry points; the reading is in
//! `metadata` (metadata.yaml and its endpoints), `config` (options and
//! the values operators give them) and `actions` (actions.yaml and the
//! params an action is run with).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::HarnessError;

mod actions;
mod config;
mod metadata;

use actions::{insert_defaults, read_actions, validate};
pub use actions::{ParamProblem, ParamsRefused};
use config::read_options;
pub use config::{check_option_value, juju_numbers};
use metadata::read_metadata;

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

/// Names Juju keeps for itself: no endpoint, action, or interface a charm
/// provides may be `juju` or start with `juju-`.
fn is_reserved(name: &str) -> bool {
    name == "juju" || name.starts_with("juju-")
}

#[cfg(test)]
mod tests {
    use super::actions::is_valid_action_name;
    use super::metadata::is_valid_relation_name;
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
