//! The `nrpe-external-master` endpoint (provides): the HTTP check of the
//! application's index page, as the files a principal charm writes for the
//! NRPE subordinate and the `monitors` value it sets. Reference §3(d):
//!
//! - `/etc/nagios/nrpe.d/check_<shortname>.cfg`: a comment header (the check
//!   and its servicegroups), then one `command[check_<shortname>]=` line:
//!   the resolved plugin path plus shell-quoted arguments;
//! - the plugin is looked up in `/usr/lib/nagios/plugins`, then
//!   `/usr/local/lib/nagios/plugins`;
//! - `/var/lib/nagios/export/service__<nagios_hostname>_check_<shortname>.cfg`
//!   (written only when that directory exists; older files ending
//!   `_check_<shortname>.cfg` removed first — both the caller's job): a
//!   `define service` block for the Nagios host;
//! - `nagios_hostname` comes from the relation, else
//!   `<nagios_context>-<unit with / → ->`;
//! - `monitors` lists the check under `remote.nrpe`, with `version: '0.3'`.
//!
//! What an NRPE command line can carry (read from NRPE's `nrpe.c`,
//! `read_config_file` and `process_macros`; NASTY_METACHARS there applies
//! only to arguments sent by clients, not to command definitions):
//!
//! - the file is read line by line with a 2048-byte buffer, so the whole
//!   `command[...]=...` line must stay under [`NRPE_MAX_LINE_BYTES`] and may
//!   hold no newline (nor NUL, which ends a C string); a carriage return would
//!   be kept inside the line but reach check_http as part of an argument, so
//!   it is refused too;
//! - the command line is handed to `/bin/sh` by `popen()`, hence shell
//!   quoting of every argument;
//! - before that, NRPE treats `$` as a macro delimiter: `$ARGn$` is
//!   substituted and `$$` stands for one `$`, while a lone `$` comes out
//!   mangled. So every `$` is written `$$`, and `$(reboot)` in an expected
//!   content string reaches check_http as the literal text `$(reboot)`.

use std::path::PathBuf;

use askama::Template;

use crate::ops::backend::Bag;
use crate::ops::config::ConfigError;
use crate::workload::text::shell_quote;

/// NRPE reads config lines with `fgets` into a 2048-byte buffer limited to
/// 2047 bytes; one goes to the newline, so a longer line is split in two
/// and the command silently truncated.
pub const NRPE_MAX_LINE_BYTES: usize = 2045;

/// Where `check_http` may be, in the order charmhelpers looks.
pub const CHECK_HTTP_CANDIDATES: [&str; 2] = [
    "/usr/lib/nagios/plugins/check_http",
    "/usr/local/lib/nagios/plugins/check_http",
];

/// The first `check_http` that `exists` says is there.
pub fn resolve_check_http(exists: impl Fn(&str) -> bool) -> Option<&'static str> {
    CHECK_HTTP_CANDIDATES.into_iter().find(|path| exists(path))
}

/// The NRPE command (and Nagios check) name: `check_<app>_http`.
pub fn check_name(app: &str) -> String {
    format!("check_{app}_http")
}

/// The suffix shared by every service export this check has written, under
/// any Nagios host name: stale ones (from an older host name) are the files
/// in the export directory ending with it.
pub fn service_export_suffix(app: &str) -> String {
    format!("_{}.cfg", check_name(app))
}

/// The Nagios host this unit appears as: what the NRPE subordinate sent, or
/// else `<nagios_context>-<unit with / replaced by ->`, as charmhelpers does.
pub fn nagios_hostname(relation_value: Option<&str>, nagios_context: &str, unit: &str) -> String {
    match relation_value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(sent) => sent.to_string(),
        None => format!("{nagios_context}-{}", unit.replace('/', "-")),
    }
}

/// What the check needs, as the charm read it from config, the relation and
/// the machine.
#[derive(Debug, Clone, Copy)]
pub struct NrpeCheck<'a> {
    /// Our application, e.g. `wsgi-app`.
    pub app: &'a str,
    /// Our unit, e.g. `wsgi-app/0`.
    pub unit: &'a str,
    /// Config `nagios_context`.
    pub nagios_context: &'a str,
    /// Config `nagios_servicegroups`; empty means the context.
    pub nagios_servicegroups: &'a str,
    /// `nagios_hostname` from the NRPE unit's bag, if it sent one.
    pub relation_nagios_hostname: Option<&'a str>,
    /// The address check_http connects to (the unit's address).
    pub address: &'a str,
    /// Config `listen_port`.
    pub port: u16,
    /// Config `nagios_index_path`.
    pub index_path: &'a str,
    /// Config `nagios_expected_status`, already validated.
    pub expected_status: u16,
    /// Config `nagios_index_content`; empty means any content.
    pub index_content: &'a str,
    /// From [`resolve_check_http`].
    pub check_http_path: &'a str,
}

