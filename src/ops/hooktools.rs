//! [`Backend`] over Juju's hook tools, run as subprocesses with exactly the
//! argument forms ops uses (shared/reference/juju-hook-tools.md, Appendix A).
//!
//! [`ToolCall`] is the one place those forms are spelled: `HookTools` runs
//! them, and an emulated Juju (the test harness) records them, so the two
//! cannot drift apart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::backend::{
    secret_info_ref_error, Backend, Bag, BagOwner, LogLevel, ModelError, Network, Port, Scope,
    SecretContent, SecretInfo, SecretOwner, SecretRead, SecretRef, Status,
};
use super::event::RelationId;

/// One hook-tool call as Juju receives it: the tool, its arguments and,
/// for `--file -`, what it reads on stdin. Built only by the constructors
/// below, one per [`Backend`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    tool: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

impl ToolCall {
    fn new<S: Into<String>>(tool: &'static str, args: impl IntoIterator<Item = S>) -> Self {
        ToolCall {
            tool,
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
        }
    }

    pub fn tool(&self) -> &'static str {
        self.tool
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    pub fn config_get() -> Self {
        Self::new("config-get", ["--format=json"])
    }

    pub fn is_leader() -> Self {
        Self::new("is-leader", ["--format=json"])
    }

    pub fn relation_ids(endpoint: &str) -> Self {
        Self::new("relation-ids", [endpoint, "--format=json"])
    }

    pub fn relation_list(endpoint: &str, id: u32) -> Self {
        let rel = RelationId { endpoint, id }.to_string();
        Self::new("relation-list", ["--format=json", "-r", &rel])
    }

    pub fn relation_remote_app(endpoint: &str, id: u32) -> Self {
        let rel = RelationId { endpoint, id }.to_string();
        Self::new("relation-list", ["--format=json", "--app", "-r", &rel])
    }

    /// All keys (`-`) of one bag.
    pub fn relation_get(endpoint: &str, id: u32, owner: &BagOwner) -> Self {
        let rel = RelationId { endpoint, id }.to_string();
        match owner {
            BagOwner::Unit(unit) => {
                Self::new("relation-get", ["--format=json", "-r", &rel, "-", unit])
            }
            BagOwner::App(app) => Self::new(
                "relation-get",
                ["--format=json", "-r", &rel, "--app", "-", app],
            ),
        }
    }

    /// The changes go as JSON on stdin, never as `key=value` arguments, so
    /// values are neither trimmed nor visible in a process listing.
    pub fn relation_set(endpoint: &str, id: u32, scope: Scope, data: &Bag) -> Self {
        let rel = RelationId { endpoint, id }.to_string();
        let app = (scope == Scope::App).then_some("--app");
        let args = ["-r", &rel].into_iter().chain(app).chain(["--file", "-"]);
        ToolCall {
            stdin: Some(serde_json::to_vec(data).expect("a map of strings serialises")),
            ..Self::new("relation-set", args)
        }
    }

    /// ops lowercases the bool here but not in status-set (Appendix A);
    /// Juju's ParseBool reads both.
    pub fn status_get(scope: Scope) -> Self {
        let application = match scope {
            Scope::Unit => "--application=false",
            Scope::App => "--application=true",
        };
        Self::new(
            "status-get",
            ["--include-data", "--format=json", application],
        )
    }

    /// `--` lets a message start with `-`.
    pub fn status_set(scope: Scope, status: &Status) -> Self {
        let application = match scope {
            Scope::Unit => "--application=False",
            Scope::App => "--application=True",
        };
        Self::new(
            "status-set",
            [application, status.name.as_ref(), "--", &status.message],
        )
    }

    pub fn application_version_set(version: &str) -> Self {
        Self::new("application-version-set", ["--", version])
    }

    pub fn juju_log(level: LogLevel, message: &str) -> Self {
        Self::new("juju-log", ["--log-level", level.as_ref(), "--", message])
    }

    pub fn action_get() -> Self {
        Self::new("action-get", ["--format=json"])
    }

    pub fn action_set(results: &BTreeMap<String, String>) -> Self {
        Self::new(
            "action-set",
            results.iter().map(|(k, v)| format!("{k}={v}")),
        )
    }

    pub fn action_log(message: &str) -> Self {
        Self::new("action-log", ["--", message])
    }

    pub fn action_fail(message: &str) -> Self {
        Self::new("action-fail", ["--", message])
    }

