//! The rooms rule of ARCHITECTURE.md, checked on the source: `workload`
//! imports neither `ops` nor `charm`, `ops` imports neither `charm` nor
//! `workload`, the rooms import each other without a circle, and so do the
//! modules of `workload`; and only `main` reads the process environment. Read from the files (not the compiler) so that a
//! `super::super::` that escapes a room counts like a `crate::` path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOMS: [&str; 3] = ["ops", "workload", "charm"];

/// Each room's forbidden neighbours.
const FORBIDDEN: [(&str, &[&str]); 2] = [
    ("ops", &["charm", "workload"]),
    ("workload", &["ops", "charm"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/workload/supervisor/client.rs` is `workload::supervisor::client`;
/// a `mod.rs` is its directory's module.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// The first identifier of each item in a `{a, b::c, self}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in group.chars().chain(std::iter::once(',')) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() && head != "self" {
                    heads.push(head);
                }
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth == 0 || !matches!(c, '{' | '}') {
            item.push(c);
        }
    }
    heads
}

/// The paths (as many segments as could be resolved, from the crate root)
/// that `code`, written in module `module`, refers to through `crate::` or
/// `super::`. Comment lines are skipped; an inline `mod x { ... }` moves
/// `super::` one level down, as the compiler does.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    // (brace depth at which an inline module opened, its name)
    let mut inline: Vec<(i32, String)> = Vec::new();
    let mut depth = 0;
    for line in code.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let mut here: Vec<String> = module.to_vec();
        here.extend(inline.iter().map(|(_, name)| name.clone()));
        let mut rest = line;
        while let Some(at) = rest.find(['c', 's']) {
            let tail = &rest[at..];
            let boundary = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let (mut base, mut after) = if boundary && tail.starts_with("crate::") {
                (Vec::new(), &tail["crate::".len()..])
            } else if boundary && tail.starts_with("super::") {
                let mut base = here.clone();
                let mut after = tail;
                while let Some(next) = after.strip_prefix("super::") {
                    base.pop();
                    after = next;
                }
                (base, after)
            } else {
                rest = &tail[1..];
                continue;
            };
            // The named segments, then perhaps a `{...}` group.
            loop {
                let ident: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    base.push(ident.clone());
                    after = &after[ident.len()..];
                    match after.strip_prefix("::") {
                        Some(next) => after = next,
                        None => break,
                    }
                } else if let Some(group) = after.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for head in group_heads(&group[..end]) {
                        let mut path = base.clone();
                        path.push(head);
                        found.push(path);
                    }
                    base.clear();
                    break;
                } else {
                    break;
                }
            }
            if !base.is_empty() {
                found.push(base);
            }
            rest = after;
        }
        if let Some(name) = trimmed
            .strip_prefix("mod ")
            .or_else(|| trimmed.strip_prefix("pub mod "))
            .and_then(|r| r.strip_suffix('{'))
        {
            inline.push((depth, name.trim().to_string()));
        }
        let mut in_string = false;
        let mut previous = ' ';
        for c in line.chars() {
            match c {
                '"' if previous != '\\' => in_string = !in_string,
                '{' if !in_string && previous != '\'' => depth += 1,
                '}' if !in_string && previous != '\'' => {
                    depth -= 1;
                    if inline.last().is_some_and(|(open, _)| *open == depth) {
                        inline.pop();
                    }
                }
                _ => {}
            }
            previous = c;
        }
    }
    found
}

/// Every file's module and what it refers to.
fn crate_references() -> Vec<(PathBuf, Vec<String>, Vec<Vec<String>>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let module = module_of(&src, &file);
            let code = std::fs::read_to_string(&file).unwrap();
            let refs = references(&module, &code);
            (file, module, refs)
        })
        .collect()
}

/// A circle in `edges`, if there is one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_room_imports_what_it_must_not() {
    let mut offences = Vec::new();
    for (file, module, refs) in crate_references() {
        let Some(room) = module.first() else { continue };
        let Some((_, forbidden)) = FORBIDDEN.iter().find(|(r, _)| r == room) else {
            continue;
        };
        for path in refs {
            if path
                .first()
                .is_some_and(|r| forbidden.contains(&r.as_str()))
            {
                offences.push(format!("{}: {}", file.display(), path.join("::")));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "imports across the rooms' rule:\n{}",
        offences.join("\n")
    );
}

#[test]
fn rooms_and_workload_modules_have_no_circle() {
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut workload: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, refs) in crate_references() {
        let Some(room) = module.first().filter(|r| ROOMS.contains(&r.as_str())) else {
            continue;
        };
        for path in &refs {
            let Some(to) = path.first().filter(|r| ROOMS.contains(&r.as_str())) else {
                continue;
            };
            if to != room {
                rooms.entry(room.clone()).or_default().insert(to.clone());
            }
            if room == "workload" && to == "workload" {
                if let (Some(from), Some(to)) = (module.get(1), path.get(1)) {
                    if from != to {
                        workload.entry(from.clone()).or_default().insert(to.clone());
                    }
                }
            }
        }
    }
    assert_eq!(find_circle(&rooms), None, "rooms: {rooms:?}");
    assert_eq!(
        find_circle(&workload),
        None,
        "workload modules: {workload:?}"
    );
}

/// The process environment (variables and arguments) is read in `main`
/// only, and handed down: `PATH`, `USER`, `WSGI_APP_*`, Juju's variables.
#[test]
fn only_main_reads_the_process_environment() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let reads = [
        "env::var(",
        "env::var_os(",
        "env::vars(",
        "env::vars_os(",
        "env::args(",
        "env::args_os(",
    ];
    let mut offences = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let code = std::fs::read_to_string(file).unwrap();
        for (n, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") && reads.iter().any(|r| line.contains(r)) {
                offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "the environment read outside main:\n{}",
        offences.join("\n")
    );
}

/// The checker itself sees the ways a workload file could reach the charm.
#[test]
fn the_checker_sees_every_spelling() {
    let module: Vec<String> = ["workload", "builds"].map(String::from).to_vec();
    let refs = |code: &str| references(&module, code);
    assert_eq!(
        refs("use crate::charm::config::Config;")[0][..2],
        ["charm", "config"]
    );
    assert_eq!(
        refs("use super::super::ops::Status;")[0][..2],
        ["ops", "Status"]
    );
    assert_eq!(
        refs("use super::layout::Layout;")[0][..2],
        ["workload", "layout"]
    );
    let grouped = refs("use crate::{charm::state, workload::text};");
    assert_eq!(
        grouped,
        [vec!["charm".to_string()], vec!["workload".to_string()]]
    );
    assert_eq!(
        refs("    let x = crate::ops::run(a);")[0][..2],
        ["ops", "run"]
    );
    assert!(refs("// crate::charm in a comment").is_empty());
    // Inside an inline module, `super::` is the file's own module.
    let inline = refs("mod tests {\n    use super::super::charm::X;\n}");
    assert_eq!(inline[0][0], "workload");
    assert_eq!(
        find_circle(&BTreeMap::from([
            ("a".into(), BTreeSet::from(["b".into()])),
            ("b".into(), BTreeSet::from(["a".into()]))
        ])),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
