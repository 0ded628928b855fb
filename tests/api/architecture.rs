//! The layering rules of ARCHITECTURE.md, checked on the source: which
//! folder may not import what. A rule names a crate path or an external
//! crate; test modules (`#[cfg(test)]` to the end of a file) are exempt, as
//! they may build fixtures from anything.

use std::path::{Path, PathBuf};

/// `(folder or file under src/, what its code may not name, why)`; a `*`
/// stands for every folder at that place.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "core",
        &[
            "actix",
            "awc",
            "tokio",
            "deadpool",
            "crate::db",
            "crate::http",
            "crate::config",
            "crate::cli",
            "crate::demo",
            "crate::kinds",
            "crate::metrics",
            "crate::registry",
        ],
        "the core is pure: no framework, no database, no upward import",
    ),
    (
        "kinds/*/mod.rs",
        &[
            "actix",
            "awc",
            "tokio",
            "deadpool",
            "crate::db",
            "crate::http",
            "crate::cli",
            "crate::demo",
            "crate::config",
        ],
        "a kind's description is data over core's vocabulary",
    ),
    (
        "kinds/session/radius",
        &[
            "actix",
            "tokio",
            "deadpool",
            "crate::db",
            "crate::http",
            "crate::config",
        ],
        "parsing RADIUS accounting is pure",
    ),
    (
        "db",
        &[
            "actix_web",
            "awc",
            "crate::http",
            "crate::cli",
            "crate::demo",
            "crate::config",
            "crate::kinds",
            "crate::registry",
        ],
        "the database layer knows nothing of HTTP, the command line, settings or a kind",
    ),
    (
        "http",
        &[
            "crate::kinds",
            "crate::cli",
            "crate::config::ApiTokens::from_env",
        ],
        "the HTTP layer serves the kinds of its registry and names none",
    ),
    (
        "demo",
        &["crate::kinds", "crate::http", "crate::cli"],
        "the demo's shared machinery names no kind",
    ),
    (
        "registry.rs",
        &["crate::kinds", "crate::http", "crate::cli"],
        "the registry's types sit below the HTTP layer and the kinds (above the database layer)",
    ),
    (
        "kinds/auth/report.rs",
        &[
            "actix",
            "tokio",
            "deadpool",
            "crate::db",
            "crate::http",
            "crate::config",
        ],
        "the reports' dates and encodings are pure",
    ),
    (
        "kinds/auth/rollup/plan.rs",
        &[
            "actix",
            "tokio",
            "deadpool",
            "crate::db",
            "crate::http",
            "crate::config",
        ],
        "planning a rollup step is pure",
    ),
    (
        "config.rs",
        &[
            "crate::http",
            "crate::db",
            "crate::cli",
            "crate::kinds",
            "actix",
        ],
        "settings are parsed into core types; nothing below imports them",
    ),
];

/// The files or folders `place` stands for.
fn places(src: &Path, place: &str) -> Vec<PathBuf> {
    match place.split_once("/*/") {
        None => vec![src.join(place)],
        Some((dir, rest)) => std::fs::read_dir(src.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| p.join(rest))
            .collect(),
    }
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file outside its test module, comments dropped, and each
/// grouped `crate::{a::…, b}` written out as `crate::a::… crate::b`.
fn code(text: &str) -> String {
    // Test modules (and test-support modules) come last in a file.
    let body = ["#[cfg(test)]\nmod ", "#[cfg(test)]\npub(crate) mod "]
        .iter()
        .filter_map(|start| text.find(start))
        .min()
        .map_or(text, |at| &text[..at]);
    let code = body
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    flatten(&flatten(&code, "crate"), "super")
}

/// `root::{a::…, b}` written out as `root::a::… root::b` (one level).
fn flatten(code: &str, root: &str) -> String {
    let open = format!("{root}::{{");
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find(&open) {
        out.push_str(&rest[..at]);
        let inner = &rest[at + open.len()..];
        let mut depth = 1;
        let mut item = String::new();
        let mut end = inner.len();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 || (depth == 1 && c == ',') {
                out.push_str(&format!(" {root}::{}, ", item.trim()));
                item.clear();
                if depth == 0 {
                    end = i + 1;
                    break;
                }
                continue;
            }
            item.push(c);
        }
        rest = &inner[end..];
    }
    out.push_str(rest);
    out
}

/// The modules of a folder: its `.rs` files (but `mod.rs`) and subfolders.
fn modules(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_owned();
            (p.is_dir() || (p.extension().is_some_and(|e| e == "rs") && stem != "mod"))
                .then_some(stem)
        })
        .filter(|n| n != "lib" && n != "main")
        .collect();
    names.sort();
    names
}

