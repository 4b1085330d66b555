//! The emulated hook tools (§3 of shared/reference/juju-hook-tools.md).
//!
//! charm-sim is a multi-call binary: started as `config-get`,
//! `relation-set`, … (through the symlinks in a unit's `tools/` directory)
//! it runs [`run_tool`], which finds the model (`CHARM_SIM_MODEL`) and the
//! hook context (`JUJU_CONTEXT_ID`), parses the arguments with the gnuflag
//! grammar, and answers like Juju: output on stdout in the requested
//! format, or one `ERROR <message>` line on stderr with exit code 2 for
//! usage errors and 1 for runtime errors.
//!
//! Buffered writes (relation-set, open-port, close-port) go into the
//! context's pending tables; everything else takes effect at once.
//!
//! Why one file over 600 lines: one emulated tool after another, in the
//! reference's order, sharing the flag grammar and the output formats.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde_json::{json, Map, Value};
use wsgi_app::ops::backend::{check_action_result_key, ModelError, Port};
use wsgi_app::ops::UnitHook;

use super::context::{ContextInfo, UnitPaths};
use super::engine::{enqueue_hook, live_units, Hook};
use super::flags::{self, Flag, Parsed};
use super::output::{render, Format};
use super::secrets;
use super::store::{App, Bag, Model, Relation, Unit};
use super::MODEL_ENV;

/// Every hook tool charm-sim emulates.
pub const TOOL_NAMES: &[&str] = &[
    "action-fail",
    "action-get",
    "action-log",
    "action-set",
    "application-version-set",
    "close-port",
    "config-get",
    "is-leader",
    "juju-log",
    "leader-get",
    "leader-set",
    "network-get",
    "open-port",
    "opened-ports",
    "relation-get",
    "relation-ids",
    "relation-list",
    "relation-set",
    "secret-get",
    "secret-ids",
    "secret-info-get",
    "status-get",
    "status-set",
    "unit-get",
];

/// Whether `name` (argv[0]'s basename) is a hook tool.
pub fn is_tool(name: &str) -> bool {
    TOOL_NAMES.contains(&name)
}

/// A tool failure: exit code 2 for usage, 1 for runtime.
#[derive(Debug)]
pub struct ToolError {
    pub code: i32,
    pub message: String,
}

/// A usage error: exit code 2, as Juju's tools give for bad arguments.
pub(super) fn usage(message: impl Into<String>) -> ToolError {
    ToolError {
        code: 2,
        message: message.into(),
    }
}

/// A runtime error: exit code 1.
pub(super) fn runtime(message: impl Into<String>) -> ToolError {
    ToolError {
        code: 1,
        message: message.into(),
    }
}

impl From<super::SimError> for ToolError {
    fn from(e: super::SimError) -> Self {
        runtime(e.0)
    }
}

type ToolResult<T = ()> = Result<T, ToolError>;

/// What a successful tool run prints.
struct Reply {
    stdout: String,
    stderr: String,
}

impl Reply {
    fn none() -> Reply {
        Reply {
            stdout: String::new(),
            stderr: String::new(),
        }
    }
    fn out(stdout: String) -> Reply {
        Reply {
            stdout,
            stderr: String::new(),
        }
    }
}

/// Run the hook tool `name` with `args`; returns the exit code after
/// printing its output.
pub fn run_tool(name: &str, args: &[String]) -> i32 {
    match run_tool_inner(name, args) {
        Ok(reply) => {
            let _ = std::io::stdout().write_all(reply.stdout.as_bytes());
            let _ = std::io::stderr().write_all(reply.stderr.as_bytes());
            0
        }
        Err(e) => {
            eprintln!("ERROR {}", e.message);
            e.code
        }
    }
}

