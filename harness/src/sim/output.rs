//! The `--format smart|yaml|json` formatters hook tools share (juju/cmd).
//!
//! - smart (the default): a string as-is (nothing if empty), a bool as
//!   `True`/`False`, a list of strings one per line, nil as nothing, and
//!   anything else as YAML;
//! - yaml: YAML, nil as nothing;
//! - json: Go's encoding/json: sorted keys, `null` for nil, `<>&` escaped.

use serde_json::Value;

use crate::schema::juju_numbers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Smart,
    Yaml,
    Json,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "smart" => Ok(Format::Smart),
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?}")),
        }
    }
}

/// Render `value` the way juju/cmd's formatter would.
pub fn render(format: Format, value: &Value) -> String {
    let value = juju_numbers(value);
    match format {
        Format::Json => go_json(&value) + "\n",
        Format::Yaml => match value {
            Value::Null => String::new(),
            v => yaml(&v),
        },
        Format::Smart => match value {
            Value::Null => String::new(),
            Value::String(s) if s.is_empty() => String::new(),
            Value::String(s) => s + "\n",
            Value::Bool(true) => "True\n".into(),
            Value::Bool(false) => "False\n".into(),
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .map(|i| format!("{}\n", i.as_str().unwrap_or_default()))
                .collect(),
            v => yaml(&v),
        },
    }
}

fn yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

/// JSON as Go's encoding/json writes it: HTML-sensitive characters and the
/// two JavaScript line separators escaped. They can only occur inside
/// strings, so escaping them in the finished text is safe.
pub fn go_json(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smart_format() {
        assert_eq!(render(Format::Smart, &json!("")), "");
        assert_eq!(render(Format::Smart, &json!("x")), "x\n");
        assert_eq!(render(Format::Smart, &json!(true)), "True\n");
        assert_eq!(render(Format::Smart, &json!(["a", "b"])), "a\nb\n");
        assert_eq!(render(Format::Smart, &Value::Null), "");
        assert_eq!(render(Format::Smart, &json!({"a": "1"})), "a: '1'\n");
    }

    #[test]
    fn json_format_is_gos() {
        assert_eq!(render(Format::Json, &Value::Null), "null\n");
        assert_eq!(
            render(Format::Json, &json!({"b": 2.0, "a": "<&>"})),
            "{\"a\":\"\\u003c\\u0026\\u003e\",\"b\":2}\n"
        );
    }
}
