//! Stand-ins for the machine's moving parts: [`CommandRecorder`] (the
//! charm's `Runner`: records every command and answers from a script, never
//! runs anything) and [`FakeServices`] (the `ServiceManager`: remembers
//! which spec runs, in the State, so chained runs see it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use wsgi_app::workload::health::judge;
use wsgi_app::workload::machine::{CommandOutput, CommandSpec, HttpAnswer, Probe, Runner};
use wsgi_app::workload::service::HealthCriteria;
use wsgi_app::workload::service::{
    ServiceChange, ServiceError, ServiceManager, ServiceSpec, ServiceState,
};

use crate::state::ServiceRecord;

/// Which commands a scripted answer applies to.
#[derive(Clone)]
pub enum CommandMatch {
    /// Words the command line starts with. The first word matches the
    /// program as given or its file name, so `"pip install"` matches
    /// `/srv/app/venv/bin/pip install -r ...`.
    Prefix(Vec<String>),
    Predicate(Arc<dyn Fn(&CommandSpec) -> bool + Send + Sync>),
}

impl CommandMatch {
    /// Match commands for which `predicate` holds.
    pub fn when(predicate: impl Fn(&CommandSpec) -> bool + Send + Sync + 'static) -> Self {
        CommandMatch::Predicate(Arc::new(predicate))
    }

    pub fn matches(&self, spec: &CommandSpec) -> bool {
        match self {
            CommandMatch::Predicate(p) => p(spec),
            CommandMatch::Prefix(words) => {
                let Some((first, rest)) = words.split_first() else {
                    return true;
                };
                let file_name = Path::new(&spec.program)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(&spec.program);
                (spec.program == *first || file_name == first)
                    && rest.len() <= spec.args.len()
                    && rest.iter().zip(&spec.args).all(|(w, a)| w == a)
            }
        }
    }
}

impl From<&str> for CommandMatch {
    fn from(prefix: &str) -> Self {
        CommandMatch::Prefix(prefix.split_whitespace().map(str::to_string).collect())
    }
}

impl<F> From<F> for CommandMatch
where
    F: Fn(&CommandSpec) -> bool + Send + Sync + 'static,
{
    fn from(predicate: F) -> Self {
        CommandMatch::Predicate(Arc::new(predicate))
    }
}

impl From<String> for CommandMatch {
    fn from(prefix: String) -> Self {
        CommandMatch::from(prefix.as_str())
    }
}

/// A command's effect on the machine root, and its answer.
pub type CommandEffect = Arc<dyn Fn(&CommandSpec, &Path) -> CommandOutput + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Answer {
    Output(CommandOutput),
    Effect(CommandEffect),
}

#[derive(Clone)]
pub(crate) struct Rule {
    pub matcher: CommandMatch,
    pub answer: Answer,
}

/// A successful run with `stdout` as its output.
pub fn output(stdout: impl Into<Vec<u8>>) -> CommandOutput {
    CommandOutput {
        code: 0,
        stdout: stdout.into(),
        ..CommandOutput::default()
    }
}

/// A failed run: exit `code`, `stderr` as its message.
pub fn failure(code: i32, stderr: impl Into<Vec<u8>>) -> CommandOutput {
    CommandOutput {
        code,
        stderr: stderr.into(),
        ..CommandOutput::default()
    }
}

/// The charm's [`Runner`] in tests: records each command (secret
/// environments redacted) and answers with the newest matching rule, or
/// success with no output.
pub struct CommandRecorder {
    rules: Vec<Rule>,
    programs: BTreeSet<String>,
    root: PathBuf,
    log: Arc<Mutex<Vec<CommandSpec>>>,
}

impl CommandRecorder {
    pub(crate) fn new(
        rules: Vec<Rule>,
        programs: BTreeSet<String>,
        root: PathBuf,
        log: Arc<Mutex<Vec<CommandSpec>>>,
    ) -> Self {
        CommandRecorder {
            rules,
            programs,
            root,
            log,
        }
    }
}

/// The placeholder for environment values of commands marked
/// `env_is_secret`.
pub const REDACTED: &str = "<redacted>";

impl Runner for CommandRecorder {
    fn run(&self, spec: &CommandSpec) -> std::io::Result<CommandOutput> {
        let mut recorded = spec.clone();
        if spec.env_is_secret {
            for (_, value) in &mut recorded.env {
                *value = REDACTED.to_string();
            }
        }
        self.log.lock().expect("recorder lock").push(recorded);
        let rule = self.rules.iter().rev().find(|r| r.matcher.matches(spec));
        Ok(match rule.map(|r| &r.answer) {
            None => CommandOutput::default(),
            Some(Answer::Output(out)) => out.clone(),
            Some(Answer::Effect(effect)) => effect(spec, &self.root),
        })
    }

    fn which(&self, program: &str) -> Option<PathBuf> {
        self.programs
            .contains(program)
            .then(|| PathBuf::from("/usr/bin").join(program))
    }
}

/// A call the charm made on the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
// A test record: matching on the spec matters more than its size.
#[allow(clippy::large_enum_variant)]
pub enum ServiceCall {
    /// A build judged privately before it takes traffic.
    Preflight(ServiceSpec),
    Ensure(ServiceSpec),
    Stop(String),
}

#[derive(Debug, Default)]
pub(crate) struct ServiceBook {
    pub services: BTreeMap<String, ServiceRecord>,
    pub fail_next_start: bool,
    pub calls: Vec<ServiceCall>,
}

