//! Reading what gunicorn wrote: the tail of a log, what a master wrote
//! since it started (so a failed start quotes its own error, not an older
//! master's), and the excerpt an operator sees.

use std::path::Path;

use super::ERROR_LINES;
use crate::workload::service::last_lines;

pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The text appended to `path` since `offset`, at most `cap` bytes of it.
pub(super) fn read_since(path: &Path, offset: u64, cap: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = offset.max(len.saturating_sub(cap));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.take(cap).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(super) fn tail_of(path: &Path, cap: u64) -> String {
    read_since(path, 0, cap)
}

/// What a failed master wrote: gunicorn's error log since it started, or,
/// when that is empty (it died before configuring logging), its stderr.
pub(super) fn error_excerpt(error_log: &Path, stderr_log: &Path, offsets: (u64, u64)) -> String {
    let errors = last_lines(&read_since(error_log, offsets.0, 64 * 1024), ERROR_LINES);
    if !errors.is_empty() {
        return errors;
    }
    let stderr = read_since(stderr_log, offsets.1, 64 * 1024);
    let own = format!("supervisor[{}]:", std::process::id());
    let lines: String = stderr
        .lines()
        .filter(|line| !line.contains(&own))
        .map(|line| format!("{line}\n"))
        .collect();
    let excerpt = last_lines(&lines, ERROR_LINES);
    if excerpt.is_empty() {
        "(gunicorn wrote nothing)".into()
    } else {
        excerpt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn excerpt_prefers_new_error_log_lines() {
        let dir = tempfile::tempdir().unwrap();
        let error_log = dir.path().join("error.log");
        let stderr_log = dir.path().join("supervisor.log");
        std::fs::write(&error_log, "old line from the serving master\n").unwrap();
        std::fs::write(&stderr_log, "").unwrap();
        let offsets = (file_len(&error_log), file_len(&stderr_log));
        assert_eq!(
            error_excerpt(&error_log, &stderr_log, offsets),
            "(gunicorn wrote nothing)"
        );
        std::fs::write(
            &stderr_log,
            "/x/venv/bin/python: No module named gunicorn\n",
        )
        .unwrap();
        assert_eq!(
            error_excerpt(&error_log, &stderr_log, offsets),
            "/x/venv/bin/python: No module named gunicorn"
        );
        let mut text = std::fs::read_to_string(&error_log).unwrap();
        text.push_str("Traceback\nRuntimeError: r3 is broken\n");
        std::fs::write(&error_log, text).unwrap();
        assert_eq!(
            error_excerpt(&error_log, &stderr_log, offsets),
            "Traceback\nRuntimeError: r3 is broken"
        );
    }
}
