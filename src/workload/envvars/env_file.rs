//! The environment file//!
//! [`render_env_file`] writes the variables in the format of systemd's
//! `EnvironmentFile=` (the parser in systemd's `src/basic/env-file.c`), one
//! `NAME="value"` line each, and [`parse_env_file`] reads that format by the
//! same rules, for the direct supervisor used on machines without systemd.
//! The two must agree byte for byte, so the rules are summarised here:
//!
//! * Blank space (space, tab, CR, LF) before a name is skipped; a line whose
//!   first other character is `#` or `;` is a comment, up to the next CR or
//!   LF. Comments never continue onto the next line.
//! * The name runs up to `=`; trailing blanks are dropped. A line with no `=`
//!   is ignored. Names that are not `[A-Za-z_][A-Za-z0-9_]*` are dropped when
//!   the unit starts.
//! * Blanks after `=` are skipped. Then, repeatedly: `'...'` is literal;
//!   `"..."` is literal except that `\` before `"`, `\`, `` ` `` or `$` gives
//!   that character, `\` before LF is removed, and any other `\` is kept;
//!   blanks between quoted parts are skipped. Any other character starts an
//!   unquoted part that runs to the end of the line (quotes in it are
//!   literal): there `\` takes the next character literally (`\` before CR
//!   or LF is removed), and trailing unescaped blanks are dropped.
//! * CR and LF both end a line; the text ends at the first NUL.
//! * A name given twice keeps its first place and its last value.
//! * A key or value that is not valid UTF-8 fails the whole file.
//! * `$` is never expanded in the file.
//!
//! Rendering uses double quotes only and escapes exactly `"`, `\`, `` ` ``
//! and `$`: systemd and `/bin/sh` un-escape those four the same way, so the
//! file also reads back the same when an operator sources it in a shell.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{is_refused_control, is_valid_name, MAX_VALUE_BYTES};

/// The first lines of every environment file the charm writes.
pub const ENV_FILE_HEADER: &str = "\
# Managed by the wsgi-app charm. Do not edit: the charm rewrites this file
# whenever the environment_variables option or a relation changes.
";

/// Mode of the environment file: it may hold database passwords, so only
/// root (owner) and the application's group may read it.
pub const ENV_FILE_MODE: u32 = 0o640;

/// Why an environment file could not be written or read. Variables are
/// named, values never appear.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("cannot write environment variable {name:?}: not a valid name (letters, digits and _, not starting with a digit)")]
    InvalidName { name: String },
    #[error("cannot write environment variable {name}: it is given twice")]
    DuplicateName { name: String },
    #[error("cannot write environment variable {name}: its value contains a NUL character")]
    ValueContainsNul { name: String },
    #[error("cannot write environment variable {name}: its value contains the control character U+{code:04X}, which systemd refuses (only tab and newline are allowed)")]
    ValueContainsControlCharacter { name: String, code: u32 },
    #[error("cannot write environment variable {name}: its value is {bytes} bytes long; the limit is {MAX_VALUE_BYTES} bytes")]
    ValueTooLong { name: String, bytes: usize },
    #[error("environment file, line {line}: not valid UTF-8 (systemd refuses the whole file)")]
    InvalidUtf8 { line: usize },
    #[error("environment file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EnvFileError + '_ {
    move |source| EnvFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Render `vars` as an environment file (see the module documentation),
/// refusing what systemd could not read back exactly.
pub fn render_env_file(vars: &[(String, String)]) -> Result<String, EnvFileError> {
    let mut text = String::from(ENV_FILE_HEADER);
    let mut seen = std::collections::HashSet::new();
    for (name, value) in vars {
        if !is_valid_name(name) {
            return Err(EnvFileError::InvalidName { name: name.clone() });
        }
        if !seen.insert(name.as_str()) {
            return Err(EnvFileError::DuplicateName { name: name.clone() });
        }
        if value.contains('\0') {
            return Err(EnvFileError::ValueContainsNul { name: name.clone() });
        }
        if let Some(c) = value.chars().find(|&c| is_refused_control(c)) {
            return Err(EnvFileError::ValueContainsControlCharacter {
                name: name.clone(),
                code: u32::from(c),
            });
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(EnvFileError::ValueTooLong {
                name: name.clone(),
                bytes: value.len(),
            });
        }
        text.push_str(name);
        text.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | '`' | '$') {
                text.push('\\');
            }
            text.push(c);
        }
        text.push_str("\"\n");
    }
    Ok(text)
}

