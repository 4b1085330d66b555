//! The application's environment: the `environment_variables` config option,
//! and the environment file that both service managers read.
//!
//! # The `environment_variables` option
//!
//! The option holds assignments written the way a POSIX shell reads them,
//! minus every kind of expansion:
//!
//! ```text
//! input       = blank* ( item ( blank+ item )* )? blank*
//! item        = assignment | comment
//! assignment  = NAME "=" value
//! comment     = "#" <anything up to the end of the line>   (only where an item may start)
//! NAME        = [A-Za-z_][A-Za-z0-9_]*
//! value       = ( plain | escaped | single | double )*      (the parts are concatenated)
//! plain       = any character but blank, quote, "\" and the refused ones below
//! escaped     = "\" <any character>        the character itself; "\" + newline is removed
//! single      = "'" <anything but '> "'"   taken literally, newlines included
//! double      = '"' ( <character> | "\" <character> )* '"'
//!               inside, "\" before $ ` " \ gives that character, "\" + newline is
//!               removed, and any other "\" stands for itself
//! blank       = space | tab | newline | "\" + newline
//! ```
//!
//! `A=1 B='two words' C="say \"hi\"" D=a"b c"'d'` sets four variables, in that
//! order. Nothing is ever expanded. So that nobody reads an assignment as
//! expanding when it does not, the characters a shell would expand are
//! refused unless quoted: `$` and `` ` `` (also inside double quotes, where a
//! shell still expands them) and `~`. The shell's operators `; & | < > ( )`
//! are refused unquoted too, since a shell would end the assignment there.
//! Write them inside single quotes or after a backslash. The result is that
//! every input this parser accepts means exactly the same to `/bin/sh`; the
//! tests check that against a real shell.
//!
//! Also refused, with the 1-based character position: names that are not
//! valid, a name set twice, the names the relations own (`DATABASE_URL`,
//! `MONGO_URL`, `MANAGER_SERVICE_URL`), NUL, control characters other than
//! tab and newline (systemd before v248 drops such variables), and values
//! longer than [`MAX_VALUE_BYTES`].
//!
//! # The environment file
//!
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

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The longest value accepted, in bytes of UTF-8. The kernel refuses any
/// single environment string over 128 KiB at `execve`; half of that leaves
/// room for the name and keeps the whole environment reasonable.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Variables the charm sets from relations, with the endpoint that sets each.
pub const RELATION_VARIABLES: [(&str, &str); 3] = [
    ("DATABASE_URL", "pgsql"),
    ("MONGO_URL", "mongodb"),
    ("MANAGER_SERVICE_URL", "manager-service"),
];

/// The first lines of every environment file the charm writes.
pub const ENV_FILE_HEADER: &str = "\
# Managed by the wsgi-app charm. Do not edit: the charm rewrites this file
# whenever the environment_variables option or a relation changes.
";

/// Mode of the environment file: it may hold database passwords, so only
/// root (owner) and the application's group may read it.
pub const ENV_FILE_MODE: u32 = 0o640;

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

// ---------------------------------------------------------------------------
// The config option
// ---------------------------------------------------------------------------

/// Why the `environment_variables` option could not be read. Positions are
/// 1-based and count characters (not bytes). Messages name variables but
/// never quote a value, since values are often secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentVariablesError {
    #[error("environment_variables: expected NAME=value at character {position}, {}", describe_unexpected(.got, .after))]
    ExpectedAssignment {
        position: usize,
        /// The offending word, shown only when it cannot be part of a value
        /// (it is the first word); otherwise `None`.
        got: Option<String>,
        /// The variable whose value the word follows, if any.
        after: Option<String>,
    },
    #[error(
        "environment_variables: = at character {position} has no name before it; write NAME=value"
    )]
    MissingName { position: usize },
    #[error("environment_variables: {name:?} at character {position} is not a valid variable name; use letters, digits and _, not starting with a digit")]
    InvalidName { position: usize, name: String },
    #[error("environment_variables: unterminated single quote starting at character {position}; close it with '")]
    UnterminatedSingleQuote { position: usize },
    #[error("environment_variables: unterminated double quote starting at character {position}; close it with \"")]
    UnterminatedDoubleQuote { position: usize },
    #[error("environment_variables: the backslash at character {position} ends the input and escapes nothing; write \\\\ for a literal backslash")]
    TrailingBackslash { position: usize },
    #[error("environment_variables: {character} at character {position} in the value of {name} would be expanded by a shell, but values are never expanded; for a literal {character}, put it in single quotes ('{character}') or escape it (\\{character})")]
    WouldExpand {
        position: usize,
        character: char,
        name: String,
    },
    #[error("environment_variables: unquoted {character} at character {position} in the value of {name} would end the assignment in a shell; put it in single quotes ('{character}') or escape it (\\{character})")]
    ShellOperator {
        position: usize,
        character: char,
        name: String,
    },
    #[error("environment_variables: control character U+{code:04X} at character {position}; only tab and newline are allowed (systemd refuses the others){}", if *.code == 0x0d { " - Windows line endings?" } else { "" })]
    ControlCharacter { position: usize, code: u32 },
    #[error("environment_variables: NUL character at character {position}; environment values cannot contain NUL")]
    Nul { position: usize },
    #[error(
        "environment_variables: {name} is set by the {relation} relation and cannot be set here"
    )]
    Reserved {
        name: String,
        relation: &'static str,
    },
    #[error(
        "environment_variables: {name} is set twice, at characters {first} and {second}; keep one"
    )]
    Duplicate {
        name: String,
        first: usize,
        second: usize,
    },
    #[error("environment_variables: the value of {name} (set at character {position}) is {bytes} bytes long; the limit is {MAX_VALUE_BYTES} bytes (64 KiB)")]
    ValueTooLong {
        name: String,
        position: usize,
        bytes: usize,
    },
}

