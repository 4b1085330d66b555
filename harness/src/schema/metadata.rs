//! metadata.yaml as Juju reads it: the required fields, the v2 format,
//! and what Juju's `Meta.Check` rejects in endpoints and their names.

use serde_json::Value;

use super::*;

/// Keys Juju refuses in a "v2" charm, one whose bases come from
/// manifest.yaml (shared/reference/ops-and-interfaces.md §2.2). Every charm
/// `cargo xtask pack` writes is one, and that is the charm the harness
/// stands for.
const V2_FORBIDDEN_KEYS: [&str; 3] = ["series", "min-juju-version", "deployment"];

/// metadata.yaml as Juju reads it (shared/reference/ops-and-interfaces.md
/// §2.2): the fields its schema requires, the v2 format, and what
/// `Meta.Check` rejects in the relations. Options and actions are left
/// empty.
pub(super) fn read_metadata(text: &str, problems: &mut Vec<String>) -> CharmMeta {
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
pub(super) fn read_endpoint(
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

/// `^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$`: our reading of Juju's endpoint
/// names (a letter first; separators never doubled or at the end).
pub(super) fn is_valid_relation_name(name: &str) -> bool {
    let mut parts = name.split(['-', '_']);
    let first = parts.next().unwrap_or_default();
    let alnum = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    alnum(first) && first.starts_with(|c: char| c.is_ascii_lowercase()) && parts.all(alnum)
}