/// Each tool's flags (besides the shared `--format`/`-o`).
fn flags_of(tool: &str) -> (Vec<Flag>, bool) {
    let format = Flag::value("format", None);
    let output = Flag::value("output", Some('o'));
    let relation = Flag::value("relation", Some('r'));
    let app = Flag::switch("app", None);
    // (flags, whether --format selects the output)
    match tool {
        "config-get" => (vec![format, output, Flag::switch("all", Some('a'))], true),
        "relation-ids" | "action-get" | "unit-get" | "is-leader" | "leader-get" => {
            (vec![format, output], true)
        }
        "relation-list" | "relation-get" => (vec![format, output, relation, app], true),
        "relation-set" => (
            vec![relation, app, Flag::value("file", None), format],
            false,
        ),
        "status-set" => (vec![Flag::switch("application", None)], false),
        "status-get" => (
            vec![
                format,
                output,
                Flag::switch("include-data", None),
                Flag::switch("application", None),
            ],
            true,
        ),
        "juju-log" => (
            vec![
                Flag::switch("debug", None),
                Flag::value("log-level", Some('l')),
                format,
            ],
            false,
        ),
        "open-port" | "close-port" => (vec![Flag::value("endpoints", None), format], false),
        "opened-ports" => (vec![format, output, Flag::switch("endpoints", None)], true),
        "network-get" => (
            vec![
                format,
                output,
                relation,
                Flag::switch("bind-address", None),
                Flag::switch("ingress-address", None),
                Flag::switch("egress-subnets", None),
                Flag::switch("primary-address", None),
            ],
            true,
        ),
        "secret-get" => (
            vec![
                format,
                output,
                Flag::value("label", None),
                Flag::switch("peek", None),
                Flag::switch("refresh", None),
            ],
            true,
        ),
        "secret-info-get" => (vec![format, output, Flag::value("label", None)], true),
        "secret-ids" => (vec![format, output], true),
        _ => (vec![], false),
    }
}

/// Everything a tool needs: the model and the running context.
struct ToolCtx {
    model: Model,
    id: String,
    unit: Unit,
    app: App,
    info: ContextInfo,
}

impl ToolCtx {
    fn load() -> ToolResult<ToolCtx> {
        let id = std::env::var("JUJU_CONTEXT_ID")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| runtime("JUJU_CONTEXT_ID not set"))?;
        let dir = std::env::var_os(MODEL_ENV)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                runtime(format!(
                    "{MODEL_ENV} not set (charm-sim's hook tools only run inside charm-sim hooks)"
                ))
            })?;
        let model = Model::open(Path::new(&dir))?;
        let (unit_name, info) = model.running_context::<ContextInfo>(&id)?.ok_or_else(|| {
            runtime(format!(
                "bad request: unknown context {id:?} (the hook it belonged to has ended)"
            ))
        })?;
        let unit = model.require_unit(&unit_name)?;
        let app = model.require_app(&unit.app)?;
        Ok(ToolCtx {
            model,
            id,
            unit,
            app,
            info,
        })
    }

    fn is_leader(&self) -> ToolResult<bool> {
        Ok(self.model.require_unit(&self.unit.name)?.leader)
    }

    fn action_id(&self) -> ToolResult<i64> {
        self.info
            .action_id
            .ok_or_else(|| runtime("not running an action"))
    }

    /// The relation named by `-r` (exit 2 when unknown), else the hook's
    /// own relation, else "no relation id specified" (exit 2).
    fn relation(&self, parsed: &Parsed) -> ToolResult<Relation> {
        if let Some(given) = parsed.value("relation") {
            let invalid = |why: &str| {
                usage(format!(
                    "invalid value {:?} for flag {}: {why}",
                    given.value, given.spelled
                ))
            };
            // Only the number after the last ':' counts (§3.0).
            let number = given.value.rsplit(':').next().unwrap_or_default();
            let id: i64 = number.parse().map_err(|_| invalid("invalid relation id"))?;
            return match self.model.relation(id)? {
                Some(rel) if self.model.in_scope(rel.id, &self.unit.name)? => Ok(rel),
                _ => Err(invalid("relation not found")),
            };
        }
        match self.info.relation_id {
            Some(id) => self
                .model
                .relation(id)?
                .ok_or_else(|| runtime(format!("relation {id} not found"))),
            None => Err(usage("no relation id specified")),
        }
    }
}