fn describe_unexpected(got: &Option<String>, after: &Option<String>) -> String {
    match (got, after) {
        (Some(word), _) => format!("got {word:?}"),
        (None, Some(name)) => format!(
            "after the value of {name}; a value with spaces must be quoted, e.g. {name}='two words'"
        ),
        (None, None) => "got something else".to_string(),
    }
}

/// The longest stretch of an offending word quoted back in an error.
const MAX_QUOTED_WORD_CHARS: usize = 32;

/// A cursor over the option's characters. Positions in errors are `index + 1`.
struct Scanner {
    chars: Vec<char>,
    index: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.index).copied()
    }

    fn peek_next(&self) -> Option<char> {
        self.chars.get(self.index + 1).copied()
    }

    fn position(&self) -> usize {
        self.index + 1
    }

    fn at_line_continuation(&self) -> bool {
        self.peek() == Some('\\') && self.peek_next() == Some('\n')
    }

    /// Skip blanks between items; a backslash-newline counts as nothing, as
    /// in the shell.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n') => self.index += 1,
                Some('\\') if self.peek_next() == Some('\n') => self.index += 2,
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                return;
            }
            self.index += 1;
        }
    }

    /// The characters from here to the first `=` or blank, with line
    /// continuations removed; the caller decides whether they form a name.
    fn scan_word_head(&mut self) -> String {
        let mut head = String::new();
        while let Some(c) = self.peek() {
            if self.at_line_continuation() {
                self.index += 2;
                continue;
            }
            if matches!(c, '=' | ' ' | '\t' | '\n') {
                break;
            }
            head.push(c);
            self.index += 1;
        }
        head
    }

    /// The value after `NAME=`, up to the first unquoted blank.
    fn scan_value(&mut self, name: &str) -> Result<String, EnvironmentVariablesError> {
        let mut value = String::new();
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' => break,
                '\\' => match self.peek_next() {
                    None => {
                        return Err(EnvironmentVariablesError::TrailingBackslash {
                            position: self.position(),
                        })
                    }
                    Some('\n') => self.index += 2,
                    Some(escaped) => {
                        value.push(escaped);
                        self.index += 2;
                    }
                },
                '\'' => self.scan_single_quoted(&mut value)?,
                '"' => self.scan_double_quoted(&mut value, name)?,
                '$' | '`' | '~' => {
                    return Err(EnvironmentVariablesError::WouldExpand {
                        position: self.position(),
                        character: c,
                        name: name.to_string(),
                    })
                }
                ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                    return Err(EnvironmentVariablesError::ShellOperator {
                        position: self.position(),
                        character: c,
                        name: name.to_string(),
                    })
                }
                plain => {
                    value.push(plain);
                    self.index += 1;
                }
            }
        }
        Ok(value)
    }

    fn scan_single_quoted(&mut self, value: &mut String) -> Result<(), EnvironmentVariablesError> {
        let opening = self.position();
        self.index += 1;
        loop {
            match self.peek() {
                None => {
                    return Err(EnvironmentVariablesError::UnterminatedSingleQuote {
                        position: opening,
                    })
                }
                Some('\'') => {
                    self.index += 1;
                    return Ok(());
                }
                Some(c) => {
                    value.push(c);
                    self.index += 1;
                }
            }
        }
    }

    fn scan_double_quoted(
        &mut self,
        value: &mut String,
        name: &str,
    ) -> Result<(), EnvironmentVariablesError> {
        let opening = self.position();
        let unterminated = EnvironmentVariablesError::UnterminatedDoubleQuote { position: opening };
        self.index += 1;
        loop {
            match self.peek() {
                None => return Err(unterminated),
                Some('"') => {
                    self.index += 1;
                    return Ok(());
                }
                Some('\\') => match self.peek_next() {
                    None => return Err(unterminated),
                    Some('\n') => self.index += 2,
                    Some(special @ ('$' | '`' | '"' | '\\')) => {
                        value.push(special);
                        self.index += 2;
                    }
                    // POSIX: before anything else the backslash is itself,
                    // and the next character is read normally.
                    Some(_) => {
                        value.push('\\');
                        self.index += 1;
                    }
                },
                // A shell expands these even inside double quotes.
                Some(c @ ('$' | '`')) => {
                    return Err(EnvironmentVariablesError::WouldExpand {
                        position: self.position(),
                        character: c,
                        name: name.to_string(),
                    })
                }
                Some(c) => {
                    value.push(c);
                    self.index += 1;
                }
            }
        }
    }
}