    pub fn open_port(port: &Port) -> Self {
        Self::new("open-port", [port.to_string()])
    }

    pub fn close_port(port: &Port) -> Self {
        Self::new("close-port", [port.to_string()])
    }

    pub fn opened_ports() -> Self {
        Self::new("opened-ports", ["--format=json"])
    }

    /// Unlike the relation-* tools, ops passes the bare relation id here
    /// (Appendix A, §3.16).
    pub fn network_get(binding: &str, relation_id: Option<u32>) -> Self {
        let id = relation_id.map(|id| id.to_string());
        let relation_flag = id.iter().flat_map(|id| ["-r", id.as_str()]);
        let args = ["--format=json"]
            .into_iter()
            .chain(relation_flag)
            .chain([binding]);
        Self::new("network-get", args)
    }

    /// ops' order: format, the ID, the label, then the revision choice
    /// (modern-interfaces.md §6.4). IDs and labels are not secret; the
    /// content comes back on stdout only.
    pub fn secret_get(secret: SecretRef<'_>, read: SecretRead) -> Self {
        let label = secret.label().into_iter().flat_map(|l| ["--label", l]);
        let read = match read {
            SecretRead::Tracked => None,
            SecretRead::Refresh => Some("--refresh"),
            SecretRead::Peek => Some("--peek"),
        };
        let args = ["--format=json"]
            .into_iter()
            .chain(secret.id())
            .chain(label)
            .chain(read);
        Self::new("secret-get", args)
    }

    /// By ID or by label; with both, the ID is sent and the label too, so
    /// Juju gives its own refusal (`HookTools` refuses before that).
    pub fn secret_info_get(secret: SecretRef<'_>) -> Self {
        let label = secret.label().into_iter().flat_map(|l| ["--label", l]);
        let args = ["--format=json"]
            .into_iter()
            .chain(secret.id())
            .chain(label);
        Self::new("secret-info-get", args)
    }

    pub fn secret_ids() -> Self {
        Self::new("secret-ids", ["--format=json"])
    }
}

/// Runs hook tools found on `PATH` (or in `tools_dir` when given).
#[derive(Debug, Default)]
pub struct HookTools {
    tools_dir: Option<PathBuf>,
}

impl HookTools {
    pub fn new() -> Self {
        HookTools { tools_dir: None }
    }

    /// Look the tools up in one directory instead of `PATH`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        HookTools {
            tools_dir: Some(dir.into()),
        }
    }

    fn run(&self, call: &ToolCall) -> Result<Vec<u8>, ModelError> {
        let tool = call.tool();
        let program = match &self.tools_dir {
            Some(dir) => dir.join(tool),
            None => PathBuf::from(tool),
        };
        let mut cmd = Command::new(&program);
        cmd.args(call.args())
            .stdin(if call.stdin().is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                ModelError::ToolMissing { tool: tool.into() }
            }
            _ => ModelError::ToolFailed {
                tool: tool.into(),
                code: -1,
                message: e.to_string(),
            },
        })?;
        if let Some(input) = call.stdin() {
            // A tool that exits early closes its stdin; its exit code says why.
            let _ = child.stdin.take().expect("piped").write_all(input);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| ModelError::ToolFailed {
                tool: tool.into(),
                code: -1,
                message: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr
            .trim()
            .strip_prefix("ERROR ")
            .unwrap_or(stderr.trim())
            .to_string();
        Err(classify_failure(
            tool,
            out.status.code().unwrap_or(-1),
            message,
        ))
    }

    fn run_json<T: DeserializeOwned>(&self, call: &ToolCall) -> Result<T, ModelError> {
        let out = self.run(call)?;
        serde_json::from_slice(&out).map_err(|e| ModelError::BadOutput {
            tool: call.tool().into(),
            detail: e.to_string(),
        })
    }
}

