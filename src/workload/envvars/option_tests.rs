//! The `environment_variables` parser: what it accepts, and what it
//! refuses and where.

use super::*;
use crate::workload::envvars::pairs;

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
        ("DATABASE_URL", "postgresql or pgsql"),
        ("DATABASE_READ_ONLY_URL", "postgresql"),
        ("POSTGRESQL_DB_CONNECT_STRING", "postgresql"),
        ("MONGO_URL", "mongodb-client or mongodb"),
        ("MONGODB_DB_CONNECT_STRING", "mongodb-client"),
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
