//! Fast fake hook tools, so that hook timings measure the charm and not
//! the tools it calls.
//!
//! charm-sim's emulated tools are faithful but each call opens the model's
//! SQLite database (about 10 ms a call on the reference machine), which
//! would swamp a dispatch that takes a few milliseconds. So the benchmarks
//! first *record*: a wrapper in front of charm-sim's tools saves every
//! call's arguments, output and exit code while the charms run against the
//! real model. Then they *replay*: one small `/bin/sh` script per tool
//! answers each recorded argument list with the recorded output, appends
//! the tool's name to `$BENCH_TOOL_CALLS` (that is how calls are counted),
//! and fails loudly on a call it never saw. Both charms, ours and the
//! Python ops one, are replayed by the very same scripts.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use harness::sim::tools::TOOL_NAMES;

/// The wrapper that records calls. `$BENCH_RECORD_DIR` receives three files
/// per call; `$BENCH_REAL_TOOLS` is charm-sim's tools directory. Forks are
/// fine here: recording runs are never timed.
const RECORDER: &str = r#"#!/bin/sh
# Records one hook-tool call for the benchmarks, answered by charm-sim.
tool=${0##*/}
rec=$(mktemp "$BENCH_RECORD_DIR/call.XXXXXX") || exit 97
printf '%s\000' "$tool" "$@" > "$rec.argv"
"$BENCH_REAL_TOOLS/$tool" "$@" > "$rec.out" 2> "$rec.err"
code=$?
printf '%s' "$code" > "$rec.code"
cat "$rec.out"
cat "$rec.err" >&2
exit $code
"#;

/// A directory of recording wrappers, one per tool name.
pub struct Recorder {
    pub bin_dir: PathBuf,
    pub calls_dir: PathBuf,
}

impl Recorder {
    pub fn create(dir: &Path) -> std::io::Result<Recorder> {
        let _ = fs::remove_dir_all(dir);
        let bin_dir = dir.join("bin");
        let calls_dir = dir.join("calls");
        fs::create_dir_all(&bin_dir)?;
        fs::create_dir_all(&calls_dir)?;
        let script = bin_dir.join("record-hook-tool");
        fs::write(&script, RECORDER)?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        for tool in TOOL_NAMES {
            symlink("record-hook-tool", bin_dir.join(tool))?;
        }
        Ok(Recorder { bin_dir, calls_dir })
    }

    /// Every call recorded so far.
    pub fn calls(&self) -> std::io::Result<Vec<RecordedCall>> {
        let mut calls = Vec::new();
        for entry in fs::read_dir(&self.calls_dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("argv") {
                continue;
            }
            // `call.XXXXXX.argv` → `call.XXXXXX` + `.out`, `.code`, `.err`
            // (with_extension would eat the mktemp suffix after the dot).
            let stem = path.with_extension("");
            let sibling = |ext: &str| {
                let mut name = stem.clone().into_os_string();
                name.push(".");
                name.push(ext);
                PathBuf::from(name)
            };
            let argv = fs::read(&path)?;
            let mut parts: Vec<String> = argv
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            // printf '%s\0' ends every part with NUL, so the last split is empty.
            if parts.last().is_some_and(String::is_empty) {
                parts.pop();
            }
            if parts.is_empty() {
                continue;
            }
            let tool = parts.remove(0);
            let output = fs::read(sibling("out")).unwrap_or_default();
            let code = fs::read_to_string(sibling("code"))
                .ok()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(1);
            let stderr = fs::read(sibling("err")).unwrap_or_default();
            calls.push(RecordedCall {
                tool,
                args: parts,
                output,
                code,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        Ok(calls)
    }

    /// The recorded calls, refused if any failed: a nothing-to-do hook
    /// should make none, and replaying a failure would time an error path.
    pub fn successful_calls(&self) -> Result<Vec<RecordedCall>, String> {
        let calls = self.calls().map_err(|e| e.to_string())?;
        let failed: Vec<String> = calls
            .iter()
            .filter(|c| c.code != 0)
            .map(|c| {
                format!(
                    "{} {} exited {}: {}",
                    c.tool,
                    c.args.join(" "),
                    c.code,
                    c.stderr.trim()
                )
            })
            .collect();
        if failed.is_empty() {
            Ok(calls)
        } else {
            Err(format!(
                "hook-tool calls failed while recording:\n{}",
                failed.join("\n")
            ))
        }
    }
}

/// One hook-tool call as charm-sim answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub tool: String,
    pub args: Vec<String>,
    pub output: Vec<u8>,
    pub code: i32,
    /// What the tool said on stderr (replayed only as a diagnosis).
    pub stderr: String,
}

/// A directory of replaying tool scripts.
pub struct FakeTools {
    pub bin_dir: PathBuf,
}

/// Quote `text` for /bin/sh: single quotes, with `'` written as `'\''`.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl FakeTools {
    /// Write one replay script per tool name answering `calls` (for an
    /// argument list recorded twice, the later answer wins).
    pub fn create(dir: &Path, calls: &[RecordedCall]) -> std::io::Result<FakeTools> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir)?;
        let mut by_tool: BTreeMap<&str, BTreeMap<String, &RecordedCall>> = BTreeMap::new();
        for call in calls {
            by_tool
                .entry(call.tool.as_str())
                .or_default()
                .insert(call.args.join(" "), call);
        }
        for tool in TOOL_NAMES {
            let mut script = format!(
                "#!/bin/sh\n# Fake `{tool}` for the wsgi-app benchmarks: answers recorded from charm-sim.\n\
                 echo {tool} >> \"$BENCH_TOOL_CALLS\"\ncase \"$*\" in\n"
            );
            for (key, call) in by_tool.get(tool).into_iter().flatten() {
                script.push_str(&format!(
                    "{}) printf '%s' {}; exit {} ;;\n",
                    sh_quote(key),
                    sh_quote(&String::from_utf8_lossy(&call.output)),
                    call.code
                ));
            }
            script.push_str(&format!(
                "esac\necho \"bench fake {tool}: no recorded answer for: $*\" >&2\nexit 98\n"
            ));
            let path = dir.join(tool);
            fs::write(&path, script)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
        Ok(FakeTools {
            bin_dir: dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn replayed_tools_answer_what_was_recorded_and_count_calls() {
        let dir = tempfile::tempdir().unwrap();
        let calls = vec![RecordedCall {
            tool: "config-get".into(),
            args: vec!["--format=json".into()],
            output: br#"{"a":"it's"}"#.to_vec(),
            code: 0,
            stderr: String::new(),
        }];
        let fake = FakeTools::create(&dir.path().join("fake"), &calls).unwrap();
        let counter = dir.path().join("calls");
        let run = |args: &[&str]| {
            Command::new(fake.bin_dir.join("config-get"))
                .args(args)
                .env("BENCH_TOOL_CALLS", &counter)
                .output()
                .unwrap()
        };
        let out = run(&["--format=json"]);
        assert!(out.status.success());
        assert_eq!(out.stdout, br#"{"a":"it's"}"#);
        let out = run(&["other"]);
        assert_eq!(out.status.code(), Some(98));
        assert_eq!(
            fs::read_to_string(&counter).unwrap(),
            "config-get\nconfig-get\n"
        );
    }

    #[test]
    fn recorded_calls_come_back_with_their_answers() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("is-leader"), "#!/bin/sh\necho true\n").unwrap();
        fs::set_permissions(real.join("is-leader"), fs::Permissions::from_mode(0o755)).unwrap();
        let recorder = Recorder::create(&dir.path().join("rec")).unwrap();
        let out = Command::new(recorder.bin_dir.join("is-leader"))
            .arg("--format=json")
            .env("BENCH_RECORD_DIR", &recorder.calls_dir)
            .env("BENCH_REAL_TOOLS", &real)
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"true\n");
        let calls = recorder.calls().unwrap();
        assert_eq!(
            calls,
            vec![RecordedCall {
                tool: "is-leader".into(),
                args: vec!["--format=json".into()],
                output: b"true\n".to_vec(),
                code: 0,
                stderr: String::new(),
            }]
        );
    }
}
