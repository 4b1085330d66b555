//! The checks Juju applies to a charm's metadata.yaml and actions.yaml when
//! it reads a `.charm` (shared/reference/ops-and-interfaces.md §2.2), run at
//! pack time so a charm Juju would refuse is never written.
//!
//! Each check returns every problem it finds, worded for the person who
//! edits the YAML, rather than stopping at the first.

use serde_yaml_ng::Value;

const RELATION_ROLES: [&str; 3] = ["provides", "requires", "peers"];

/// Keys that make a charm "v1" (series-based) or that Juju rejects in a v2
/// charm, whose bases come from manifest.yaml.
const V2_FORBIDDEN_KEYS: [&str; 3] = ["series", "min-juju-version", "deployment"];

/// Problems with metadata.yaml, as Juju's `Meta.Check` and format
/// selection would report them; empty when Juju accepts it as a v2 charm.
pub fn metadata_problems(metadata: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(map) = metadata.as_mapping() else {
        return vec!["metadata.yaml is not a mapping".into()];
    };
    for key in ["name", "summary", "description"] {
        match map.get(key) {
            Some(Value::String(text)) if !text.trim().is_empty() => {}
            Some(_) => problems.push(format!("`{key}` must be a non-empty string")),
            None => problems.push(format!("`{key}` is required")),
        }
    }
    for key in V2_FORBIDDEN_KEYS {
        if map.contains_key(key) {
            problems.push(format!(
                "`{key}` is not allowed: bases come from manifest.yaml (Juju's v2 charm format)"
            ));
        }
    }
    let subordinate = map.get("subordinate").and_then(Value::as_bool) == Some(true);
    let mut seen: Vec<(String, &str)> = Vec::new();
    for role in RELATION_ROLES {
        let Some(relations) = map.get(role) else {
            continue;
        };
        let Some(relations) = relations.as_mapping() else {
            problems.push(format!("`{role}` must be a mapping of relation names"));
            continue;
        };
        for (name, spec) in relations {
            let Some(name) = name.as_str() else {
                problems.push(format!("{role}: relation names must be strings"));
                continue;
            };
            let (interface, scope) = match spec {
                Value::String(interface) => (Some(interface.as_str()), "global"),
                Value::Mapping(m) => (
                    m.get("interface").and_then(Value::as_str),
                    m.get("scope").and_then(Value::as_str).unwrap_or("global"),
                ),
                _ => (None, "global"),
            };
            if !is_valid_relation_name(name) {
                problems.push(format!(
                    "{role}.{name}: relation names are lowercase letters and digits, \
                     separated by `-` or `_`, starting with a letter"
                ));
            }
            // Juju allows a reserved name only for a subordinate's
            // container-scoped requires (juju-info, mostly).
            let reserved_allowed = subordinate && role == "requires" && scope == "container";
            if is_reserved(name) && !reserved_allowed {
                problems.push(format!("{role}.{name}: `juju` and `juju-*` are reserved"));
            }
            match interface {
                None | Some("") => problems.push(format!("{role}.{name}: no interface")),
                Some(i) if role != "requires" && is_reserved(i) => problems.push(format!(
                    "{role}.{name}: interface {i:?} is reserved (`juju-*`)"
                )),
                Some(_) => {}
            }
            if !["global", "container"].contains(&scope) {
                problems.push(format!("{role}.{name}: scope must be global or container"));
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
                problems.push(format!(
                    "relation {name:?} is declared in both {first} and {role}"
                ));
            }
            seen.push((name.to_string(), role));
        }
    }
    if subordinate
        && !map
            .get("requires")
            .and_then(Value::as_mapping)
            .is_some_and(|requires| {
                requires
                    .values()
                    .any(|spec| spec.get("scope").and_then(Value::as_str) == Some("container"))
            })
    {
        problems.push("a subordinate charm needs a container-scoped `requires` relation".into());
    }
    problems
}

/// Problems with actions.yaml: names as Juju's `actions.go` accepts them
/// (`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`, not reserved), and no `$ref` or
/// `$schema` in the parameter schemas.
pub fn actions_problems(actions: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(map) = actions.as_mapping() else {
        if !actions.is_null() {
            problems.push("actions.yaml is not a mapping".into());
        }
        return problems;
    };
    for (name, spec) in map {
        let Some(name) = name.as_str() else {
            problems.push("action names must be strings".into());
            continue;
        };
        if !is_valid_action_name(name) {
            problems.push(format!(
                "action {name:?}: names are lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit"
            ));
        }
        if is_reserved(name) {
            problems.push(format!("action {name:?}: `juju` and `juju-*` are reserved"));
        }
        if let Some(key) = forbidden_schema_key(spec) {
            problems.push(format!(
                "action {name:?}: `{key}` is not allowed in schemas"
            ));
        }
    }
    problems
}

fn is_reserved(name: &str) -> bool {
    name == "juju" || name.starts_with("juju-")
}

/// `^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`
pub fn is_valid_action_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.chars().all(|c| ok_char(c) || c == '-')
        && name.starts_with(ok_char)
        && name.ends_with(ok_char)
}

/// `^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$`: our reading of Juju's endpoint
/// names (a letter first; separators never doubled or at the end).
pub fn is_valid_relation_name(name: &str) -> bool {
    let mut parts = name.split(['-', '_']);
    let first = parts.next().unwrap_or_default();
    let alnum = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    alnum(first) && first.starts_with(|c: char| c.is_ascii_lowercase()) && parts.all(alnum)
}

fn forbidden_schema_key(value: &Value) -> Option<&'static str> {
    match value {
        Value::Mapping(map) => map.iter().find_map(|(k, v)| match k.as_str() {
            Some("$ref") => Some("$ref"),
            Some("$schema") => Some("$schema"),
            _ => forbidden_schema_key(v),
        }),
        Value::Sequence(items) => items.iter().find_map(forbidden_schema_key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn a_minimal_v2_charm_passes() {
        let meta =
            yaml("name: x\nsummary: s\ndescription: d\nprovides: {website: {interface: http}}\n");
        assert_eq!(metadata_problems(&meta), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_reported() {
        let meta = yaml(
            "name: x\nsummary: ''\nseries: [jammy]\n\
             provides: {juju-info: {interface: juju-info}, db: {interface: pgsql}}\n\
             requires: {db: {interface: pgsql}, Bad_Name: {interface: http}, nointerface: {}}\n",
        );
        let problems = metadata_problems(&meta).join("\n");
        for expected in [
            "`summary` must be a non-empty string",
            "`description` is required",
            "`series` is not allowed",
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
    fn a_subordinate_may_require_juju_info_in_container_scope() {
        let meta = yaml(
            "name: x\nsummary: s\ndescription: d\nsubordinate: true\n\
             requires: {juju-info: {interface: juju-info, scope: container}}\n",
        );
        assert_eq!(metadata_problems(&meta), Vec::<String>::new());
        let no_container = yaml("name: x\nsummary: s\ndescription: d\nsubordinate: true\n");
        assert!(metadata_problems(&no_container)[0].contains("subordinate"));
    }

    #[test]
    fn action_names_follow_juju() {
        for good in ["rollback", "set-current-symlink", "a", "list-builds2"] {
            assert!(is_valid_action_name(good), "{good}");
        }
        for bad in ["", "-x", "x-", "Set", "set_current", "a b"] {
            assert!(!is_valid_action_name(bad), "{bad}");
        }
        let actions = yaml("juju-run: {}\nok: {params: {a: {$ref: '#/x'}}}\n");
        let problems = actions_problems(&actions).join("\n");
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
}
