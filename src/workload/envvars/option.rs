//! The `environment_variables` option//!
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

use std::collections::HashMap;

use super::{is_refused_control, is_valid_name, relation_owning, MAX_VALUE_BYTES};

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

#[cfg(test)]
#[path = "option_tests.rs"]
mod tests;