/// The charm's [`ServiceManager`] in tests: no process, just a record of
/// which spec would run. A failed start leaves an older master running,
/// as the real managers do.
/// Its pre-flight asks the test's answerer about the candidate build, as
/// if it ran privately.
pub struct FakeServices {
    book: Arc<Mutex<ServiceBook>>,
    answer: HttpAnswerer,
}

impl FakeServices {
    pub(crate) fn new(book: Arc<Mutex<ServiceBook>>, answer: HttpAnswerer) -> Self {
        FakeServices { book, answer }
    }
}

impl ServiceManager for FakeServices {
    fn preflight(
        &self,
        spec: &ServiceSpec,
        criteria: &HealthCriteria,
    ) -> Result<String, ServiceError> {
        {
            let mut book = self.book.lock().expect("service lock");
            book.calls.push(ServiceCall::Preflight(spec.clone()));
            if book.fail_next_start {
                // A build that cannot start fails its pre-flight the same way.
                let why = format!("{} failed to start (scripted by the test)", spec.name);
                return Err(ServiceError::StartFailed(why));
            }
        }
        let path = &criteria.path;
        let answer = (self.answer)(path, Some(spec))
            .map_err(|e| ServiceError::Unhealthy(format!("GET {path}: {e}")))?;
        let report = judge(
            &answer,
            criteria.expected_status,
            &criteria.expected_content,
            Duration::ZERO,
        )
        .map_err(|e| ServiceError::Unhealthy(format!("GET {path}: {e}")))?;
        Ok(format!(
            "GET {path}: HTTP {} before taking traffic",
            report.status
        ))
    }

    fn ensure(&self, spec: &ServiceSpec) -> Result<ServiceChange, ServiceError> {
        let mut book = self.book.lock().expect("service lock");
        book.calls.push(ServiceCall::Ensure(spec.clone()));
        let previous = book.services.get(&spec.name).cloned();
        if let Some(ServiceRecord::Running(running)) = &previous {
            if running.fingerprint == spec.fingerprint {
                return Ok(ServiceChange::Unchanged);
            }
        }
        if std::mem::take(&mut book.fail_next_start) {
            let why = format!("{} failed to start (scripted by the test)", spec.name);
            if !matches!(previous, Some(ServiceRecord::Running(_))) {
                book.services
                    .insert(spec.name.clone(), ServiceRecord::Failed(why.clone()));
            }
            return Err(ServiceError::StartFailed(why));
        }
        book.services
            .insert(spec.name.clone(), ServiceRecord::Running(spec.clone()));
        Ok(match previous {
            Some(ServiceRecord::Running(_)) => ServiceChange::Replaced,
            _ => ServiceChange::Started,
        })
    }

    fn ensure_metrics(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        let mut book = self.book.lock().expect("service lock");
        if let Some(ServiceRecord::Running(running)) = book.services.get_mut(&spec.name) {
            running.metrics = spec.metrics.clone();
        }
        Ok(())
    }

    fn state(&self, spec: &ServiceSpec) -> Result<ServiceState, ServiceError> {
        let book = self.book.lock().expect("service lock");
        Ok(match book.services.get(&spec.name) {
            Some(ServiceRecord::Running(s)) => ServiceState::Running {
                fingerprint: s.fingerprint.clone(),
            },
            Some(ServiceRecord::Failed(why)) => ServiceState::Failed(why.clone()),
            Some(ServiceRecord::Stopped) | None => ServiceState::Stopped,
        })
    }

    fn stop(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        let mut book = self.book.lock().expect("service lock");
        book.calls.push(ServiceCall::Stop(spec.name.clone()));
        book.services
            .insert(spec.name.clone(), ServiceRecord::Stopped);
        Ok(())
    }
}

/// What the app answers to an HTTP GET, given the path and the running spec.
pub type HttpAnswerer =
    Arc<dyn Fn(&str, Option<&ServiceSpec>) -> Result<HttpAnswer, String> + Send + Sync>;

/// The default app: "It works!" while a service runs.
pub fn answer_while_running(
    _path: &str,
    running: Option<&ServiceSpec>,
) -> Result<HttpAnswer, String> {
    match running {
        Some(_) => Ok(HttpAnswer {
            status: 200,
            reason: "OK".into(),
            body: "It works!".into(),
        }),
        None => Err("connection refused".into()),
    }
}

/// The charm's health [`Probe`] in tests: asks the test's answerer about
/// whatever the fake service manager says is running.
pub struct FakeProbe {
    book: Arc<Mutex<ServiceBook>>,
    answer: HttpAnswerer,
}

impl FakeProbe {
    pub(crate) fn new(book: Arc<Mutex<ServiceBook>>, answer: HttpAnswerer) -> Self {
        FakeProbe { book, answer }
    }
}

impl Probe for FakeProbe {
    fn http_get(&self, _addr: &str, path: &str, _timeout: Duration) -> Result<HttpAnswer, String> {
        let running = {
            let book = self.book.lock().expect("service lock");
            book.services.values().find_map(|r| match r {
                ServiceRecord::Running(spec) => Some(spec.clone()),
                _ => None,
            })
        };
        (self.answer)(path, running.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_words_and_program_file_names() {
        let pip = CommandSpec::new("/srv/venv/bin/pip").args(["install", "-r", "req.txt"]);
        assert!(CommandMatch::from("pip install").matches(&pip));
        assert!(CommandMatch::from("/srv/venv/bin/pip").matches(&pip));
        assert!(!CommandMatch::from("pip uninstall").matches(&pip));
        assert!(!CommandMatch::from("pi").matches(&pip));
        assert!(!CommandMatch::from("pip install -r req.txt extra").matches(&pip));
        assert!(CommandMatch::when(|s| s.args.len() == 3).matches(&pip));
    }
}