/// A file to write, its path relative to the machine root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// Everything the charm writes for the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NrpeFiles {
    /// The Nagios host name the files use.
    pub nagios_hostname: String,
    /// `etc/nagios/nrpe.d/check_<app>_http.cfg`.
    pub command: RenderedFile,
    /// `var/lib/nagios/export/service__<host>_check_<app>_http.cfg`.
    pub service_export: RenderedFile,
    /// The `monitors` value for our unit bag.
    pub monitors: String,
}

impl NrpeFiles {
    /// Our unit bag on the `nrpe-external-master` relation.
    pub fn relation_data(&self) -> Bag {
        Bag::from([("monitors".to_string(), self.monitors.clone())])
    }
}

/// Why the check cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum NrpeError {
    /// A config option holds something the check cannot carry.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The NRPE subordinate sent a host name that cannot appear in a Nagios
    /// definition or a file name.
    #[error("the NRPE subordinate sent nagios_hostname {0:?}, which is not a usable Nagios host name (letters, digits, \".\", \"_\", \"-\", \"@\")")]
    BadNagiosHostname(String),
    /// Our application name does not fit NRPE's check-name pattern.
    #[error("application name {0:?} cannot name an NRPE check (letters, digits, \".\", \"_\", \"-\", \"@\")")]
    BadAppName(String),
    /// A value the charm computed (address, plugin path) holds a character
    /// an NRPE line cannot carry.
    #[error("{what} {value:?} cannot appear on an NRPE command line")]
    BadValue { what: &'static str, value: String },
    #[error("rendering {template}: {source}")]
    Template {
        template: &'static str,
        source: askama::Error,
    },
}

#[derive(Template)]
#[template(path = "nrpe-check.cfg", escape = "none")]
struct NrpeCheckTemplate<'a> {
    app: &'a str,
    check_name: &'a str,
    port: u16,
    servicegroups: &'a str,
    command_line: &'a str,
}

#[derive(Template)]
#[template(path = "nagios-service.cfg", escape = "none")]
struct NagiosServiceTemplate<'a> {
    app: &'a str,
    check_name: &'a str,
    nagios_hostname: &'a str,
    servicegroups: &'a str,
}

/// The longest Nagios host, context or service group name accepted.
pub const MAX_NAGIOS_NAME_BYTES: usize = 128;

/// NRPE's own pattern for check short names, and a safe set for Nagios
/// object names and file names: no `;` (a Nagios comment), no `!` (the
/// check_command argument separator), no `/`, no whitespace.
/// At most [`MAX_NAGIOS_NAME_BYTES`] long, so the service export's file name
/// (`service__<host>_check_<app>_http.cfg`) stays under the 255-byte limit.
fn is_nagios_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAGIOS_NAME_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// Characters that cannot sit on one NRPE config line.
fn breaks_nrpe_line(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\0')
}

/// `$` → `$$`, so NRPE's macro pass gives back the text we wrote.
fn escape_nrpe_macros(line: &str) -> String {
    line.replace('$', "$$")
}

/// Check `nagios_context`: it becomes part of a Nagios host name.
pub fn validate_nagios_context(value: &str) -> Result<(), ConfigError> {
    if is_nagios_name(value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            "nagios_context",
            format!("must be letters, digits, \".\", \"_\", \"-\" or \"@\" (it prefixes the Nagios host name), got {value:?}; e.g. juju config <app> nagios_context=juju"),
        ))
    }
}

/// Check `nagios_servicegroups`: a comma-separated list of Nagios names.
pub fn validate_nagios_servicegroups(value: &str) -> Result<(), ConfigError> {
    let groups = super::split_comma_list(value);
    match groups.iter().find(|group| !is_nagios_name(group)) {
        None => Ok(()),
        Some(bad) => Err(ConfigError::new(
            "nagios_servicegroups",
            format!("{bad:?} is not a Nagios service group name: use comma-separated names of letters, digits, \".\", \"_\", \"-\" or \"@\", e.g. \"web,juju\""),
        )),
    }
}