fn run_tool_inner(name: &str, args: &[String]) -> ToolResult<Reply> {
    let (tool_flags, formatted) = flags_of(name);
    let parsed = flags::parse(&tool_flags, args).map_err(usage)?;
    if parsed.help {
        return Ok(Reply::out(help_text(name, &tool_flags)));
    }
    let format = match parsed.value("format") {
        Some(given) if formatted => Format::parse(&given.value).map_err(|why| {
            usage(format!(
                "invalid value {:?} for flag {}: {why}",
                given.value, given.spelled
            ))
        })?,
        _ => Format::Smart,
    };
    // Usage checks that need no model come first, as in Juju's Init().
    precheck(name, &parsed)?;
    let ctx = ToolCtx::load()?;
    let mut reply = match name {
        "config-get" => config_get(&ctx, &parsed, format),
        "relation-ids" => relation_ids(&ctx, &parsed, format),
        "relation-list" => relation_list(&ctx, &parsed, format),
        "relation-get" => relation_get(&ctx, &parsed, format),
        "relation-set" => relation_set(&ctx, &parsed),
        "action-get" => action_get(&ctx, &parsed, format),
        "action-set" => action_set(&ctx, &parsed),
        "action-fail" => action_fail(&ctx, &parsed),
        "action-log" => action_log(&ctx, &parsed),
        "status-set" => status_set(&ctx, &parsed),
        "status-get" => status_get(&ctx, &parsed, format),
        "juju-log" => juju_log(&ctx, &parsed),
        "open-port" => change_port(&ctx, &parsed, true),
        "close-port" => change_port(&ctx, &parsed, false),
        "opened-ports" => opened_ports(&ctx, &parsed, format),
        "unit-get" => unit_get(&ctx, &parsed, format),
        "network-get" => network_get(&ctx, &parsed, format),
        "is-leader" => is_leader(&ctx, &parsed, format),
        "leader-get" => leader_get(&ctx, &parsed, format),
        "leader-set" => leader_set(&ctx, &parsed),
        "application-version-set" => application_version_set(&ctx, &parsed),
        "secret-get" => secrets::secret_get(&ctx.model, &ctx.unit, &parsed, format).map(Reply::out),
        "secret-info-get" => {
            secrets::secret_info_get(&ctx.model, &ctx.unit, &parsed, format).map(Reply::out)
        }
        "secret-ids" => secrets::secret_ids(&ctx.model, &ctx.unit, &parsed, format).map(Reply::out),
        other => Err(runtime(format!(
            "{other} is not a hook tool charm-sim emulates"
        ))),
    }?;
    if formatted {
        if let Some(file) = parsed.value("output") {
            std::fs::write(&file.value, &reply.stdout)
                .map_err(|e| runtime(format!("cannot write {}: {e}", file.value)))?;
            reply.stdout.clear();
        }
    }
    Ok(reply)
}

fn help_text(name: &str, tool_flags: &[Flag]) -> String {
    let mut text = format!("Usage: {name} [options]\n\nOptions:\n");
    for flag in tool_flags {
        let short = flag.short.map(|c| format!("-{c}, ")).unwrap_or_default();
        text.push_str(&format!("{short}--{}\n", flag.long));
    }
    text.push_str("\n(emulated by charm-sim; see shared/reference/juju-hook-tools.md)\n");
    text
}

fn no_extra(args: &[String], allowed: usize) -> ToolResult {
    if args.len() > allowed {
        return Err(usage(flags::unrecognized(&args[allowed..])));
    }
    Ok(())
}

