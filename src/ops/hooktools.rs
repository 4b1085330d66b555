//! [`Backend`] over Juju's hook tools, run as subprocesses with exactly the
//! argument forms ops uses (shared/reference/juju-hook-tools.md, Appendix A).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::backend::{Backend, Bag, BagOwner, LogLevel, ModelError, Network, Port, Scope, Status};

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

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, ModelError> {
        let program = match &self.tools_dir {
            Some(dir) => dir.join(tool),
            None => PathBuf::from(tool),
        };
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
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
        if let Some(input) = stdin {
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

    fn run_json<T: DeserializeOwned>(&self, tool: &str, args: &[&str]) -> Result<T, ModelError> {
        let out = self.run(tool, args, None)?;
        serde_json::from_slice(&out).map_err(|e| ModelError::BadOutput {
            tool: tool.into(),
            detail: e.to_string(),
        })
    }
}

/// Map a failed tool run to a typed error, matching on stderr as ops does.
fn classify_failure(tool: &str, code: i32, message: String) -> ModelError {
    let lower = message.to_lowercase();
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

fn rel_arg(endpoint: &str, id: u32) -> String {
    format!("{endpoint}:{id}")
}

fn application_flag(scope: Scope) -> &'static str {
    match scope {
        Scope::Unit => "--application=False",
        Scope::App => "--application=True",
    }
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
        self.run_json("config-get", &["--format=json"])
    }

    fn is_leader(&mut self) -> Result<bool, ModelError> {
        self.run_json("is-leader", &["--format=json"])
    }

    fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<u32>, ModelError> {
        let ids: Vec<String> = self.run_json("relation-ids", &[endpoint, "--format=json"])?;
        ids.iter()
            .map(|s| {
                s.rsplit_once(':')
                    .and_then(|(_, n)| n.parse().ok())
                    .ok_or_else(|| ModelError::BadOutput {
                        tool: "relation-ids".into(),
                        detail: format!("{s:?} is not <endpoint>:<id>"),
                    })
            })
            .collect()
    }

    fn relation_list(&mut self, endpoint: &str, id: u32) -> Result<Vec<String>, ModelError> {
        let rel = rel_arg(endpoint, id);
        self.run_json("relation-list", &["--format=json", "-r", &rel])
    }

    fn relation_remote_app(&mut self, endpoint: &str, id: u32) -> Result<String, ModelError> {
        let rel = rel_arg(endpoint, id);
        self.run_json("relation-list", &["--format=json", "--app", "-r", &rel])
    }

    fn relation_get(
        &mut self,
        endpoint: &str,
        id: u32,
        owner: &BagOwner,
    ) -> Result<Bag, ModelError> {
        let rel = rel_arg(endpoint, id);
        let bag: Option<Bag> = match owner {
            BagOwner::Unit(unit) => {
                self.run_json("relation-get", &["--format=json", "-r", &rel, "-", unit])?
            }
            BagOwner::App(app) => self.run_json(
                "relation-get",
                &["--format=json", "-r", &rel, "--app", "-", app],
            )?,
        };
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
        let rel = rel_arg(endpoint, id);
        let mut args = vec!["-r", rel.as_str()];
        if scope == Scope::App {
            args.push("--app");
        }
        args.extend(["--file", "-"]);
        let body = serde_json::to_vec(data).expect("a map of strings serialises");
        self.run("relation-set", &args, Some(&body)).map(drop)
    }

    fn status_get(&mut self, scope: Scope) -> Result<Status, ModelError> {
        let args = ["--include-data", "--format=json", application_flag(scope)];
        let raw = match scope {
            Scope::Unit => self.run_json::<StatusJson>("status-get", &args)?,
            Scope::App => {
                self.run_json::<AppStatusJson>("status-get", &args)?
                    .application_status
            }
        };
        let name = raw.status.parse().map_err(|_| ModelError::BadOutput {
            tool: "status-get".into(),
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
        let args = [
            application_flag(scope),
            status.name.as_ref(),
            "--",
            status.message.as_str(),
        ];
        self.run("status-set", &args, None).map(drop)
    }

    fn application_version_set(&mut self, version: &str) -> Result<(), ModelError> {
        self.run("application-version-set", &["--", version], None)
            .map(drop)
    }

    fn juju_log(&mut self, level: LogLevel, message: &str) -> Result<(), ModelError> {
        self.run(
            "juju-log",
            &["--log-level", level.as_ref(), "--", message],
            None,
        )
        .map(drop)
    }

    fn action_get(&mut self) -> Result<Map<String, Value>, ModelError> {
        let params: Option<Map<String, Value>> = self.run_json("action-get", &["--format=json"])?;
        Ok(params.unwrap_or_default())
    }

    fn action_set(&mut self, results: &BTreeMap<String, String>) -> Result<(), ModelError> {
        if results.is_empty() {
            return Ok(());
        }
        let args: Vec<String> = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("action-set", &args, None).map(drop)
    }

    fn action_log(&mut self, message: &str) -> Result<(), ModelError> {
        self.run("action-log", &["--", message], None).map(drop)
    }

    fn action_fail(&mut self, message: &str) -> Result<(), ModelError> {
        self.run("action-fail", &["--", message], None).map(drop)
    }

    fn open_port(&mut self, port: &Port) -> Result<(), ModelError> {
        self.run("open-port", &[&port.to_string()], None).map(drop)
    }

    fn close_port(&mut self, port: &Port) -> Result<(), ModelError> {
        self.run("close-port", &[&port.to_string()], None).map(drop)
    }

    fn opened_ports(&mut self) -> Result<Vec<Port>, ModelError> {
        let ports: Vec<String> = self.run_json("opened-ports", &["--format=json"])?;
        ports
            .iter()
            .map(|p| {
                p.parse().map_err(|e| ModelError::BadOutput {
                    tool: "opened-ports".into(),
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
        let mut args = vec!["--format=json".to_string()];
        if let Some((endpoint, id)) = relation {
            args.push("-r".into());
            args.push(rel_arg(endpoint, id));
        }
        args.push(binding.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_json("network-get", &args)
    }
}