/// Map a failed tool run to a typed error, matching on stderr as ops does.
fn classify_failure(tool: &str, code: i32, message: String) -> ModelError {
    let lower = message.to_lowercase();
    if tool.starts_with("secret-") {
        // Juju's texts (modern-interfaces.md §6.2); ops maps any "not found".
        if lower.contains("secret owner cannot use --refresh") {
            return ModelError::SecretOwnerCannotRefresh(message);
        }
        if lower.contains("not found") {
            return ModelError::SecretNotFound(message);
        }
    }
    let about_relations = tool.starts_with("relation-") || tool.starts_with("network-");
    if about_relations && lower.contains("relation not found") {
        return ModelError::RelationNotFound(message);
    }
    if lower.contains("not the leader") || lower.contains("cannot write relation settings") {
        return ModelError::NotLeader(message);
    }
    if lower.contains("not running an action") {
        return ModelError::NotAnAction;
    }
    if lower.contains("permission denied") || lower.contains("access denied") {
        return ModelError::AccessDenied(message);
    }
    if code == 2 {
        return ModelError::Usage {
            tool: tool.into(),
            message,
        };
    }
    ModelError::ToolFailed {
        tool: tool.into(),
        code,
        message,
    }
}

/// `secret-get --format=json`'s answer: a flat map of decoded strings.
/// Anything else is reported without quoting the output, which may hold
/// the secret's values.
fn parse_secret_content(out: &[u8]) -> Result<SecretContent, ModelError> {
    let bad = |what: &str| ModelError::BadOutput {
        tool: "secret-get".into(),
        detail: format!("{what} (content not shown)"),
    };
    let text = std::str::from_utf8(out).map_err(|_| bad("not UTF-8"))?;
    let value: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let Value::Object(map) = value else {
        return Err(bad("not a JSON object"));
    };
    let mut content = BTreeMap::new();
    for (key, value) in map {
        let Value::String(value) = value else {
            return Err(bad(&format!("the value of key {key:?} is not a string")));
        };
        content.insert(key, value);
    }
    Ok(SecretContent::new(content))
}

#[derive(serde::Deserialize)]
struct SecretInfoJson {
    #[serde(default)]
    revision: u32,
    #[serde(default)]
    label: String,
    owner: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    rotation: Option<String>,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    rotates: Option<String>,
}

/// `secret-info-get --format=json`'s answer: `{"<id>": {...}}`; ops takes
/// the first key as the ID.
fn parse_secret_info(out: &[u8]) -> Result<SecretInfo, ModelError> {
    let bad = |detail: String| ModelError::BadOutput {
        tool: "secret-info-get".into(),
        detail,
    };
    let map: BTreeMap<String, SecretInfoJson> =
        serde_json::from_slice(out).map_err(|e| bad(e.to_string()))?;
    let (id, raw) = map
        .into_iter()
        .next()
        .ok_or_else(|| bad("no secret in the answer".into()))?;
    let owner = raw
        .owner
        .parse::<SecretOwner>()
        .map_err(|_| bad(format!("unknown owner {:?}", raw.owner)))?;
    Ok(SecretInfo {
        id,
        revision: raw.revision,
        label: raw.label,
        owner,
        description: raw.description.filter(|d| !d.is_empty()),
        rotation: raw.rotation.filter(|r| !r.is_empty()),
        expiry: raw.expiry.filter(|e| !e.is_empty()),
        rotates: raw.rotates.filter(|r| !r.is_empty()),
    })
}

#[derive(serde::Deserialize)]
struct StatusJson {
    status: String,
    #[serde(default)]
    message: String,
}

#[derive(serde::Deserialize)]
struct AppStatusJson {
    #[serde(rename = "application-status")]
    application_status: StatusJson,
}

impl Backend for HookTools {
    fn config_get(&mut self) -> Result<Map<String, Value>, ModelError> {
        self.run_json(&ToolCall::config_get())
    }

    fn is_leader(&mut self) -> Result<bool, ModelError> {
        self.run_json(&ToolCall::is_leader())
    }

    fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<u32>, ModelError> {
        let call = ToolCall::relation_ids(endpoint);
        let ids: Vec<String> = self.run_json(&call)?;
        ids.iter()
            .map(|s| {
                s.rsplit_once(':')
                    .and_then(|(_, n)| n.parse().ok())
                    .ok_or_else(|| ModelError::BadOutput {
                        tool: call.tool().into(),
                        detail: format!("{s:?} is not <endpoint>:<id>"),
                    })
            })
            .collect()
    }

    fn relation_list(&mut self, endpoint: &str, id: u32) -> Result<Vec<String>, ModelError> {
        self.run_json(&ToolCall::relation_list(endpoint, id))
    }

    fn relation_remote_app(&mut self, endpoint: &str, id: u32) -> Result<String, ModelError> {
        self.run_json(&ToolCall::relation_remote_app(endpoint, id))
    }