/// Argument checks that Juju makes in Init(), before it looks at any state.
fn precheck(name: &str, parsed: &Parsed) -> ToolResult {
    if name.starts_with("secret-") {
        return secrets::precheck(name, parsed);
    }
    let args = &parsed.args;
    match name {
        "config-get" => {
            no_extra(args, 1)?;
            if let (Some(key), true) = (args.first(), parsed.switch("all")) {
                return Err(usage(format!(
                    "cannot use argument --all together with key {key:?}"
                )));
            }
        }
        "relation-ids" | "action-get" | "leader-get" => no_extra(args, 1)?,
        "relation-list" | "status-get" | "is-leader" | "opened-ports" => no_extra(args, 0)?,
        "relation-get" => no_extra(args, 2)?,
        "relation-set" | "leader-set" => {
            flags::key_values(args).map_err(usage)?;
        }
        "action-set" => {
            for arg in args {
                let (key, _) = arg.split_once('=').ok_or_else(|| {
                    usage(format!("argument {arg:?} must be of the form key...=value"))
                })?;
                check_action_result_key(key).map_err(|e| match e {
                    ModelError::Usage { message, .. } => usage(message),
                    other => usage(other.to_string()),
                })?;
            }
        }
        "action-fail" => no_extra(args, 1)?,
        "action-log" | "juju-log" if args.is_empty() => {
            return Err(usage("no message specified"));
        }
        "status-set" => {
            let status = args
                .first()
                .ok_or_else(|| usage("invalid args, require <status> [message]"))?;
            if !["maintenance", "blocked", "waiting", "active"].contains(&status.as_str()) {
                return Err(usage(format!(
                    "invalid status {status:?}, expected one of [maintenance blocked waiting active]"
                )));
            }
            no_extra(args, 2)?;
        }
        "open-port" | "close-port" => {
            let spec = args
                .first()
                .ok_or_else(|| usage("no port or range specified"))?;
            no_extra(args, 1)?;
            parse_port(spec)?;
        }
        "unit-get" => {
            let key = args.first().ok_or_else(|| usage("no setting specified"))?;
            no_extra(args, 1)?;
            if key != "private-address" && key != "public-address" {
                return Err(usage(format!("unknown setting {key:?}")));
            }
        }
        "network-get" => {
            if args.is_empty() {
                return Err(usage("no arguments specified"));
            }
            no_extra(args, 1)?;
        }
        "application-version-set" => {
            if args.is_empty() {
                return Err(usage("no version specified"));
            }
            no_extra(args, 1)?;
        }
        _ => {}
    }
    if name == "leader-get" {
        if let Some(key) = args.first().filter(|k| k.contains('=')) {
            return Err(usage(format!("invalid key {key:?}")));
        }
    }
    Ok(())
}

/// `open-port`'s argument: `80`, `80/tcp`, `8000-8999/udp` or `icmp`.
fn parse_port(spec: &str) -> ToolResult<Port> {
    let lower = spec.to_ascii_lowercase();
    let (range, proto) = lower.split_once('/').unwrap_or((&lower, "tcp"));
    if lower != "icmp" {
        if !["tcp", "udp", "icmp"].contains(&proto) {
            return Err(usage(format!(
                "invalid protocol {proto:?}, expected \"tcp\", \"udp\", or \"icmp\""
            )));
        }
        for part in range.split('-') {
            if part.parse::<u16>().is_err() {
                return Err(usage(format!(
                    "invalid port {spec:?}: {part:?} is not a port number from 0 to 65535"
                )));
            }
        }
    }
    Port::from_str(&lower).map_err(|_| usage(format!("invalid port range {lower}")))
}

// ----- config, leadership ------------------------------------------------------

fn config_get(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let mut config = ctx.model.effective_config(&ctx.app)?;
    let value = match parsed.args.first() {
        Some(key) => config.get(key).cloned().unwrap_or(Value::Null),
        None => {
            if parsed.switch("all") {
                for key in ctx.app.meta()?.options.keys() {
                    config.entry(key.clone()).or_insert(Value::Null);
                }
            }
            Value::Object(config)
        }
    };
    Ok(Reply::out(render(format, &value)))
}

fn is_leader(ctx: &ToolCtx, _parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    Ok(Reply::out(render(format, &Value::Bool(ctx.is_leader()?))))
}