/// Read an environment file's text the way systemd's `EnvironmentFile=`
/// does, returning the variables in order. Assignments systemd would drop
/// (invalid names) are dropped; a name given twice keeps its first place and
/// its last value.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    parse_env_file_bytes(text.as_bytes())
}

/// [`parse_env_file`] for a file on disk.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    parse_env_file_bytes(&bytes)
}

/// Where systemd's reader is within the file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EnvFileState {
    BeforeName,
    Name,
    Comment,
    /// After `=` or after a closing quote: blanks are skipped.
    BeforeValuePart,
    Unquoted,
    UnquotedAfterBackslash,
    SingleQuoted,
    DoubleQuoted,
    DoubleQuotedAfterBackslash,
}

/// Builds one assignment while the reader walks the bytes. All the syntax is
/// ASCII, so walking bytes splits UTF-8 sequences exactly as systemd does.
#[derive(Default)]
struct PendingAssignment {
    name: Vec<u8>,
    value: Vec<u8>,
    /// Where a run of unescaped trailing blanks in an unquoted part began;
    /// systemd drops such a run at the end of the line.
    trailing_blanks_from: Option<usize>,
}

fn is_line_end(byte: u8) -> bool {
    byte == b'\n' || byte == b'\r'
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn parse_env_file_bytes(bytes: &[u8]) -> Result<Vec<(String, String)>, EnvFileError> {
    use EnvFileState::*;

    // systemd reads the file as a C string: a NUL ends it.
    let bytes = match bytes.iter().position(|&b| b == 0) {
        Some(nul) => &bytes[..nul],
        None => bytes,
    };

    let mut vars: Vec<(String, String)> = Vec::new();
    let mut state = BeforeName;
    let mut pending = PendingAssignment::default();
    let mut line = 1;

    let mut finish = |pending: &mut PendingAssignment,
                      trim_trailing_blanks: bool,
                      line: usize|
     -> Result<(), EnvFileError> {
        let mut taken = std::mem::take(pending);
        if trim_trailing_blanks {
            if let Some(from) = taken.trailing_blanks_from {
                taken.value.truncate(from);
            }
        }
        while taken.name.last().is_some_and(|&b| is_blank(b)) {
            taken.name.pop();
        }
        let name = String::from_utf8(taken.name).map_err(|_| EnvFileError::InvalidUtf8 { line })?;
        let value =
            String::from_utf8(taken.value).map_err(|_| EnvFileError::InvalidUtf8 { line })?;
        // systemd keeps going past an invalid name and drops it when the
        // unit starts.
        if !is_valid_name(&name) {
            return Ok(());
        }
        match vars.iter_mut().find(|(existing, _)| *existing == name) {
            Some(slot) => slot.1 = value,
            None => vars.push((name, value)),
        }
        Ok(())
    };

    for &byte in bytes {
        match state {
            BeforeName => {
                if byte == b'#' || byte == b';' {
                    state = Comment;
                } else if !(is_blank(byte) || is_line_end(byte)) {
                    pending.name.push(byte);
                    state = Name;
                }
            }
            Comment => {
                if is_line_end(byte) {
                    state = BeforeName;
                }
            }
            Name => {
                if is_line_end(byte) {
                    // A line without '=' assigns nothing.
                    pending = PendingAssignment::default();
                    state = BeforeName;
                } else if byte == b'=' {
                    state = BeforeValuePart;
                } else {
                    pending.name.push(byte);
                }
            }
            BeforeValuePart => {
                if is_line_end(byte) {
                    finish(&mut pending, false, line)?;
                    state = BeforeName;
                } else if byte == b'\'' {
                    state = SingleQuoted;
                } else if byte == b'"' {
                    state = DoubleQuoted;
                } else if byte == b'\\' {
                    state = UnquotedAfterBackslash;
                } else if !is_blank(byte) {
                    pending.value.push(byte);
                    state = Unquoted;
                }
            }
            Unquoted => {
                if is_line_end(byte) {
                    finish(&mut pending, true, line)?;
                    state = BeforeName;
                } else if byte == b'\\' {
                    pending.trailing_blanks_from = None;
                    state = UnquotedAfterBackslash;
                } else {
                    if !is_blank(byte) {
                        pending.trailing_blanks_from = None;
                    } else if pending.trailing_blanks_from.is_none() {
                        pending.trailing_blanks_from = Some(pending.value.len());
                    }
                    pending.value.push(byte);
                }
            }
            UnquotedAfterBackslash => {
                // A backslash before a line end joins the lines.
                if !is_line_end(byte) {
                    pending.value.push(byte);
                }
                state = Unquoted;
            }
            SingleQuoted => {
                if byte == b'\'' {
                    state = BeforeValuePart;
                } else {
                    pending.value.push(byte);
                }
            }
            DoubleQuoted => {
                if byte == b'"' {
                    state = BeforeValuePart;
                } else if byte == b'\\' {
                    state = DoubleQuotedAfterBackslash;
                } else {
                    pending.value.push(byte);
                }
            }
            DoubleQuotedAfterBackslash => {
                if matches!(byte, b'"' | b'\\' | b'`' | b'$') {
                    pending.value.push(byte);
                } else if byte != b'\n' {
                    // Only LF is a continuation here; CR keeps its backslash.
                    pending.value.extend_from_slice(&[b'\\', byte]);
                }
                state = DoubleQuoted;
            }
        }
        if is_line_end(byte) {
            line += 1;
        }
    }

    // An assignment cut off by the end of the file still counts, even inside
    // an unclosed quote; a name without '=' does not.
    match state {
        BeforeName | Name | Comment => {}
        Unquoted => finish(&mut pending, true, line)?,
        _ => finish(&mut pending, false, line)?,
    }
    Ok(vars)
}

/// Write the environment file at `path` atomically (a temporary file in the
/// same directory, flushed to disk, then renamed over), mode 0640, owned by
/// `owner_uid`:`group_gid`. Returns whether the content changed, which is
/// when the application must restart to see it. When only the mode or owner
/// was wrong they are fixed in place and `false` is returned.
pub fn write_env_file(
    path: &Path,
    vars: &[(String, String)],
    owner_uid: u32,
    group_gid: u32,
) -> Result<bool, EnvFileError> {
    let content = render_env_file(vars)?;
    write_group_readable(path, content.as_bytes(), owner_uid, group_gid)
}

/// Write `content` to `path` atomically, mode 0640 with the given owner and
/// group (the app's group reads it, nobody else), unless it already holds
/// exactly that. Returns whether it changed. Used for the environment file
/// and for files that are as private as it is (a database's CA, named in a
/// URL of that file).
pub fn write_group_readable(
    path: &Path,
    content: &[u8],
    owner_uid: u32,
    group_gid: u32,
) -> Result<bool, EnvFileError> {
    let dir = path.parent().unwrap_or(Path::new("."));

    match std::fs::read(path) {
        Ok(existing) if existing == content => {
            fix_mode_and_owner(path, owner_uid, group_gid)?;
            return Ok(false);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path)(e)),
    }

    let mut temp = tempfile::Builder::new()
        .prefix(".env.")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    // The temporary file is created 0600, so the secrets are never readable
    // by others, even for a moment; it gets its final mode before the rename.
    let file = temp.as_file_mut();
    std::os::unix::fs::fchown(&*file, Some(owner_uid), Some(group_gid)).map_err(io_error(path))?;
    file.set_permissions(std::fs::Permissions::from_mode(ENV_FILE_MODE))
        .map_err(io_error(path))?;
    file.write_all(content).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    temp.persist(path).map_err(|e| io_error(path)(e.error))?;
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(true)
}

/// Remove a file [`write_group_readable`] wrote; a missing file is fine.
/// Returns whether there was one.
pub fn remove_file(path: &Path) -> Result<bool, EnvFileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn fix_mode_and_owner(path: &Path, owner_uid: u32, group_gid: u32) -> Result<(), EnvFileError> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::metadata(path).map_err(io_error(path))?;
    if metadata.uid() != owner_uid || metadata.gid() != group_gid {
        std::os::unix::fs::chown(path, Some(owner_uid), Some(group_gid)).map_err(io_error(path))?;
    }
    if metadata.mode() & 0o7777 != ENV_FILE_MODE {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(ENV_FILE_MODE))
            .map_err(io_error(path))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "env_file_tests.rs"]
mod tests;
