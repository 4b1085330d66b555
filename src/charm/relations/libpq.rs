//! libpq `key=value` connection strings ("conninfo"), as the PostgreSQL
//! charms publish them in `master` and `standbys` (reference §3(a): both the
//! legacy reactive charm and the current machine charm send a libpq string in
//! `master`; `standbys` is newline-separated from the legacy charm and
//! comma-joined from the current one).
//!
//! The grammar is libpq's own (PostgreSQL docs, "Keyword/Value Connection
//! Strings"): pairs separated by whitespace; spaces allowed around `=`; a
//! value is either bare (ends at whitespace) or in single quotes; inside
//! either, a backslash makes the next character literal (`\'`, `\\`).
//! Unlike libpq we keep unknown keywords: the charm only reads a few and must
//! not reject a newer server's extras.
//!
//! Connection strings carry passwords, so nothing here puts string content in
//! an error or in `Debug` output: errors give byte offsets only.

use std::fmt;

/// A parsed connection string: its pairs in order. Read values with
/// [`Conninfo::get`]; like libpq, a repeated keyword's last value wins.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Conninfo {
    pairs: Vec<(String, String)>,
}

/// Why a connection string did not parse. Offsets only: the text around the
/// fault may be part of a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    #[error("missing \"=\" after the keyword that starts at byte {at}")]
    MissingEquals { at: usize },
    #[error("empty keyword before \"=\" at byte {at}")]
    EmptyKeyword { at: usize },
    #[error("unterminated quoted value that starts at byte {at}")]
    UnterminatedQuote { at: usize },
}

/// libpq splits on C's `isspace`, which (unlike `char::is_ascii_whitespace`)
/// includes vertical tab.
fn is_conninfo_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