fn leader_get(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let settings = ctx.model.leader_settings(&ctx.app.name)?;
    let value = match parsed.args.first().map(String::as_str) {
        None | Some("-") => json!(settings),
        Some(key) => settings.get(key).map(|v| json!(v)).unwrap_or(Value::Null),
    };
    Ok(Reply::out(render(format, &value)))
}

fn leader_set(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let changes = flags::key_values(&parsed.args).map_err(usage)?;
    if !ctx.is_leader()? {
        return Err(runtime(
            "cannot write leadership settings: cannot write settings: not the leader",
        ));
    }
    if changes.is_empty() {
        return Ok(Reply::none());
    }
    ctx.model.update_leader_settings(&ctx.app.name, &changes)?;
    // Immediate, and the other units hear about it (Juju 3.x).
    for unit in live_units(&ctx.model, &ctx.app.name)? {
        if unit.name != ctx.unit.name {
            enqueue_hook(
                &ctx.model,
                &unit.name,
                Hook::Unit(UnitHook::LeaderSettingsChanged),
            )?;
        }
    }
    Ok(Reply::none())
}

// ----- relations ---------------------------------------------------------------

fn relation_ids(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let endpoint = match parsed.args.first() {
        Some(e) => e.clone(),
        None => ctx
            .info
            .relation_endpoint
            .clone()
            .ok_or_else(|| usage("no endpoint name specified"))?,
    };
    let mut ids: Vec<String> = ctx
        .model
        .unit_relations(&ctx.unit.name)?
        .into_iter()
        .filter(|r| r.endpoint == endpoint && Some(r.id) != ctx.info.broken_relation)
        .map(|r| r.key())
        .collect();
    // Sorted as strings: db:10 before db:2, as Juju does.
    ids.sort();
    Ok(Reply::out(render(format, &json!(ids))))
}

fn relation_list(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let rel = ctx.relation(parsed)?;
    if parsed.switch("app") {
        return Ok(Reply::out(render(format, &json!(rel.remote_app))));
    }
    let departing = ctx.info.departing_unit.clone().unwrap_or_default();
    let mut units: Vec<String> = ctx
        .model
        .members(rel.id, &ctx.unit.name)?
        .into_iter()
        .filter(|u| *u != ctx.unit.name && *u != departing)
        .collect();
    units.sort();
    Ok(Reply::out(render(format, &json!(units))))
}

fn is_unit_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((app, n)) => {
            is_app_name(app) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn is_app_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn relation_get(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let rel = ctx.relation(parsed)?;
    let key = parsed.args.first().filter(|k| k.as_str() != "-").cloned();
    let mut app_mode = parsed.switch("app");
    // Which bag: explicit target, else the hook's remote unit, else (created,
    // broken, app-level changed) the remote application (§3.4).
    let target = match parsed.args.get(1) {
        Some(t) if app_mode => t.split('/').next().unwrap_or(t).to_string(),
        Some(t) if is_unit_name(t) => t.clone(),
        Some(t) if is_app_name(t) => {
            return Err(usage(format!(
                "expected unit name, got application name {t:?}"
            )));
        }
        Some(t) => return Err(usage(format!("invalid unit name {t:?}"))),
        None if app_mode => ctx
            .info
            .remote_app
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| rel.remote_app.clone()),
        None => match ctx.info.remote_unit.clone().filter(|u| !u.is_empty()) {
            Some(unit) => unit,
            None => match ctx.info.remote_app.clone().filter(|a| !a.is_empty()) {
                Some(app) => {
                    app_mode = true;
                    app
                }
                None => return Err(usage("no unit or application specified")),
            },
        },
    };
    let bag = read_bag(ctx, &rel, &target, app_mode)?;
    let value = match key {
        Some(k) => bag.get(&k).map(|v| json!(v)).unwrap_or(Value::Null),
        None => json!(bag),
    };
    Ok(Reply::out(render(format, &value)))
}

