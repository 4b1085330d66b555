//! Properties both formats must keep together (a value round-trips
//! through the option, the env file and `quote_for_config`), and the real
//! `/bin/sh` as an oracle for what the option and the file mean.

// --- properties --------------------------------------------------------

mod properties {
    use crate::workload::envvars::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Characters that have a meaning somewhere in either syntax, plus a
    /// few non-ASCII ones, so that random values hit every rule often.
    pub(super) const SPECIAL: &[char] = &[
        ' ', '\t', '\n', '"', '\'', '\\', '$', '`', '#', ';', '=', '~', '*', '?', '[', ':', '&',
        '|', '(', ')', '<', '>', '{', '}', '!', 'é', '日', '🎉', '\u{85}', '\u{a0}',
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
    use super::properties;
    use crate::workload::envvars::*;
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
