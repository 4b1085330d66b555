//! The application's environment: the `environment_variables` config option,
//! and the environment file that both service managers read.
//!
//! - `option`: the `environment_variables` option, a shell-like syntax
//!   with every expansion refused;
//! - `env_file`: the file both service managers read, in systemd's
//!   `EnvironmentFile=` format, and writing it safely.
//!
//! Both formats share the rules below for names and values.

mod env_file;
mod option;

#[cfg(test)]
mod both_formats;

pub use env_file::*;
pub use option::*;

/// The longest value accepted, in bytes of UTF-8. The kernel refuses any
/// single environment string over 128 KiB at `execve`; half of that leaves
/// room for the name and keeps the whole environment reasonable.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Variables the charm sets from relations, with the endpoint that sets each.
pub const RELATION_VARIABLES: [(&str, &str); 6] = [
    ("DATABASE_URL", "postgresql or pgsql"),
    ("DATABASE_READ_ONLY_URL", "postgresql"),
    ("POSTGRESQL_DB_CONNECT_STRING", "postgresql"),
    ("MONGO_URL", "mongodb-client or mongodb"),
    ("MONGODB_DB_CONNECT_STRING", "mongodb-client"),
    ("MANAGER_SERVICE_URL", "manager-service"),
];

/// Whether `name` is a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
/// This is also systemd's rule for names in an environment file.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}

/// Characters systemd refused in environment values before v248 (ASCII
/// control characters other than tab and newline; v248 began to allow them).
/// Ubuntu 20.04 ships v245, so the charm refuses them everywhere.
/// NUL is not among them: it is refused separately, with its own message.
fn is_refused_control(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\0')
}

fn relation_owning(name: &str) -> Option<&'static str> {
    RELATION_VARIABLES
        .iter()
        .find(|(reserved, _)| *reserved == name)
        .map(|(_, relation)| *relation)
}

#[cfg(test)]
fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}