impl Conninfo {
    /// Parse a libpq keyword/value connection string.
    pub fn parse(text: &str) -> Result<Conninfo, ConninfoError> {
        let mut pairs = Vec::new();
        let mut chars = text.char_indices().peekable();
        loop {
            // Whitespace between pairs.
            while chars.next_if(|&(_, c)| is_conninfo_space(c)).is_some() {}
            let Some(&(key_start, _)) = chars.peek() else {
                break;
            };

            // The keyword runs to `=` or whitespace; whitespace may come
            // before the `=`.
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|&(_, c)| c != '=' && !is_conninfo_space(c)) {
                key.push(c);
            }
            while chars.next_if(|&(_, c)| is_conninfo_space(c)).is_some() {}
            match chars.next() {
                Some((at, '=')) if key.is_empty() => {
                    return Err(ConninfoError::EmptyKeyword { at })
                }
                Some((_, '=')) => {}
                _ => return Err(ConninfoError::MissingEquals { at: key_start }),
            }
            // libpq skips whitespace after `=` too, so `host= db` is `db`.
            while chars.next_if(|&(_, c)| is_conninfo_space(c)).is_some() {}

            let mut value = String::new();
            match chars.peek() {
                Some(&(quote_at, '\'')) => {
                    chars.next();
                    loop {
                        match chars.next() {
                            None => return Err(ConninfoError::UnterminatedQuote { at: quote_at }),
                            Some((_, '\\')) => match chars.next() {
                                Some((_, escaped)) => value.push(escaped),
                                None => {
                                    return Err(ConninfoError::UnterminatedQuote { at: quote_at })
                                }
                            },
                            Some((_, '\'')) => break,
                            Some((_, c)) => value.push(c),
                        }
                    }
                }
                _ => {
                    while let Some((_, c)) = chars.next_if(|&(_, c)| !is_conninfo_space(c)) {
                        if c == '\\' {
                            // A trailing lone backslash is dropped, as libpq does.
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        } else {
                            value.push(c);
                        }
                    }
                }
            }
            pairs.push((key, value));
        }
        Ok(Conninfo { pairs })
    }

    /// Build a connection string from pairs. Keywords must be non-empty and
    /// free of whitespace and `=` (libpq's keywords all are); values may be
    /// anything, and are always quoted so that [`Conninfo::parse`] gives
    /// them back unchanged.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Conninfo {
        Conninfo {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `keyword`; the last one when it is repeated.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in the order written.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The connection string: `key='value'` pairs joined by spaces, each
    /// value quoted with `\` and `'` escaped.
    pub fn to_conninfo_string(&self) -> String {
        self.pairs
            .iter()
            .map(|(key, value)| {
                debug_assert!(
                    !key.is_empty() && !key.chars().any(|c| c == '=' || is_conninfo_space(c)),
                    "libpq keywords have no whitespace or ="
                );
                let escaped = value.replace('\\', r"\\").replace('\'', r"\'");
                format!("{key}='{escaped}'")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Shows keywords and values, except that `password` is never shown.
impl fmt::Debug for Conninfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.pairs {
            if key == "password" {
                map.entry(key, &"<redacted>");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// Split the `standbys` value into one connection string per standby.
///
/// The legacy charm separates them with newlines; the current charm joins
/// them with commas (reference §3(a)). A separator inside a quoted value, or
/// escaped with a backslash, belongs to the value. When any newline separates
/// entries the value is the legacy form and commas are left alone (a bare
/// value such as a multi-host `host=a,b` may contain one); otherwise commas
/// separate entries, which holds for the current charm because it never
/// writes a comma in a bare value. Entries are trimmed; empty ones (the
/// current charm sends `""` when there are no standbys) are dropped.
pub fn split_standbys(raw: &str) -> Vec<String> {
    let by_newline = split_entries(raw, '\n');
    let entries = if by_newline.len() > 1 {
        by_newline
    } else {
        split_entries(raw, ',')
    };
    entries
        .into_iter()
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect()
}

/// Split `raw` at each `separator` that is not inside a value's quotes and
/// not escaped, following the same states as [`Conninfo::parse`].
fn split_entries(raw: &str, separator: char) -> Vec<&str> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        BetweenPairs,
        Keyword,
        BeforeValue,
        BareValue,
        QuotedValue,
    }
    let mut state = State::BetweenPairs;
    let mut entries = Vec::new();
    let mut entry_start = 0;
    let mut chars = raw.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == separator && state != State::QuotedValue {
            entries.push(&raw[entry_start..at]);
            entry_start = at + c.len_utf8();
            state = State::BetweenPairs;
            continue;
        }
        state = match (state, c) {
            (State::QuotedValue, '\\') | (State::BareValue, '\\') => {
                chars.next();
                state
            }
            (State::QuotedValue, '\'') => State::BetweenPairs,
            (State::QuotedValue, _) => State::QuotedValue,
            (State::BareValue, c) if is_conninfo_space(c) => State::BetweenPairs,
            (State::BareValue, _) => State::BareValue,
            (State::BetweenPairs, c) if is_conninfo_space(c) => State::BetweenPairs,
            (State::BetweenPairs, '=') | (State::Keyword, '=') => State::BeforeValue,
            (State::BetweenPairs, _) | (State::Keyword, _) => State::Keyword,
            (State::BeforeValue, c) if is_conninfo_space(c) => State::BeforeValue,
            (State::BeforeValue, '\'') => State::QuotedValue,
            (State::BeforeValue, '\\') => {
                chars.next();
                State::BareValue
            }
            (State::BeforeValue, _) => State::BareValue,
        };
    }
    entries.push(&raw[entry_start..]);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        Conninfo::parse(text).unwrap().pairs().to_vec()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bare_and_quoted_values() {
        assert_eq!(
            pairs("host=10.0.0.5 dbname='my db' port = 5432 user=u\\ x"),
            owned(&[
                ("host", "10.0.0.5"),
                ("dbname", "my db"),
                ("port", "5432"),
                ("user", "u x")
            ])
        );
    }

    #[test]
    fn escapes_inside_quotes() {
        assert_eq!(
            pairs(r"password='it\'s a \\ back' x=''"),
            owned(&[("password", r"it's a \ back"), ("x", "")])
        );
    }

    #[test]
    fn libpq_quirks_are_kept() {
        // Whitespace after `=` is skipped, so the next word is the value.
        assert_eq!(pairs("a= b"), owned(&[("a", "b")]));
        // A quote inside a bare value is an ordinary character.
        assert_eq!(pairs("password=it's"), owned(&[("password", "it's")]));
        // The last of a repeated keyword wins.
        assert_eq!(
            Conninfo::parse("port=1 port=2").unwrap().get("port"),
            Some("2")
        );
        assert_eq!(pairs("a=\x0bb=c"), owned(&[("a", "b=c")]));
    }

    #[test]
    fn errors_give_positions_not_text() {
        assert_eq!(
            Conninfo::parse("host=h secretword"),
            Err(ConninfoError::MissingEquals { at: 7 })
        );
        assert_eq!(
            Conninfo::parse("=x"),
            Err(ConninfoError::EmptyKeyword { at: 0 })
        );
        assert_eq!(
            Conninfo::parse("password='abc"),
            Err(ConninfoError::UnterminatedQuote { at: 9 })
        );
        assert_eq!(
            Conninfo::parse(r"password='abc\"),
            Err(ConninfoError::UnterminatedQuote { at: 9 })
        );
        let message = Conninfo::parse("host=h secretword")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("secretword"), "{message}");
    }

    #[test]
    fn debug_hides_the_password() {
        let info = Conninfo::parse("user=u password=hunter2").unwrap();
        let shown = format!("{info:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"user\": \"u\""), "{shown}");
    }

    #[test]
    fn formatting_round_trips() {
        let info = Conninfo::from_pairs([("password", r"a'b\c d"), ("host", "")]);
        assert_eq!(info.to_conninfo_string(), r"password='a\'b\\c d' host=''");
        assert_eq!(Conninfo::parse(&info.to_conninfo_string()).unwrap(), info);
    }

    #[test]
    fn standbys_newline_separated_legacy_form() {
        assert_eq!(
            split_standbys("host=a port=5432\nhost=b,c port=5432\n"),
            vec!["host=a port=5432", "host=b,c port=5432"]
        );
    }

    #[test]
    fn standbys_comma_joined_current_form() {
        assert_eq!(
            split_standbys("host=a password='x,y\nz',host=b password=p\\,q"),
            vec!["host=a password='x,y\nz'", "host=b password=p\\,q"]
        );
        assert!(split_standbys("").is_empty());
        assert_eq!(split_standbys("host=a"), vec!["host=a"]);
    }

    #[test]
    fn a_quote_in_a_bare_value_does_not_swallow_the_separator() {
        assert_eq!(
            split_standbys("password=it's host=a,password=b host=c"),
            vec!["password=it's host=a", "password=b host=c"]
        );
    }
}
