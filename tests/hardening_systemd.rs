//! The systemd units the charm writes, rendered from specs whose paths
//! (env file, logs, runtime directory) and WSGI callable carry what systemd
//! would misread (spaces, quotes, `$`, `%`,
//! backslashes, `;`, non-ASCII), checked by the real `systemd-analyze
//! verify`, and their ExecStart read back by systemd's quoting rules.

mod hardening_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wsgi_app::workload::service::{gunicorn_args, venv_python, Listen, ServiceSpec};
use wsgi_app::workload::systemd::{
    anchor_unit, gunicorn_config_path, slot_link, slot_template, socket_unit,
};

/// Split an ExecStart= value as systemd does (`extract_first_word` with
/// quotes and C escapes), then undo `$$` and `%%`.
fn systemd_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' => word.push(chars.next().expect("escape at end")),
                c if c.is_whitespace() && !quoted => break,
                c => word.push(c),
            }
        }
        words.push(word.replace("$$", "$").replace("%%", "%"));
    }
    words
}

#[test]
fn units_with_hostile_paths_verify_and_read_back() {
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        eprintln!("systemd-analyze is not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let odd = [
        "plain",
        "with space",
        "it's \"quoted\"",
        "dollar $HOME ${X}",
        "percent %h %n",
        "semi;colon",
        "back\\slash",
        "ünïcødé",
    ];
    let mut cases = 0;
    for name in odd {
        cases += 1;
        let base = tmp.path().join(name);
        // The executable's own path stays plain: systemd refuses quotes in
        // it whatever the quoting, and on a unit it is /srv/<app>/current,
        // with the app name limited to letters, digits, '-', '_' and '.'.
        let current = tmp.path().join(format!("app{cases}/srv/current"));
        std::fs::create_dir_all(current.join("venv/bin")).unwrap();
        std::fs::create_dir_all(current.join("code")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", venv_python(&current)).unwrap();
        let env_file = base.join("etc/environment");
        std::fs::create_dir_all(env_file.parent().unwrap()).unwrap();
        std::fs::write(&env_file, "A=\"1\"\n").unwrap();
        let spec = ServiceSpec {
            name: "wsgi-app".into(),
            current_dir: current.clone(),
            wsgi_application: "mödule.sub:application".into(),
            bind_address: "0.0.0.0".into(),
            port: 8080,
            workers: 3,
            env_file: env_file.clone(),
            // A system user, as the charm creates one on a real unit
            // (systemd warns about `nobody`).
            user: "daemon".into(),
            group: "daemon".into(),
            log_dir: base.join("log"),
            run_dir: base.join("run"),
            serving: wsgi_app::workload::service::Serving::default(),
            metrics: None,
            fingerprint: "f".repeat(64),
        };
        let units = base.join("units");
        std::fs::create_dir_all(&units).unwrap();
        // The template as systemd loads its instance `a`, whose python
        // must exist (the slot's link leads to the build).
        std::os::unix::fs::symlink(&current, slot_link(&spec, "a")).unwrap();
        let service = slot_template(&spec).unwrap();
        std::fs::write(units.join("wsgi-app@a.service"), &service).unwrap();
        std::fs::write(units.join("wsgi-app.service"), anchor_unit(&spec).unwrap()).unwrap();
        std::fs::write(units.join("wsgi-app.socket"), socket_unit(&spec).unwrap()).unwrap();
        std::fs::set_permissions(&units, std::fs::Permissions::from_mode(0o755)).unwrap();

        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(units.join("wsgi-app@a.service"))
            .arg(units.join("wsgi-app.service"))
            .arg(units.join("wsgi-app.socket"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("wsgi-app."))
            .filter(|l| !l.contains("Unit is bound to inactive unit")) // no running systemd here
            .collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "{name}: systemd-analyze verify: {stderr}\n{service}"
        );

        let exec = service
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        // `%i` is systemd's to expand: it reads back as written.
        let slot_dir = slot_link(&spec, "%i");
        let mut expected = vec![venv_python(&slot_dir).display().to_string()];
        expected.extend(gunicorn_args(
            &spec,
            &slot_dir,
            Listen::SocketActivation,
            3,
            Some(&gunicorn_config_path(&spec)),
        ));
        assert_eq!(systemd_words(exec), expected, "{name}");
        let env_line = service
            .lines()
            .find_map(|l| l.strip_prefix("EnvironmentFile="))
            .unwrap();
        assert_eq!(env_line.replace("%%", "%"), env_file.display().to_string());
    }
    hardening_support::record(
        "systemd units with hostile paths",
        cases,
        "systemd-analyze verify passes; ExecStart reads back as the intended argv",
    );
}