/// Parse the `environment_variables` option into `(name, value)` pairs, in
/// the order written. See the module documentation for the grammar.
pub fn parse_environment_variables(
    input: &str,
) -> Result<Vec<(String, String)>, EnvironmentVariablesError> {
    // Characters no value may hold are refused wherever they are, before
    // anything else, so the error points at them and not at a side effect.
    for (index, c) in input.chars().enumerate() {
        if c == '\0' {
            return Err(EnvironmentVariablesError::Nul {
                position: index + 1,
            });
        }
        if is_refused_control(c) {
            return Err(EnvironmentVariablesError::ControlCharacter {
                position: index + 1,
                code: u32::from(c),
            });
        }
    }

    let mut scanner = Scanner {
        chars: input.chars().collect(),
        index: 0,
    };
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut first_seen_at: HashMap<String, usize> = HashMap::new();
    let mut previous_name: Option<String> = None;

    loop {
        scanner.skip_blanks();
        let Some(c) = scanner.peek() else { break };
        if c == '#' {
            scanner.skip_comment();
            continue;
        }

        let start = scanner.position();
        let head = scanner.scan_word_head();
        if scanner.peek() == Some('=') && head.is_empty() {
            return Err(EnvironmentVariablesError::MissingName {
                position: scanner.position(),
            });
        }
        if scanner.peek() != Some('=') {
            // Not an assignment. When a word follows a value it is most
            // likely the rest of an unquoted value with a space in it; it may
            // be a secret, so it is not quoted back.
            let got = previous_name
                .is_none()
                .then(|| head.chars().take(MAX_QUOTED_WORD_CHARS).collect());
            return Err(EnvironmentVariablesError::ExpectedAssignment {
                position: start,
                got,
                after: previous_name,
            });
        }
        if !is_valid_name(&head) {
            return Err(EnvironmentVariablesError::InvalidName {
                position: start,
                name: head,
            });
        }
        let name = head;
        scanner.index += 1; // the '='
        let value = scanner.scan_value(&name)?;

        if let Some(relation) = relation_owning(&name) {
            return Err(EnvironmentVariablesError::Reserved { name, relation });
        }
        if let Some(&first) = first_seen_at.get(&name) {
            return Err(EnvironmentVariablesError::Duplicate {
                name,
                first,
                second: start,
            });
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(EnvironmentVariablesError::ValueTooLong {
                name,
                position: start,
                bytes: value.len(),
            });
        }
        first_seen_at.insert(name.clone(), start);
        previous_name = Some(name.clone());
        vars.push((name, value));
    }
    Ok(vars)
}

