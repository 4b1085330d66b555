//! The environment file: rendering, systemd's reading rules, and writing
//! it with the right mode and owner.

use super::*;
use crate::workload::envvars::pairs;

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