/// Read a bag with Juju's access rules: your own unit (and your own app as
/// leader) includes this hook's pending writes; remote bags come from the
/// "controller" (committed data).
fn read_bag(ctx: &ToolCtx, rel: &Relation, owner: &str, app_mode: bool) -> ToolResult<Bag> {
    if app_mode {
        if owner == ctx.app.name {
            // Peers all read their application's bag; only the leader has
            // it in its own context (pending writes included).
            if rel.remote_app == ctx.app.name && !ctx.is_leader()? {
                return Ok(ctx.model.bag(rel.id, owner)?);
            }
            if !ctx.is_leader()? {
                return Err(runtime(format!(
                    "permission denied: {} is not the leader and cannot read its own application databag",
                    ctx.unit.name
                )));
            }
            return Ok(ctx.model.bag_in_context(&ctx.id, rel.id, owner)?);
        }
        if owner == rel.remote_app {
            return Ok(ctx.model.bag(rel.id, owner)?);
        }
        return Err(runtime(format!(
            "cannot read settings for application {owner:?} in relation {:?}: application not in relation",
            rel.key()
        )));
    }
    if owner == ctx.unit.name {
        return Ok(ctx.model.bag_in_context(&ctx.id, rel.id, owner)?);
    }
    if owner.split('/').next() == Some(rel.remote_app.as_str())
        && ctx.model.in_scope(rel.id, owner)?
    {
        return Ok(ctx.model.bag(rel.id, owner)?);
    }
    Err(runtime(format!(
        "cannot read settings for unit {owner:?} in relation {:?}: unit {owner:?}: settings not found",
        rel.key()
    )))
}

/// `--file` content: a YAML (or JSON) map of strings; other scalars are
/// taken as their literal text and null as "" (delete).
fn settings_file(path: &str) -> ToolResult<Bag> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| runtime(format!("cannot read stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| runtime(format!("cannot read {path}: {e}")))?;
    }
    if text.trim().is_empty() {
        return Ok(Bag::new());
    }
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| runtime(format!("cannot parse settings from {path}: {e}")))?;
    let map = match value {
        serde_yaml_ng::Value::Mapping(m) => m,
        serde_yaml_ng::Value::Null => return Ok(Bag::new()),
        _ => {
            return Err(runtime(format!(
                "settings in {path} are not a map of strings"
            )))
        }
    };
    let scalar = |v: &serde_yaml_ng::Value| -> Option<String> {
        match v {
            serde_yaml_ng::Value::String(s) => Some(s.clone()),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
            serde_yaml_ng::Value::Null => Some(String::new()),
            _ => None,
        }
    };
    let mut bag = Bag::new();
    for (k, v) in &map {
        match (scalar(k), scalar(v)) {
            (Some(k), Some(v)) => {
                bag.insert(k, v);
            }
            _ => {
                return Err(runtime(format!(
                    "settings in {path} are not a map of strings"
                )))
            }
        }
    }
    Ok(bag)
}

fn relation_set(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let from_args = flags::key_values(&parsed.args).map_err(usage)?;
    let rel = ctx.relation(parsed)?;
    let mut changes = match parsed.value("file") {
        Some(file) => settings_file(&file.value)?,
        None => Bag::new(),
    };
    // Arguments override keys from the file.
    changes.extend(from_args);
    let owner = if parsed.switch("app") {
        if !ctx.is_leader()? {
            return Err(runtime("cannot write relation settings"));
        }
        ctx.app.name.clone()
    } else {
        ctx.unit.name.clone()
    };
    if !changes.is_empty() {
        ctx.model
            .pend_bag_changes(&ctx.id, rel.id, &owner, &changes)?;
    }
    let mut reply = Reply::none();
    if parsed.is_set("format") {
        reply.stderr = "--format flag deprecated for command \"relation-set\"\n".into();
    }
    Ok(reply)
}

// ----- actions -----------------------------------------------------------------