/// Check `nagios_index_path`: check_http writes it verbatim into the
/// request line (`GET <path> HTTP/1.1`), so it must start with `/` and hold
/// no whitespace or control characters.
pub fn validate_nagios_index_path(value: &str) -> Result<(), ConfigError> {
    if !value.starts_with('/') {
        return Err(ConfigError::new(
            "nagios_index_path",
            format!(
                "must start with \"/\", got {value:?}; e.g. juju config <app> nagios_index_path=/"
            ),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            "nagios_index_path",
            format!("must not contain spaces or control characters, got {value:?}; percent-encode them (a space is %20)"),
        ));
    }
    Ok(())
}

/// Check `nagios_expected_status`: an HTTP status code.
pub fn validate_nagios_expected_status(value: i64) -> Result<u16, ConfigError> {
    u16::try_from(value)
        .ok()
        .filter(|status| (100..=599).contains(status))
        .ok_or_else(|| {
            ConfigError::new(
                "nagios_expected_status",
                format!("must be an HTTP status from 100 to 599, got {value}; e.g. juju config <app> nagios_expected_status=200"),
            )
        })
}

/// Check `nagios_index_content`: it must fit on the one NRPE command line.
pub fn validate_nagios_index_content(value: &str) -> Result<(), ConfigError> {
    if value.chars().any(breaks_nrpe_line) {
        Err(ConfigError::new(
            "nagios_index_content",
            "must be one line (no newline, carriage return or NUL): NRPE reads each command from a single line; use a shorter distinctive string from the page",
        ))
    } else {
        Ok(())
    }
}

/// Render the NRPE command file, the Nagios service export and the
/// `monitors` value for one unit's check.
pub fn render_nrpe(check: &NrpeCheck<'_>) -> Result<NrpeFiles, NrpeError> {
    if !is_nagios_name(check.app) {
        return Err(NrpeError::BadAppName(check.app.to_string()));
    }
    validate_nagios_context(check.nagios_context)?;
    validate_nagios_servicegroups(check.nagios_servicegroups)?;
    validate_nagios_index_path(check.index_path)?;
    validate_nagios_index_content(check.index_content)?;
    let expected_status = validate_nagios_expected_status(i64::from(check.expected_status))?;
    for (what, value) in [
        ("address", check.address),
        ("check_http path", check.check_http_path),
    ] {
        if value.is_empty() || value.chars().any(breaks_nrpe_line) {
            return Err(NrpeError::BadValue {
                what,
                value: value.to_string(),
            });
        }
    }

    let hostname = nagios_hostname(
        check.relation_nagios_hostname,
        check.nagios_context,
        check.unit,
    );
    if !is_nagios_name(&hostname) {
        return Err(NrpeError::BadNagiosHostname(hostname));
    }
    let servicegroups = match super::split_comma_list(check.nagios_servicegroups) {
        groups if groups.is_empty() => check.nagios_context.to_string(),
        groups => groups.join(","),
    };
    let check_name = check_name(check.app);

    let port = check.port.to_string();
    let status = expected_status.to_string();
    let mut arguments = vec![
        check.check_http_path,
        "-I",
        check.address,
        "-p",
        &port,
        "-u",
        check.index_path,
        "-e",
        &status,
    ];
    if !check.index_content.is_empty() {
        arguments.extend(["-s", check.index_content]);
    }
    let shell_line: Vec<String> = arguments.into_iter().map(shell_quote).collect();
    let command_line = escape_nrpe_macros(&shell_line.join(" "));
    let nrpe_line_bytes = format!("command[{check_name}]={command_line}").len();
    if nrpe_line_bytes > NRPE_MAX_LINE_BYTES {
        return Err(ConfigError::new(
            if check.index_content.is_empty() { "nagios_index_path" } else { "nagios_index_content" },
            format!("makes the NRPE command line {nrpe_line_bytes} bytes long; NRPE reads at most {NRPE_MAX_LINE_BYTES}, so shorten nagios_index_content or nagios_index_path"),
        )
        .into());
    }

    let mut command = NrpeCheckTemplate {
        app: check.app,
        check_name: &check_name,
        port: check.port,
        servicegroups: &servicegroups,
        command_line: &command_line,
    }
    .render()
    .map_err(|source| NrpeError::Template {
        template: "nrpe-check.cfg",
        source,
    })?;
    // askama drops a template's final newline; config files end with one.
    command.push('\n');
    let mut service = NagiosServiceTemplate {
        app: check.app,
        check_name: &check_name,
        nagios_hostname: &hostname,
        servicegroups: &servicegroups,
    }
    .render()
    .map_err(|source| NrpeError::Template {
        template: "nagios-service.cfg",
        source,
    })?;
    service.push('\n');

    Ok(NrpeFiles {
        command: RenderedFile {
            path: PathBuf::from(format!("etc/nagios/nrpe.d/{check_name}.cfg")),
            contents: command,
        },
        service_export: RenderedFile {
            path: PathBuf::from(format!(
                "var/lib/nagios/export/service__{hostname}{}",
                service_export_suffix(check.app)
            )),
            contents: service,
        },
        monitors: monitors_value(&check_name),
        nagios_hostname: hostname,
    })
}

