//! Typed reads of charm config, with errors that name the option.
//!
//! Juju has already checked each value against config.yaml's type, but a
//! charm must not trust that blindly (a hand-run hook, an older Juju): every
//! read says which option is wrong and what it should be.

use serde_json::{Map, Value};

/// An option's value is unusable; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct ConfigError {
    pub option: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(option: &str, message: impl Into<String>) -> Self {
        ConfigError {
            option: option.to_string(),
            message: message.into(),
        }
    }
}

/// Read options out of `config-get --format=json`'s map.
#[derive(Debug, Clone, Copy)]
pub struct ConfigReader<'a> {
    values: &'a Map<String, Value>,
}

impl<'a> ConfigReader<'a> {
    pub fn new(values: &'a Map<String, Value>) -> Self {
        ConfigReader { values }
    }

    fn get(&self, option: &str) -> Result<&'a Value, ConfigError> {
        self.values.get(option).ok_or_else(|| {
            ConfigError::new(
                option,
                "is not set and has no default (is config.yaml part of the deployed charm?)",
            )
        })
    }

    /// A `string` option.
    pub fn string(&self, option: &str) -> Result<&'a str, ConfigError> {
        match self.get(option)? {
            Value::String(s) => Ok(s),
            other => Err(ConfigError::new(
                option,
                format!("must be a string, got {other}"),
            )),
        }
    }

    /// An `int` option. Juju's JSON may spell a whole number as a float.
    pub fn int(&self, option: &str) -> Result<i64, ConfigError> {
        let value = self.get(option)?;
        value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| ConfigError::new(option, format!("must be a whole number, got {value}")))
    }

    /// An `int` option that must lie in `range`.
    pub fn int_in(
        &self,
        option: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let n = self.int(option)?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(ConfigError::new(
                option,
                format!("must be from {} to {}, got {n}", range.start(), range.end()),
            ))
        }
    }

    /// A `boolean` option.
    pub fn boolean(&self, option: &str) -> Result<bool, ConfigError> {
        match self.get(option)? {
            Value::Bool(b) => Ok(*b),
            other => Err(ConfigError::new(
                option,
                format!("must be true or false, got {other}"),
            )),
        }
    }

    /// A `float` option: any JSON number.
    pub fn float(&self, option: &str) -> Result<f64, ConfigError> {
        let value = self.get(option)?;
        value
            .as_f64()
            .ok_or_else(|| ConfigError::new(option, format!("must be a number, got {value}")))
    }
}