fn action_get(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let action = ctx.model.action(ctx.action_id()?)?;
    let value = match parsed.args.first() {
        None => match action.params {
            Value::Null => json!({}),
            p => p,
        },
        Some(path) => {
            let mut node = &action.params;
            for part in path.split('.') {
                node = node.get(part).unwrap_or(&Value::Null);
            }
            node.clone()
        }
    };
    Ok(Reply::out(render(format, &value)))
}

fn action_set(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let id = ctx.action_id()?;
    let pairs: Vec<(String, String)> = parsed
        .args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ctx.model.add_action_results(id, &pairs)?;
    Ok(Reply::none())
}

fn action_fail(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let id = ctx.action_id()?;
    let message =
        parsed.args.first().cloned().unwrap_or_else(|| {
            "action failed without reason given, check action for errors".into()
        });
    ctx.model.set_action_status(id, "failed", &message)?;
    Ok(Reply::none())
}

fn action_log(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let id = ctx.action_id()?;
    ctx.model.add_action_log(id, &parsed.args.join(" "))?;
    Ok(Reply::none())
}

// ----- status, version, logs ---------------------------------------------------

fn status_set(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let status = &parsed.args[0];
    let message = parsed.args.get(1).cloned().unwrap_or_default();
    if parsed.switch("application") {
        if !ctx.is_leader()? {
            return Err(runtime("this unit is not the leader"));
        }
        ctx.model.set_app_status(&ctx.app.name, status, &message)?;
    } else {
        ctx.model
            .set_workload_status(&ctx.unit.name, status, &message, true)?;
    }
    Ok(Reply::none())
}

fn status_get(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let include_data = parsed.switch("include-data");
    let shape = |status: &str, message: &str| -> Value {
        if include_data {
            json!({"status": status, "message": message, "status-data": {}})
        } else {
            json!({"status": status})
        }
    };
    if parsed.switch("application") {
        if !ctx.is_leader()? {
            return Err(runtime(
                "finding application status: this unit is not the leader",
            ));
        }
        let app = ctx.model.require_app(&ctx.app.name)?;
        let mut units = Map::new();
        for unit in ctx.model.units(&app.name)? {
            units.insert(
                unit.name.clone(),
                shape(&unit.workload.current, &unit.workload.message),
            );
        }
        let mut inner = shape(&app.status.current, &app.status.message);
        inner["units"] = Value::Object(units);
        let value = json!({ "application-status": inner });
        return Ok(Reply::out(render(format, &value)));
    }
    let unit = ctx.model.require_unit(&ctx.unit.name)?;
    if !include_data && format == Format::Smart {
        return Ok(Reply::out(render(format, &json!(unit.workload.current))));
    }
    Ok(Reply::out(render(
        format,
        &shape(&unit.workload.current, &unit.workload.message),
    )))
}

fn application_version_set(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    ctx.model.set_app_version(&ctx.app.name, &parsed.args[0])?;
    Ok(Reply::none())
}

fn juju_log(ctx: &ToolCtx, parsed: &Parsed) -> ToolResult<Reply> {
    let requested = if parsed.switch("debug") {
        "DEBUG".to_string()
    } else {
        parsed
            .value("log-level")
            .map(|g| g.value.to_ascii_uppercase())
            .unwrap_or_else(|| "INFO".into())
    };
    let known = [
        "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL",
    ];
    let paths = UnitPaths::new(ctx.model.dir(), &ctx.unit);
    let mut lines = Vec::new();
    // An unknown level is not an error: Juju warns and logs at INFO.
    let level = if known.contains(&requested.as_str()) {
        requested
    } else {
        lines.push((
            "WARNING".to_string(),
            format!("invalid log level {requested:?}, using INFO"),
        ));
        "INFO".into()
    };
    let mut message = parsed.args.join(" ");
    if let (Some(id), Some(endpoint)) = (ctx.info.relation_id, &ctx.info.relation_endpoint) {
        message = format!("{endpoint}:{id}: {message}");
    }
    lines.push((level, message));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.hooks_log)
        .ok();
    for (level, message) in lines {
        ctx.model
            .add_log(&ctx.unit.name, &ctx.id, &level, &message)?;
        if let Some(log) = log.as_mut() {
            let _ = writeln!(log, "juju-log {level}: {message}");
        }
    }
    let mut reply = Reply::none();
    if parsed.is_set("format") {
        reply.stderr = "--format flag deprecated for command \"juju-log\"\n".into();
    }
    Ok(reply)
}