/// The `monitors` relation value, as JSON.
///
/// The NRPE charm reads it with `yaml.safe_load`; JSON's flow syntax is
/// YAML too (PyYAML included), and serde_json gives us correct quoting of
/// every key for free — including `'0.3'`, which must stay a string.
fn monitors_value(check_name: &str) -> String {
    let mut checks = serde_json::Map::new();
    checks.insert(
        check_name.to_string(),
        serde_json::json!({ "command": check_name }),
    );
    serde_json::json!({
        "monitors": { "remote": { "nrpe": checks } },
        "version": "0.3",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_from_relation_or_context() {
        assert_eq!(
            nagios_hostname(Some("juju-web-3"), "ctx", "wsgi-app/0"),
            "juju-web-3"
        );
        assert_eq!(
            nagios_hostname(Some(" "), "ctx", "wsgi-app/0"),
            "ctx-wsgi-app-0"
        );
        assert_eq!(
            nagios_hostname(None, "juju", "wsgi-app/12"),
            "juju-wsgi-app-12"
        );
    }

    #[test]
    fn plugin_lookup_prefers_usr_lib() {
        assert_eq!(resolve_check_http(|_| true), Some(CHECK_HTTP_CANDIDATES[0]));
        assert_eq!(
            resolve_check_http(|p| p.starts_with("/usr/local")),
            Some("/usr/local/lib/nagios/plugins/check_http")
        );
        assert_eq!(resolve_check_http(|_| false), None);
    }

    #[test]
    fn dollars_are_doubled_for_nrpe() {
        assert_eq!(escape_nrpe_macros("'$(x)' $ARG1$"), "'$$(x)' $$ARG1$$");
    }

    #[test]
    fn option_checks_name_the_option() {
        assert_eq!(
            validate_nagios_index_path("index").unwrap_err().option,
            "nagios_index_path"
        );
        assert!(validate_nagios_index_path("/a b").is_err());
        assert!(validate_nagios_index_path("/health?full=1").is_ok());
        assert_eq!(
            validate_nagios_expected_status(99).unwrap_err().option,
            "nagios_expected_status"
        );
        assert!(validate_nagios_expected_status(600).is_err());
        assert!(validate_nagios_expected_status(-200).is_err());
        assert_eq!(validate_nagios_expected_status(599), Ok(599));
        assert_eq!(
            validate_nagios_index_content("a\nb").unwrap_err().option,
            "nagios_index_content"
        );
        assert!(validate_nagios_index_content("a\0b").is_err());
        assert!(validate_nagios_index_content("It works! $(x) ;|&").is_ok());
        assert_eq!(
            validate_nagios_context("").unwrap_err().option,
            "nagios_context"
        );
        assert!(validate_nagios_context("juju;x").is_err());
        assert!(validate_nagios_servicegroups("web, juju").is_ok());
        assert_eq!(
            validate_nagios_servicegroups("web;x").unwrap_err().option,
            "nagios_servicegroups"
        );
    }

    #[test]
    fn monitors_is_sorted_json() {
        assert_eq!(
            monitors_value("check_a_http"),
            r#"{"monitors":{"remote":{"nrpe":{"check_a_http":{"command":"check_a_http"}}}},"version":"0.3"}"#
        );
    }
}