    fn relation_get(
        &mut self,
        endpoint: &str,
        id: u32,
        owner: &BagOwner,
    ) -> Result<Bag, ModelError> {
        let bag: Option<Bag> = self.run_json(&ToolCall::relation_get(endpoint, id, owner))?;
        Ok(bag.unwrap_or_default())
    }

    fn relation_set(
        &mut self,
        endpoint: &str,
        id: u32,
        scope: Scope,
        data: &Bag,
    ) -> Result<(), ModelError> {
        if data.is_empty() {
            return Ok(());
        }
        self.run(&ToolCall::relation_set(endpoint, id, scope, data))
            .map(drop)
    }

    fn status_get(&mut self, scope: Scope) -> Result<Status, ModelError> {
        let call = ToolCall::status_get(scope);
        let raw = match scope {
            Scope::Unit => self.run_json::<StatusJson>(&call)?,
            Scope::App => self.run_json::<AppStatusJson>(&call)?.application_status,
        };
        let name = raw.status.parse().map_err(|_| ModelError::BadOutput {
            tool: call.tool().into(),
            detail: format!("unknown status {:?}", raw.status),
        })?;
        Ok(Status::new(name, raw.message))
    }

    fn status_set(&mut self, scope: Scope, status: &Status) -> Result<(), ModelError> {
        if !status.name.is_settable() {
            return Err(ModelError::Invalid(format!(
                "invalid status {:?}, expected one of [maintenance blocked waiting active]",
                status.name.as_ref()
            )));
        }
        self.run(&ToolCall::status_set(scope, status)).map(drop)
    }

    fn application_version_set(&mut self, version: &str) -> Result<(), ModelError> {
        self.run(&ToolCall::application_version_set(version))
            .map(drop)
    }

    fn juju_log(&mut self, level: LogLevel, message: &str) -> Result<(), ModelError> {
        self.run(&ToolCall::juju_log(level, message)).map(drop)
    }

    fn action_get(&mut self) -> Result<Map<String, Value>, ModelError> {
        let params: Option<Map<String, Value>> = self.run_json(&ToolCall::action_get())?;
        Ok(params.unwrap_or_default())
    }

    fn action_set(&mut self, results: &BTreeMap<String, String>) -> Result<(), ModelError> {
        if results.is_empty() {
            return Ok(());
        }
        self.run(&ToolCall::action_set(results)).map(drop)
    }

    fn action_log(&mut self, message: &str) -> Result<(), ModelError> {
        self.run(&ToolCall::action_log(message)).map(drop)
    }

    fn action_fail(&mut self, message: &str) -> Result<(), ModelError> {
        self.run(&ToolCall::action_fail(message)).map(drop)
    }

    fn open_port(&mut self, port: &Port) -> Result<(), ModelError> {
        self.run(&ToolCall::open_port(port)).map(drop)
    }

    fn close_port(&mut self, port: &Port) -> Result<(), ModelError> {
        self.run(&ToolCall::close_port(port)).map(drop)
    }

    fn opened_ports(&mut self) -> Result<Vec<Port>, ModelError> {
        let call = ToolCall::opened_ports();
        let ports: Vec<String> = self.run_json(&call)?;
        ports
            .iter()
            .map(|p| {
                p.parse().map_err(|e| ModelError::BadOutput {
                    tool: call.tool().into(),
                    detail: e,
                })
            })
            .collect()
    }

    fn network_get(
        &mut self,
        binding: &str,
        relation: Option<(&str, u32)>,
    ) -> Result<Network, ModelError> {
        let relation_id = relation.map(|(_, id)| id);
        self.run_json(&ToolCall::network_get(binding, relation_id))
    }

    fn secret_get(
        &mut self,
        secret: SecretRef<'_>,
        read: SecretRead,
    ) -> Result<SecretContent, ModelError> {
        let out = self.run(&ToolCall::secret_get(secret, read))?;
        parse_secret_content(&out)
    }

    fn secret_info_get(&mut self, secret: SecretRef<'_>) -> Result<SecretInfo, ModelError> {
        if let SecretRef::IdWithLabel { .. } = secret {
            return Err(secret_info_ref_error());
        }
        let out = self.run(&ToolCall::secret_info_get(secret))?;
        parse_secret_info(&out)
    }

    fn secret_ids(&mut self) -> Result<Vec<String>, ModelError> {
        self.run_json(&ToolCall::secret_ids())
    }
}