/// Write `vars` as an `environment_variables` option value that
/// [`parse_environment_variables`] reads back as `vars` (for documentation,
/// messages and tests). Values are single-quoted unless made only of
/// characters that need no quoting. Values with NUL or control characters
/// other than tab and newline cannot be read back; they are written anyway.
pub fn quote_for_config(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(name, value)| format!("{name}={}", crate::workload::text::shell_quote(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// The environment file
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Writing the file
// ---------------------------------------------------------------------------

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
    let dir = path.parent().unwrap_or(Path::new("."));

    match std::fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => {
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
    file.write_all(content.as_bytes()).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    temp.persist(path).map_err(|e| io_error(path)(e.error))?;
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(true)
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
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn parse_ok(input: &str) -> Vec<(String, String)> {
        parse_environment_variables(input)
            .unwrap_or_else(|e| panic!("{input:?} should parse, got: {e}"))
    }

    fn parse_err(input: &str) -> EnvironmentVariablesError {
        match parse_environment_variables(input) {
            Ok(vars) => panic!("{input:?} should be refused, parsed as {vars:?}"),
            Err(e) => e,
        }
    }

    // --- the config option: what is accepted -------------------------------

    #[test]
    fn empty_and_blank_inputs_set_nothing() {
        assert_eq!(parse_ok(""), vec![]);
        assert_eq!(parse_ok(" \t\n \\\n "), vec![]);
    }

    #[test]
    fn assignments_are_separated_by_any_blank_and_keep_their_order() {
        assert_eq!(
            parse_ok("Z=1 A=2\tM=3\n\n  B=4\n"),
            pairs(&[("Z", "1"), ("A", "2"), ("M", "3"), ("B", "4")])
        );
    }

    #[test]
    fn unquoted_values_take_the_character_after_a_backslash_literally() {
        assert_eq!(
            parse_ok(r#"A=two\ words B=\"q\" C=\$HOME D=back\\slash E=\'"#),
            pairs(&[
                ("A", "two words"),
                ("B", "\"q\""),
                ("C", "$HOME"),
                ("D", "back\\slash"),
                ("E", "'"),
            ])
        );
    }

    #[test]
    fn backslash_newline_is_a_line_continuation() {
        assert_eq!(parse_ok("A=con\\\ntinued"), pairs(&[("A", "continued")]));
        assert_eq!(parse_ok("A=1 \\\nB=2"), pairs(&[("A", "1"), ("B", "2")]));
        // Inside a name, as in the shell.
        assert_eq!(parse_ok("LONG\\\n_NAME=1"), pairs(&[("LONG_NAME", "1")]));
        // Inside double quotes too; inside single quotes it is literal.
        assert_eq!(parse_ok("A=\"x\\\ny\""), pairs(&[("A", "xy")]));
        assert_eq!(parse_ok("A='x\\\ny'"), pairs(&[("A", "x\\\ny")]));
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            parse_ok("A='$HOME `id` \\n \" ~ ; | two\nlines'"),
            pairs(&[("A", "$HOME `id` \\n \" ~ ; | two\nlines")])
        );
        assert_eq!(parse_ok("A=''"), pairs(&[("A", "")]));
    }

    #[test]
    fn double_quotes_unescape_only_what_posix_sh_does() {
        assert_eq!(
            parse_ok(r#"A="\" \\ \$ \` \n \a 'x' ~ ; #""#),
            pairs(&[("A", r#"" \ $ ` \n \a 'x' ~ ; #"#)])
        );
        // A backslash before an ordinary character stays, and the character
        // after it is read normally: here the closing quote.
        assert_eq!(parse_ok(r#"A="x\y""#), pairs(&[("A", r"x\y")]));
        assert_eq!(parse_ok("A=\"two\nlines\""), pairs(&[("A", "two\nlines")]));
    }

    #[test]
    fn parts_of_a_value_are_concatenated() {
        assert_eq!(parse_ok(r#"A=a"b c"'d'"#), pairs(&[("A", "ab cd")]));
        assert_eq!(parse_ok(r#"A=''"""x"\ y"#), pairs(&[("A", "x y")]));
    }

    #[test]
    fn values_may_be_empty() {
        assert_eq!(
            parse_ok("A= B='' C=\"\" D=x"),
            pairs(&[("A", ""), ("B", ""), ("C", ""), ("D", "x")])
        );
        assert_eq!(parse_ok("A="), pairs(&[("A", "")]));
    }

    #[test]
    fn equals_signs_and_hashes_inside_values_are_literal() {
        assert_eq!(
            parse_ok("URL=http://h/?a=b"),
            pairs(&[("URL", "http://h/?a=b")])
        );
        assert_eq!(parse_ok("A=x#y B=#z"), pairs(&[("A", "x#y"), ("B", "#z")]));
    }

    #[test]
    fn comments_run_from_a_word_starting_with_hash_to_the_end_of_the_line() {
        assert_eq!(
            parse_ok("# the database pool\nPOOL=5 # per worker\n#X=1\nB=2"),
            pairs(&[("POOL", "5"), ("B", "2")])
        );
    }

    #[test]
    fn names_may_use_letters_digits_and_underscores() {
        assert_eq!(
            parse_ok("_=1 a=2 A_1=3 __x9=4"),
            pairs(&[("_", "1"), ("a", "2"), ("A_1", "3"), ("__x9", "4")])
        );
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(
            parse_ok("A=héllo B='日本 語' C=\"emoji 🎉\""),
            pairs(&[("A", "héllo"), ("B", "日本 語"), ("C", "emoji 🎉")])
        );
    }

    #[test]
    fn a_value_of_exactly_the_limit_is_accepted() {
        let input = format!("A={}", "x".repeat(MAX_VALUE_BYTES));
        assert_eq!(parse_ok(&input)[0].1.len(), MAX_VALUE_BYTES);
    }

    // --- the config option: what is refused, and where ---------------------

    #[test]
    fn unterminated_double_quote_names_where_it_opened() {
        let e = parse_err(r#"A=1 B=22 C=xy"abc"#);
        assert_eq!(
            e,
            EnvironmentVariablesError::UnterminatedDoubleQuote { position: 14 }
        );
        assert_eq!(
            e.to_string(),
            "environment_variables: unterminated double quote starting at character 14; close it with \""
        );
        // An escaped closing quote does not close it.
        assert_eq!(
            parse_err(r#"A="abc\""#),
            EnvironmentVariablesError::UnterminatedDoubleQuote { position: 3 }
        );
        assert_eq!(
            parse_err("A=\"abc\\"),
            EnvironmentVariablesError::UnterminatedDoubleQuote { position: 3 }
        );
    }

    #[test]
    fn unterminated_single_quote_names_where_it_opened() {
        let e = parse_err("A='it's'");
        assert_eq!(
            e,
            EnvironmentVariablesError::UnterminatedSingleQuote { position: 8 }
        );
        assert_eq!(
            e.to_string(),
            "environment_variables: unterminated single quote starting at character 8; close it with '"
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            parse_err("A=é日\"x"),
            EnvironmentVariablesError::UnterminatedDoubleQuote { position: 5 }
        );
    }

    #[test]
    fn a_first_word_without_equals_is_quoted_back() {
        let e = parse_err("foo");
        assert_eq!(
            e.to_string(),
            "environment_variables: expected NAME=value at character 1, got \"foo\""
        );
        assert_eq!(
            parse_err("  foo A=1"),
            EnvironmentVariablesError::ExpectedAssignment {
                position: 3,
                got: Some("foo".into()),
                after: None
            }
        );
    }

    #[test]
    fn a_word_after_a_value_is_not_quoted_back_because_it_may_be_a_secret() {
        let e = parse_err("PASSWORD=correct horse");
        assert_eq!(
            e,
            EnvironmentVariablesError::ExpectedAssignment {
                position: 18,
                got: None,
                after: Some("PASSWORD".into())
            }
        );
        let message = e.to_string();
        assert!(!message.contains("horse"), "{message}");
        assert!(message.contains("PASSWORD='two words'"), "{message}");
    }

    #[test]
    fn invalid_names_are_refused_with_their_position() {
        for (input, position, name) in [
            ("1A=x", 1, "1A"),
            ("A=1 my-var=x", 5, "my-var"),
            ("É=x", 1, "É"),
            ("\"A\"=x", 1, "\"A\""),
        ] {
            assert_eq!(
                parse_err(input),
                EnvironmentVariablesError::InvalidName {
                    position,
                    name: name.into()
                },
                "{input}"
            );
        }
        assert_eq!(
            parse_err("A=1 =x"),
            EnvironmentVariablesError::MissingName { position: 5 }
        );
    }

    #[test]
    fn relation_variables_cannot_be_set() {
        for (name, relation) in [
            ("DATABASE_URL", "pgsql"),
            ("MONGO_URL", "mongodb"),
            ("MANAGER_SERVICE_URL", "manager-service"),
        ] {
            let e = parse_err(&format!("A=1 {name}=x"));
            assert_eq!(
                e.to_string(),
                format!("environment_variables: {name} is set by the {relation} relation and cannot be set here")
            );
        }
    }

    #[test]
    fn a_name_set_twice_is_refused_naming_both_places() {
        let e = parse_err("A=1 B=2 A=3");
        assert_eq!(
            e,
            EnvironmentVariablesError::Duplicate {
                name: "A".into(),
                first: 1,
                second: 9
            }
        );
        assert_eq!(
            e.to_string(),
            "environment_variables: A is set twice, at characters 1 and 9; keep one"
        );
    }

    #[test]
    fn dollar_and_backtick_must_be_quoted_to_be_literal() {
        for (input, position, character) in [
            ("A=$HOME", 3, '$'),
            ("A=x$(id)", 4, '$'),
            ("A=`id`", 3, '`'),
            ("A=cost$", 7, '$'),
            // A shell expands them inside double quotes too.
            ("A=\"$HOME\"", 4, '$'),
            ("A=\"a`id`\"", 5, '`'),
            // Tilde expansion.
            ("A=~/x", 3, '~'),
            ("A=/a:~/b", 6, '~'),
        ] {
            assert_eq!(
                parse_err(input),
                EnvironmentVariablesError::WouldExpand {
                    position,
                    character,
                    name: "A".into()
                },
                "{input}"
            );
        }
        let message = parse_err("TOKEN=$x").to_string();
        assert!(
            message.contains("character 7 in the value of TOKEN"),
            "{message}"
        );
        assert!(
            message.contains("('$')") && message.contains("(\\$)"),
            "{message}"
        );
        // Quoted or escaped, they are plain characters.
        assert_eq!(
            parse_ok(r#"A='$HOME' B=\$HOME C="\$HOME" D='`id`' E=\~ F="~""#),
            pairs(&[
                ("A", "$HOME"),
                ("B", "$HOME"),
                ("C", "$HOME"),
                ("D", "`id`"),
                ("E", "~"),
                ("F", "~"),
            ])
        );
    }

    #[test]
    fn shell_operators_must_be_quoted() {
        for (input, position, character) in [
            ("A=a;b", 4, ';'),
            ("A=x&y=1", 4, '&'),
            ("A=a|b", 4, '|'),
            ("A=<b", 3, '<'),
            ("A=b>", 4, '>'),
            ("A=(b)", 3, '('),
        ] {
            assert_eq!(
                parse_err(input),
                EnvironmentVariablesError::ShellOperator {
                    position,
                    character,
                    name: "A".into()
                },
                "{input}"
            );
        }
        assert_eq!(
            parse_ok(r"A='a;b&c|d<e>f(g)' B=x\&y"),
            pairs(&[("A", "a;b&c|d<e>f(g)"), ("B", "x&y")])
        );
    }

    #[test]
    fn a_trailing_backslash_is_refused() {
        assert_eq!(
            parse_err("A=1 B=x\\"),
            EnvironmentVariablesError::TrailingBackslash { position: 8 }
        );
    }

    #[test]
    fn nul_and_control_characters_are_refused_even_when_quoted() {
        assert_eq!(
            parse_err("A='x\0'"),
            EnvironmentVariablesError::Nul { position: 5 }
        );
        assert_eq!(
            parse_err("A='\u{1b}[31m'"),
            EnvironmentVariablesError::ControlCharacter {
                position: 4,
                code: 0x1b
            }
        );
        assert_eq!(
            parse_err("A=\"x\u{7f}\""),
            EnvironmentVariablesError::ControlCharacter {
                position: 5,
                code: 0x7f
            }
        );
        let crlf = parse_err("A=1\r\nB=2").to_string();
        assert!(crlf.contains("U+000D at character 4"), "{crlf}");
        assert!(crlf.contains("Windows line endings"), "{crlf}");
        // Tab and newline are fine, in values too.
        assert_eq!(parse_ok("A='a\tb\nc'"), pairs(&[("A", "a\tb\nc")]));
    }

    #[test]
    fn values_over_64_kib_are_refused() {
        let input = format!("A=1 BIG='{}'", "é".repeat(MAX_VALUE_BYTES / 2 + 1));
        let e = parse_err(&input);
        assert_eq!(
            e,
            EnvironmentVariablesError::ValueTooLong {
                name: "BIG".into(),
                position: 5,
                bytes: MAX_VALUE_BYTES + 2
            }
        );
        assert!(!e.to_string().contains('é'));
    }

    #[test]
    fn quote_for_config_quotes_only_what_needs_it() {
        assert_eq!(
            quote_for_config(&pairs(&[
                ("A", "plain-value_1"),
                ("B", ""),
                ("C", "it's $x"),
                ("D", "postgres://u:p@h:5432/db"),
            ])),
            r"A=plain-value_1 B='' C='it'\''s $x' D=postgres://u:p@h:5432/db"
        );
    }

    // --- the environment file: rendering -----------------------------------

    #[test]
    fn render_writes_a_header_then_one_double_quoted_line_per_variable() {
        let text = render_env_file(&pairs(&[
            ("PLAIN", "x"),
            ("TRICKY", "a\"b\\c$d`e'f #g\nh\t "),
            ("EMPTY", ""),
        ]))
        .unwrap();
        assert_eq!(
            text,
            format!(
                "{ENV_FILE_HEADER}PLAIN=\"x\"\nTRICKY=\"a\\\"b\\\\c\\$d\\`e'f #g\nh\t \"\nEMPTY=\"\"\n"
            )
        );
        assert!(text.starts_with("# Managed by the wsgi-app charm. Do not edit"));
    }

    #[test]
    fn render_refuses_what_systemd_cannot_read_back_naming_only_the_variable() {
        let secret = "hunter2";
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (pairs(&[("1BAD", secret)]), "\"1BAD\": not a valid name"),
            (
                pairs(&[("A", secret), ("A", secret)]),
                "A: it is given twice",
            ),
            (
                pairs(&[("PW", "hunter2\0")]),
                "PW: its value contains a NUL",
            ),
            (
                pairs(&[("PW", "hunter2\r")]),
                "PW: its value contains the control character U+000D",
            ),
            (
                vec![(
                    "PW".into(),
                    format!("hunter2{}", "x".repeat(MAX_VALUE_BYTES)),
                )],
                "PW: its value is 65543 bytes long",
            ),
        ];
        for (vars, expected) in cases {
            let message = render_env_file(&vars).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains(secret), "{message}");
        }
    }

    // --- the environment file: systemd's reading rules ---------------------

    fn read(text: &str) -> Vec<(String, String)> {
        parse_env_file(text).unwrap()
    }

    #[test]
    fn env_file_comments_start_with_hash_or_semicolon_and_end_at_the_line() {
        assert_eq!(
            read("# c\n  ; c\n\t# indented\nA=1\n# ends with a backslash \\\nB=2"),
            pairs(&[("A", "1"), ("B", "2")])
        );
        // Not a comment after a value.
        assert_eq!(read("A=x # y ; z"), pairs(&[("A", "x # y ; z")]));
    }

    #[test]
    fn env_file_unquoted_values_are_trimmed_and_honour_backslashes() {
        assert_eq!(
            read("  A  =   x  y  \nB=a\\b\\\\c\nC=x\\ \nD=con\\\ntinued\nE=a\"b\"'c'"),
            pairs(&[
                ("A", "x  y"),
                ("B", "ab\\c"),
                ("C", "x "),
                ("D", "continued"),
                ("E", "a\"b\"'c'"),
            ])
        );
        // Trailing blanks after an escaped one are still trimmed.
        assert_eq!(read("A=x\\  \t"), pairs(&[("A", "x ")]));
    }

    #[test]
    fn env_file_single_quotes_are_literal() {
        assert_eq!(
            read("A='a\\b $x \"y\"\nz'"),
            pairs(&[("A", "a\\b $x \"y\"\nz")])
        );
    }

    #[test]
    fn env_file_double_quotes_unescape_only_quote_backslash_backtick_dollar() {
        assert_eq!(
            read(r#"A="\" \\ \` \$ \n \a \'""#),
            pairs(&[("A", r#"" \ ` $ \n \a \'"#)])
        );
        assert_eq!(read("A=\"x\\\ny\""), pairs(&[("A", "xy")]));
        // CR is not a continuation inside double quotes: the backslash stays.
        assert_eq!(read("A=\"x\\\ry\""), pairs(&[("A", "x\\\ry")]));
        assert_eq!(read("A=\"two\nlines\""), pairs(&[("A", "two\nlines")]));
    }

    #[test]
    fn env_file_quoted_parts_join_skipping_blanks_between_them() {
        assert_eq!(read("A=\"a\" 'b'  c d "), pairs(&[("A", "abc d")]));
        assert_eq!(read("A=  \"  padded  \"  "), pairs(&[("A", "  padded  ")]));
    }

    #[test]
    fn env_file_lines_end_at_cr_or_lf() {
        assert_eq!(
            read("A=x\r\nB=y\rC=z\n"),
            pairs(&[("A", "x"), ("B", "y"), ("C", "z")])
        );
    }

    #[test]
    fn env_file_lines_without_equals_and_invalid_names_are_dropped() {
        assert_eq!(
            read("JUNK\nexport A=1\n1B=2\nmy-var=3\n\"Q\"=4\nOK=5\n=6\nTRAILING"),
            pairs(&[("OK", "5")])
        );
    }

    #[test]
    fn env_file_repeated_names_keep_first_place_and_last_value() {
        assert_eq!(read("A=1\nB=2\nA=3"), pairs(&[("A", "3"), ("B", "2")]));
    }

    #[test]
    fn env_file_empty_values_and_the_end_of_the_file() {
        assert_eq!(
            read("A=\nB=\"\"\nC='unterminated\nD"),
            pairs(&[("A", ""), ("B", ""), ("C", "unterminated\nD")])
        );
        assert_eq!(read("A=\"x"), pairs(&[("A", "x")]));
        assert_eq!(read("A=x\\"), pairs(&[("A", "x")]));
        assert_eq!(read("A=\"x\\"), pairs(&[("A", "x")]));
        assert_eq!(read("A="), pairs(&[("A", "")]));
        assert_eq!(read("A"), pairs(&[]));
    }

    #[test]
    fn env_file_stops_at_nul_and_never_expands() {
        assert_eq!(read("A=1\0B=2\n"), pairs(&[("A", "1")]));
        assert_eq!(
            read("A=$HOME ${B} `id`"),
            pairs(&[("A", "$HOME ${B} `id`")])
        );
    }

    #[test]
    fn env_file_invalid_utf8_in_an_assignment_fails_the_file_but_not_in_a_comment() {
        let e = parse_env_file_bytes(b"A=1\nB=\xff\n").unwrap_err();
        assert!(matches!(e, EnvFileError::InvalidUtf8 { line: 2 }), "{e}");
        assert_eq!(
            parse_env_file_bytes(b"# \xff\nA=1\n").unwrap(),
            pairs(&[("A", "1")])
        );
        // A multi-byte character split by nothing stays whole.
        assert_eq!(
            parse_env_file_bytes("A=\"é\\日\"".as_bytes()).unwrap(),
            pairs(&[("A", "é\\日")])
        );
    }

    // --- writing the file --------------------------------------------------

    fn current_ids() -> (u32, u32) {
        // SAFETY: getuid and getgid cannot fail.
        unsafe { (libc::getuid(), libc::getgid()) }
    }

    #[test]
    fn write_env_file_reports_changes_and_sets_mode_and_owner() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        let (uid, gid) = current_ids();
        let vars = pairs(&[("A", "1"), ("SECRET", "p a$$")]);

        assert!(write_env_file(&path, &vars, uid, gid).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            render_env_file(&vars).unwrap()
        );
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.mode() & 0o7777, 0o640);
        assert_eq!((metadata.uid(), metadata.gid()), (uid, gid));
        assert_eq!(read_env_file(&path).unwrap(), vars);

        assert!(!write_env_file(&path, &vars, uid, gid).unwrap());

        // A wrong mode is repaired without counting as a change.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!write_env_file(&path, &vars, uid, gid).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);

        let changed = pairs(&[("A", "2"), ("SECRET", "p a$$")]);
        assert!(write_env_file(&path, &changed, uid, gid).unwrap());
        assert_eq!(read_env_file(&path).unwrap(), changed);

        // Only the file itself is left: no temporary files.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("app.env")]);
    }

    #[test]
    fn write_env_file_leaves_the_old_file_when_rendering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        let (uid, gid) = current_ids();
        write_env_file(&path, &pairs(&[("A", "1")]), uid, gid).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let e = write_env_file(&path, &pairs(&[("B", "bad\u{1}")]), uid, gid).unwrap_err();
        assert!(matches!(
            e,
            EnvFileError::ValueContainsControlCharacter { .. }
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn write_env_file_errors_name_the_path() {
        let (uid, gid) = current_ids();
        let path = Path::new("/nonexistent-dir-for-envvars-test/app.env");
        let message = write_env_file(path, &pairs(&[("A", "1")]), uid, gid)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("/nonexistent-dir-for-envvars-test"),
            "{message}"
        );
    }

    // --- properties --------------------------------------------------------

    mod properties {
        use super::super::*;
        use proptest::collection::{btree_map, vec};
        use proptest::prelude::*;
        use proptest::sample::select;

        /// Characters that have a meaning somewhere in either syntax, plus a
        /// few non-ASCII ones, so that random values hit every rule often.
        pub(super) const SPECIAL: &[char] = &[
            ' ', '\t', '\n', '"', '\'', '\\', '$', '`', '#', ';', '=', '~', '*', '?', '[', ':',
            '&', '|', '(', ')', '<', '>', '{', '}', '!', 'é', '日', '🎉', '\u{85}', '\u{a0}',
        ];

        fn value_char() -> impl Strategy<Value = char> {
            prop_oneof![
                4 => select(SPECIAL),
                3 => proptest::char::range('a', 'z'),
                1 => any::<char>()
                    .prop_filter("representable", |&c| c != '\0' && !is_refused_control(c)),
            ]
        }

        pub(super) fn value() -> impl Strategy<Value = String> {
            vec(value_char(), 0..24).prop_map(String::from_iter)
        }

        pub(super) fn name() -> impl Strategy<Value = String> {
            "[A-Za-z_][A-Za-z0-9_]{0,10}"
                .prop_filter("owned by a relation", |n| relation_owning(n).is_none())
        }

        /// Distinct names in a random order, with arbitrary values.
        pub(super) fn vars() -> impl Strategy<Value = Vec<(String, String)>> {
            btree_map(name(), value(), 0..6)
                .prop_map(|map| map.into_iter().collect::<Vec<_>>())
                .prop_shuffle()
        }

        /// Text built from the config syntax's pieces: mostly well formed,
        /// sometimes not.
        pub(super) fn config_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                3 => "[a-z0-9]{1,4}",
                1 => select(SPECIAL).prop_map(String::from),
                1 => select(SPECIAL).prop_map(|c| format!("\\{c}")),
                2 => "[^'\\x00-\\x08\\x0b-\\x1f\\x7f]{0,6}".prop_map(|s| format!("'{s}'")),
                2 => vec(prop_oneof![value_char().prop_map(String::from), select(SPECIAL).prop_map(|c| format!("\\{c}"))], 0..6)
                    .prop_map(|parts| format!("\"{}\"", parts.concat())),
            ];
            let assignment = (select(&["A", "B", "C", "_X", "a1"][..]), vec(piece, 0..4))
                .prop_map(|(name, pieces)| format!("{name}={}", pieces.concat()));
            let item = prop_oneof![
                8 => assignment,
                1 => "#[a-z ]{0,5}\n",
                1 => "[a-z=]{1,3}",
            ];
            let blank = select(&[" ", "\t", "\n", "  ", "\\\n "][..]);
            vec((item, blank), 0..5).prop_map(|items| {
                items
                    .into_iter()
                    .map(|(item, blank)| format!("{item}{blank}"))
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn env_file_round_trips(vars in vars()) {
                let text = render_env_file(&vars).unwrap();
                prop_assert_eq!(parse_env_file(&text).unwrap(), vars);
            }

            #[test]
            fn config_round_trips_through_quote_for_config(vars in vars()) {
                let config = quote_for_config(&vars);
                prop_assert_eq!(parse_environment_variables(&config).unwrap(), vars);
            }

            /// Whatever the option accepts can be written to the file and
            /// read back unchanged.
            #[test]
            fn everything_accepted_can_be_written(input in config_text()) {
                if let Ok(vars) = parse_environment_variables(&input) {
                    let text = render_env_file(&vars).unwrap();
                    prop_assert_eq!(parse_env_file(&text).unwrap(), vars);
                }
            }
        }
    }

    // --- the real shell as an oracle ---------------------------------------

    mod shell_oracle {
        use super::super::*;
        use super::properties;
        use std::collections::BTreeMap;
        use std::process::Command;

        /// Run `script` in `/bin/sh` with an empty environment and `arg` as
        /// `$1`, and return the variables it exports, minus those the shell
        /// exports by itself (PWD and the like).
        fn exported_by_sh(script: &str, arg: &str) -> Result<BTreeMap<String, String>, String> {
            let run = |script: &str, arg: &str| -> Result<BTreeMap<String, String>, String> {
                let output = Command::new("/bin/sh")
                    .env_clear()
                    .current_dir("/")
                    .args(["-c", script, "sh", arg])
                    .output()
                    .expect("run /bin/sh");
                if !output.status.success() {
                    return Err(String::from_utf8_lossy(&output.stderr).into_owned());
                }
                let stdout = String::from_utf8(output.stdout).expect("env output is UTF-8");
                Ok(stdout
                    .split_terminator('\0')
                    .map(|entry| {
                        let (name, value) = entry.split_once('=').expect("NAME=value");
                        (name.to_string(), value.to_string())
                    })
                    .collect())
            };
            let own = run("exec /usr/bin/env -0", "")?;
            let mut exported = run(script, arg)?;
            exported.retain(|name, _| !own.contains_key(name));
            Ok(exported)
        }

        /// The assignments `sh` makes from `input` read as a command line.
        fn sh_assignments(input: &str) -> Result<BTreeMap<String, String>, String> {
            // `set -a` exports every assignment; plain assignments (not
            // `export` arguments) get POSIX assignment semantics, with no
            // field splitting or globbing.
            exported_by_sh(
                r#"set -a; eval "$1" || exit 97; exec /usr/bin/env -0"#,
                input,
            )
        }

        fn ours(input: &str) -> BTreeMap<String, String> {
            parse_environment_variables(input)
                .unwrap_or_else(|e| panic!("{input:?}: {e}"))
                .into_iter()
                .collect()
        }

        #[test]
        fn tricky_inputs_mean_the_same_to_sh() {
            let inputs = [
                "A=plain",
                "A='single \"double\" \\back\\slash'",
                r#"A="double \"escaped\" \\ \$ \` and \n kept""#,
                r#"A=a"b c"'d' B=''"""x"\ y"#,
                r"A=with\ space B=\'q C=\\",
                "A=con\\\ntinued \\\n B=after",
                "A='multi\nline' B=\"also\nmulti\"",
                "A= B='' C=\"\"",
                "# comment\nA=1 # trailing\nB=x#y C=#z",
                "A=é日🎉 B='tab\there' C=\"nbsp\u{a0}\"",
                "LONG\\\n_NAME=1",
                r#"A="x\y" B="\a\b""#,
                "A=* B=?x C=[a] D=/*",
                r#"A='$HOME' B=\$HOME C="\$(id)" D='`id`' E=\~"#,
                "A=x:y=z,w@h%p+1 B={a,b} C=!x D=a!",
                r"A='a;b&c|d<e>f(g)' B=x\&y C=\;",
                "\t\n A=1\t\n",
            ];
            for input in inputs {
                assert_eq!(sh_assignments(input), Ok(ours(input)), "input: {input:?}");
            }
        }

        /// Differential test: for text built from the syntax's pieces,
        /// whenever our parser accepts, /bin/sh must agree exactly. Checks
        /// too that the generator makes enough accepted inputs to matter.
        #[test]
        fn every_accepted_input_means_the_same_to_sh() {
            use proptest::test_runner::{Config, TestRunner};
            let mut runner = TestRunner::new(Config::with_cases(300));
            let accepted = std::cell::Cell::new(0u32);
            runner
                .run(&properties::config_text(), |input| {
                    if let Ok(vars) = parse_environment_variables(&input) {
                        accepted.set(accepted.get() + 1);
                        let ours: BTreeMap<_, _> = vars.into_iter().collect();
                        proptest::prop_assert_eq!(
                            sh_assignments(&input),
                            Ok(ours),
                            "input: {:?}",
                            input
                        );
                    }
                    Ok(())
                })
                .unwrap();
            assert!(
                accepted.get() >= 60,
                "only {} of 300 generated inputs were accepted",
                accepted.get()
            );
        }

        /// Random variables whose names cannot be ones the shell treats
        /// specially (PWD, IFS, PATH, ...).
        fn vars_for_sh() -> impl proptest::strategy::Strategy<Value = Vec<(String, String)>> {
            use proptest::strategy::Strategy as _;
            properties::vars().prop_map(|vars| {
                vars.into_iter()
                    .map(|(name, value)| (format!("T_{name}"), value))
                    .collect()
            })
        }

        proptest::proptest! {
            #![proptest_config(proptest::test_runner::Config::with_cases(64))]

            /// quote_for_config writes what sh reads back as the same values.
            #[test]
            fn quote_for_config_means_the_same_to_sh(vars in vars_for_sh()) {
                let config = quote_for_config(&vars);
                let expected: BTreeMap<_, _> = vars.into_iter().collect();
                proptest::prop_assert_eq!(sh_assignments(&config), Ok(expected));
            }

            /// The environment file reads back the same when an operator
            /// sources it in a shell (`set -a; . app.env`).
            #[test]
            fn env_file_means_the_same_when_sourced_by_sh(vars in vars_for_sh()) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("app.env");
                std::fs::write(&path, render_env_file(&vars).unwrap()).unwrap();
                let sourced = exported_by_sh(
                    r#"set -a; . "$1"; exec /usr/bin/env -0"#,
                    path.to_str().unwrap(),
                );
                let expected: BTreeMap<_, _> = vars.into_iter().collect();
                proptest::prop_assert_eq!(sourced, Ok(expected));
            }
        }
    }
}