// ----- ports -------------------------------------------------------------------

fn change_port(ctx: &ToolCtx, parsed: &Parsed, open: bool) -> ToolResult<Reply> {
    let port = parse_port(&parsed.args[0])?;
    let endpoints: Vec<String> = match parsed.value("endpoints") {
        Some(list) => list
            .value
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        None => vec![String::new()],
    };
    if open {
        let current = ctx.model.ports_in_context(&ctx.unit.name, Some(&ctx.id))?;
        for existing in &current {
            let p = existing.port;
            let overlaps = p.protocol == port.protocol && p.from <= port.to && port.from <= p.to;
            if overlaps && p != port {
                return Err(runtime(format!(
                    "cannot open {port} (unit {:?}): port range conflicts with {p} (unit {:?})",
                    ctx.unit.name, ctx.unit.name
                )));
            }
        }
    }
    for endpoint in &endpoints {
        ctx.model.pend_port(&ctx.id, open, endpoint, &port)?;
    }
    let mut reply = Reply::none();
    if parsed.is_set("format") {
        let tool = if open { "open-port" } else { "close-port" };
        reply.stderr = format!("--format flag deprecated for command {tool:?}\n");
    }
    Ok(reply)
}

fn opened_ports(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let ports = ctx.model.ports_in_context(&ctx.unit.name, Some(&ctx.id))?;
    let mut by_port: BTreeMap<Port, Vec<String>> = BTreeMap::new();
    for p in ports {
        by_port.entry(p.port).or_default().push(p.endpoint);
    }
    let list: Vec<String> = by_port
        .into_iter()
        .map(|(port, mut endpoints)| {
            if !parsed.switch("endpoints") {
                return port.to_string();
            }
            if endpoints.iter().any(String::is_empty) {
                return format!("{port} (*)");
            }
            endpoints.sort();
            format!("{port} ({})", endpoints.join(", "))
        })
        .collect();
    Ok(Reply::out(render(format, &json!(list))))
}

// ----- network -----------------------------------------------------------------

fn unit_get(ctx: &ToolCtx, _parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    Ok(Reply::out(render(format, &json!(ctx.unit.address))))
}

fn network_get(ctx: &ToolCtx, parsed: &Parsed, format: Format) -> ToolResult<Reply> {
    let binding = &parsed.args[0];
    if parsed.is_set("relation") {
        ctx.relation(parsed)?;
    }
    let meta = ctx.app.meta()?;
    let known = meta.endpoints.contains_key(binding)
        || meta.extra_bindings.contains(binding)
        || binding == "juju-info";
    if !known {
        return Err(runtime(format!(
            "no network config found for binding {binding:?}"
        )));
    }
    let address = &ctx.unit.address;
    let full = json!({
        "bind-addresses": [{
            "mac-address": "00:00:00:00:00:00",
            "interface-name": "lo",
            "addresses": [{"hostname": "", "value": address, "cidr": "127.0.0.0/8"}],
        }],
        "egress-subnets": [format!("{address}/32")],
        "ingress-addresses": [address],
    });
    let selectors: Vec<(&str, Value)> = [
        ("bind-address", json!(address)),
        ("ingress-address", json!(address)),
        ("egress-subnets", json!([format!("{address}/32")])),
        ("primary-address", json!(address)),
    ]
    .into_iter()
    .filter(|(flag, _)| parsed.switch(flag))
    .collect();
    let value = match selectors.len() {
        0 => full,
        1 => selectors[0].1.clone(),
        _ => Value::Object(
            selectors
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        ),
    };
    Ok(Reply::out(render(format, &value)))
}