/// The sibling modules `module` (in `dir`, reached from code as
/// `prefix::name` or, inside `dir`, `super::name`) names in its code.
fn uses(dir: &Path, module: &str, prefix: &str, siblings: &[String]) -> Vec<String> {
    let mut files = Vec::new();
    let path = dir.join(module);
    if path.is_dir() {
        rust_files(&path, &mut files);
    } else {
        files.push(dir.join(format!("{module}.rs")));
    }
    let nested = path.is_dir();
    let mut found = Vec::new();
    for file in files {
        let code = code(&std::fs::read_to_string(&file).unwrap());
        for other in siblings.iter().filter(|s| *s != module) {
            let absolute = names(&code, &format!("{prefix}::{other}"));
            // `super::x` from a file directly in `dir` is a sibling.
            let relative = !nested && names(&code, &format!("super::{other}"));
            if (absolute || relative) && !found.contains(other) {
                found.push(other.clone());
            }
        }
    }
    found
}

/// Issue 22: no two modules of one folder import each other, even through
/// others (`config` and `core`, `db::directory` and `db::sessions`, the
/// state and the handlers once did).
#[test]
fn no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = vec![(src.clone(), "crate".to_owned())];
    for name in modules(&src) {
        if src.join(&name).is_dir() {
            folders.push((src.join(&name), format!("crate::{name}")));
        }
    }
    // The graph is real: known edges are seen.
    let top = modules(&src);
    assert!(uses(&src, "http", "crate", &top).contains(&"db".to_owned()));
    assert!(uses(&src, "config", "crate", &top).contains(&"core".to_owned()));
    let http = modules(&src.join("http"));
    assert!(uses(&src.join("http"), "listing", "crate::http", &http).contains(&"error".to_owned()));
    assert!(uses(&src.join("http"), "state", "crate::http", &http).contains(&"options".to_owned()));
    let mut circles = Vec::new();
    for (dir, prefix) in &folders {
        let siblings = modules(dir);
        let edges: Vec<(String, Vec<String>)> = siblings
            .iter()
            .map(|m| (m.clone(), uses(dir, m, prefix, &siblings)))
            .collect();
        // Depth-first search for a path back to where it started.
        for (start, _) in &edges {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, path)) = stack.pop() {
                let next = &edges.iter().find(|(m, _)| *m == at).unwrap().1;
                for n in next {
                    if n == start {
                        let mut circle = path.clone();
                        circle.push(n.clone());
                        circles.push(format!("{prefix}: {}", circle.join(" -> ")));
                    } else if !path.contains(n) && path.len() < siblings.len() {
                        let mut longer = path.clone();
                        longer.push(n.clone());
                        stack.push((n.clone(), longer));
                    }
                }
            }
        }
    }
    circles.sort();
    circles.dedup();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// True when `code` names `path` as a path (`tokio::`, `use tokio;`, `crate::db::`, `crate::db,`).
fn names(code: &str, path: &str) -> bool {
    code.match_indices(path).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + path.len()..].chars().next();
        let starts = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let ends = matches!(
            after,
            Some(':') | Some(',') | Some(';') | Some('}') | Some(' ')
        );
        // `tokio_postgres` is named by the rule `tokio` too.
        let crate_prefix = path.chars().all(|c| c.is_alphanumeric())
            && after.is_some_and(|c| c == '_' || c == ':');
        starts && (ends || crate_prefix)
    })
}

#[test]
fn layers_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (place, forbidden, why) in RULES {
        let mut files = Vec::new();
        for path in places(&src, place) {
            rust_files(&path, &mut files);
        }
        assert!(!files.is_empty(), "no files under src/{place}");
        for file in files {
            let code = code(&std::fs::read_to_string(&file).unwrap());
            for path in *forbidden {
                if names(&code, path) {
                    broken.push(format!(
                        "{} names `{path}`: {why}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_what_it_checks() {
    assert!(names("use tokio_postgres::Client;", "tokio"));
    assert!(names("use crate::db::pool;", "crate::db"));
    let grouped = code("use crate::{\n    config::{self, Scope},\n    db,\n};");
    assert!(names(&grouped, "crate::config"), "{grouped}");
    assert!(names(&grouped, "crate::db"), "{grouped}");
    assert!(names("x: crate::config::Scope", "crate::config"));
    assert!(!names("use crate::core::dbx;", "crate::db"));
    assert!(!names("let tokiox = 1;", "tokio"));
    assert_eq!(
        code("a\n// tokio::x\n#[cfg(test)]\nmod tests { tokio }"),
        "a\n"
    );
}
