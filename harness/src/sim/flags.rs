//! The argument grammar every Juju hook tool shares (juju/gnuflag, §3.0 of
//! shared/reference/juju-hook-tools.md).
//!
//! - Long flags need two dashes: `--format json`, `--format=json`.
//! - One dash is a cluster of single-letter flags: `-r 3`, `-r3`, `-ab`.
//!   So `-r=3` gives `-r` the value `=3`, and `-format` reads as `-f -o …`.
//! - Bool flags never take the next argument; `--app=True`/`=false`/`=0`…
//!   (Go's ParseBool) set them explicitly.
//! - `--` ends flags; flags may follow positional arguments.
//! - `-h`/`--help` asks for help.
//!
//! Errors are usage errors: the caller reports them with exit code 2.

use std::collections::BTreeMap;

use super::charm::parse_go_bool;

/// Whether a flag is a switch or takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Value,
}

/// A flag a tool accepts: its long name and optional one-letter alias.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
}

impl Flag {
    pub const fn switch(long: &'static str, short: Option<char>) -> Flag {
        Flag {
            long,
            short,
            kind: Kind::Bool,
        }
    }
    pub const fn value(long: &'static str, short: Option<char>) -> Flag {
        Flag {
            long,
            short,
            kind: Kind::Value,
        }
    }
}

/// A flag's value and how the caller spelled the flag (for error messages
/// such as `invalid value "x" for flag -r: …`).
#[derive(Debug, Clone)]
pub struct Given {
    pub value: String,
    pub spelled: String,
}

/// The result of parsing: flags by long name, then positional arguments.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    flags: BTreeMap<&'static str, Given>,
    pub args: Vec<String>,
    pub help: bool,
}

impl Parsed {
    /// A value flag's value, if given (the last occurrence wins).
    pub fn value(&self, long: &str) -> Option<&Given> {
        self.flags.get(long)
    }

    /// A bool flag's state.
    pub fn switch(&self, long: &str) -> bool {
        self.flags.get(long).is_some_and(|g| g.value == "true")
    }

    pub fn is_set(&self, long: &str) -> bool {
        self.flags.contains_key(long)
    }
}

/// Parse `argv` (without the program name) against `flags`.
pub fn parse(flags: &[Flag], argv: &[String]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if arg == "--" {
            parsed.args.extend(argv[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let spelled = format!("--{name}");
            if name == "help" || name == "h" {
                parsed.help = true;
                continue;
            }
            let flag = flags
                .iter()
                .find(|f| f.long == name || (name.len() == 1 && f.short == name.chars().next()))
                .ok_or_else(|| format!("flag provided but not defined: {spelled}"))?;
            let value = match (flag.kind, inline) {
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => bool_text(&v, &spelled)?,
                (Kind::Value, Some(v)) => v,
                (Kind::Value, None) => {
                    let v = argv
                        .get(i)
                        .ok_or_else(|| format!("flag needs an argument: {spelled}"))?;
                    i += 1;
                    v.clone()
                }
            };
            parsed.flags.insert(flag.long, Given { value, spelled });
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            // A cluster of one-letter flags; a value flag takes the rest of
            // the cluster (even "=3"), or else the next argument.
            let letters: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < letters.len() {
                let letter = letters[j];
                j += 1;
                let spelled = format!("-{letter}");
                if letter == 'h' && !flags.iter().any(|f| f.short == Some('h')) {
                    parsed.help = true;
                    continue;
                }
                let flag = flags
                    .iter()
                    .find(|f| f.short == Some(letter))
                    .ok_or_else(|| format!("flag provided but not defined: {spelled}"))?;
                match flag.kind {
                    Kind::Bool => {
                        parsed.flags.insert(
                            flag.long,
                            Given {
                                value: "true".into(),
                                spelled,
                            },
                        );
                    }
                    Kind::Value => {
                        let rest: String = letters[j..].iter().collect();
                        let value = if !rest.is_empty() {
                            rest
                        } else {
                            let v = argv
                                .get(i)
                                .ok_or_else(|| format!("flag needs an argument: {spelled}"))?;
                            i += 1;
                            v.clone()
                        };
                        parsed.flags.insert(flag.long, Given { value, spelled });
                        break;
                    }
                }
            }
            continue;
        }
        parsed.args.push(arg.clone());
    }
    Ok(parsed)
}

fn bool_text(value: &str, spelled: &str) -> Result<String, String> {
    parse_go_bool(value)
        .map(|b| b.to_string())
        .ok_or_else(|| format!("invalid value {value:?} for flag {spelled}: parse error"))
}

/// Go's `%q` of a list, as juju/cmd prints leftover arguments:
/// `unrecognized args: ["a" "b"]`.
pub fn unrecognized(args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("unrecognized args: [{}]", quoted.join(" "))
}

/// juju/utils' key=value parsing for relation-set and leader-set: split at
/// the first `=`, trim key and value, ignore empty args, refuse empty keys
/// and duplicates. An empty value is kept (it means "delete").
pub fn key_values(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for arg in args {
        if arg.is_empty() {
            continue;
        }
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected \"key=value\", got {arg:?}"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("expected \"key=value\", got {arg:?}"));
        }
        if out
            .insert(key.to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("key {key:?} specified more than once"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag::value("relation", Some('r')),
        Flag::switch("app", None),
        Flag::value("format", None),
        Flag::switch("all", Some('a')),
    ];

    fn p(args: &[&str]) -> Result<Parsed, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(FLAGS, &args)
    }

    #[test]
    fn value_flags_in_every_spelling() {
        assert_eq!(
            p(&["-r", "3"]).unwrap().value("relation").unwrap().value,
            "3"
        );
        assert_eq!(p(&["-r3"]).unwrap().value("relation").unwrap().value, "3");
        assert_eq!(
            p(&["--relation=db:3"])
                .unwrap()
                .value("relation")
                .unwrap()
                .value,
            "db:3"
        );
        assert_eq!(p(&["-r=3"]).unwrap().value("relation").unwrap().value, "=3");
        assert_eq!(p(&["-r"]).unwrap_err(), "flag needs an argument: -r");
    }

    #[test]
    fn bools_positionals_and_double_dash() {
        let got = p(&["key", "--app=False", "-a", "--", "--app"]).unwrap();
        assert!(!got.switch("app"));
        assert!(got.switch("all"));
        assert_eq!(got.args, vec!["key", "--app"]);
        assert_eq!(p(&["--app", "x"]).unwrap().args, vec!["x"]);
        assert!(p(&["--app=maybe"]).is_err());
        assert_eq!(
            p(&["-format", "json"]).unwrap_err(),
            "flag provided but not defined: -f"
        );
        assert!(p(&["-h"]).unwrap().help);
    }

    #[test]
    fn key_value_rules() {
        let kv = key_values(&[" a = 1 ".into(), "".into(), "b=".into()]).unwrap();
        assert_eq!(kv["a"], "1");
        assert_eq!(kv["b"], "");
        assert!(key_values(&["a=1".into(), "a=2".into()]).is_err());
        assert!(key_values(&["=1".into()]).is_err());
        assert!(key_values(&["novalue".into()]).is_err());
    }
}
