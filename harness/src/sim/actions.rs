//! Action parameters from the command line: parsing `key=value` arguments
//! the way `juju run` does (values are YAML scalars, dotted keys nest), then
//! checking them as Juju does ([`CharmMeta::action_params`]: the action's
//! JSON schema from actions.yaml, defaults filled in).

use serde_json::{Map, Value};

use super::store::insert_dotted;
use super::Result;
use crate::schema::CharmMeta;
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

/// Validate `params` for `action` and return them with defaults filled in.
pub fn validate(meta: &CharmMeta, action: &str, params: &Value) -> Result<Value> {
    match meta.action_params(action, params)? {
        Ok(params) => Ok(Value::Object(params)),
        Err(refused) => {
            // `name=123` reaches the schema as a number: say how to pass text.
            let hint = refused
                .0
                .iter()
                .find(|p| p.allowed_types.iter().any(|t| t == "string"))
                .map(|p| format!(" (quote it to pass a string: {}=\"'...'\")", p.path))
                .unwrap_or_default();
            Err(sim_err!("action {action:?}: {refused}{hint}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> CharmMeta {
        let actions = r#"
x:
  params:
    symlink: {type: string, minLength: 1}
    count: {type: integer, default: 3}
  required: [symlink]
  additionalProperties: false
"#;
        CharmMeta::from_yaml(
            "name: demo\nsummary: s\ndescription: d\n",
            None,
            Some(actions),
        )
        .unwrap()
    }

    #[test]
    fn params_are_yaml_scalars_and_validated() {
        let m = meta();
        let p = parse_params(&["symlink=r2".into(), "a.b=1".into()]).unwrap();
        assert_eq!(p, json!({"symlink": "r2", "a": {"b": 1}}));
        let ok = validate(&m, "x", &parse_params(&["symlink=r2".into()]).unwrap()).unwrap();
        assert_eq!(ok, json!({"symlink": "r2", "count": 3}));
        assert!(validate(&m, "x", &json!({})).is_err());
        assert!(validate(&m, "x", &json!({"symlink": "r2", "other": 1})).is_err());
        assert!(validate(&m, "x", &json!({"symlink": ""})).is_err());
        let err = validate(&m, "x", &parse_params(&["symlink=2".into()]).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("given: integer (quote it to pass a string: symlink=\"'...'\")"),
            "{err}"
        );
    }
}
