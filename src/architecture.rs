//! The layer rule, checked: every `crate::` path in `src/` (outside `#[cfg(test)]` code) may name
//! only a module of a lower layer, or its own top-level module. The README's "Architecture"
//! section draws the same layers.

use std::{collections::BTreeSet, path::Path};

/// Top-level modules by layer, lowest first. A module may import from layers below its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("time and ids", &["clock", "ids"]),
    ("settings", &["config"]),
    ("storage and logs", &["db", "telemetry"]),
    ("errors and the cache", &["error", "cache"]),
    ("request parsing", &["extract"]),
    ("the base", &["base"]),
    ("the Stripe simulator", &["sim"]),
    ("email", &["email"]),
    ("auth", &["auth"]),
    ("billing", &["billing"]),
    ("gate", &["gate"]),
    ("the simulator at start-up", &["simulated"]),
    ("accounts over HTTP", &["account"]),
    ("the shared state", &["state"]),
    ("pages", &["web"]),
    ("serving", &["server"]),
    ("the application", &["app"]),
    ("the command line", &["cli"]),
];

/// Modules on the side: importable only by the modules listed (start-up), whatever their layer.
const SIDE: &[(&str, &[&str])] = &[("sim", &["simulated", "state", "cli"])];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// Source without `#[cfg(test)]` items and without comments.
fn production_code(source: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut skipping_until: Option<usize> = None;
    let mut next_is_test = false;
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let before = depth;
        depth = (depth + code.matches('{').count()).saturating_sub(code.matches('}').count());
        if let Some(level) = skipping_until {
            if depth <= level {
                skipping_until = None;
            }
            continue;
        }
        // `#[cfg(test)]`, `#[cfg(all(test, feature = "sim"))]`, …
        let attribute = code.trim();
        if attribute.starts_with("#[cfg(") && attribute.contains("test") {
            next_is_test = true;
            continue;
        }
        if next_is_test {
            next_is_test = false;
            if depth > before {
                skipping_until = Some(before);
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named by `crate::` paths (and `use crate::{a, b::c}` groups).
fn imported_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident_at(&group[i..]);
                        if !name.is_empty() {
                            found.insert(name.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

/// Every (importing top-level module, imported top-level module) pair in `src/`.
fn imports() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = BTreeSet::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src/");
            let first = relative.components().next().expect("a file name");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if ["lib", "main", "architecture"].contains(&module.as_str()) {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source is UTF-8");
            for imported in imported_modules(&production_code(&source)) {
                let imported = match imported.as_str() {
                    "Result" | "AppError" => "error".to_owned(),
                    _ => imported,
                };
                if imported != module {
                    edges.insert((module.clone(), imported));
                }
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_layer() {
    for (from, to) in imports() {
        for m in [&from, &to] {
            assert!(
                layer_of(m).is_some(),
                "src/{m} has no layer in src/architecture.rs (imported by or importing {from} → {to})"
            );
        }
    }
}

/// The imports in `edges` that break the layer rule, as `from → to`.
fn violations(edges: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut upward = Vec::new();
    for (from, to) in edges {
        let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else {
            continue;
        };
        let side_ok = SIDE
            .iter()
            .find(|(m, _)| m == to)
            .is_none_or(|(_, users)| users.contains(&from.as_str()));
        if b >= a || !side_ok {
            upward.push(format!("{from} → {to}"));
        }
    }
    upward
}

#[test]
fn modules_import_only_downward() {
    let upward = violations(&imports());
    assert!(
        upward.is_empty(),
        "imports against the layer rule: {upward:?}"
    );
}

#[test]
fn an_upward_or_sideways_import_is_caught() {
    let edges: BTreeSet<(String, String)> = [
        ("auth", "gate"),
        ("billing", "sim"),
        ("auth", "billing"),
        ("gate", "auth"),
        ("cli", "sim"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .into();
    assert_eq!(
        violations(&edges),
        ["auth → billing", "auth → gate", "billing → sim"]
    );
}

#[test]
fn the_parser_sees_groups_paths_and_skips_tests() {
    let code = "use crate::{a::{b, c}, d, e::f as g};\nfn x() { crate::h::i(); }\n\
                #[cfg(test)]\nmod tests {\n    use crate::z;\n}\n// crate::comment\n\
                #[cfg(all(test, feature = \"sim\"))]\nmod more {\n    use crate::y;\n}\n";
    let found = imported_modules(&production_code(code));
    let expected: BTreeSet<String> = ["a", "d", "e", "h"].map(String::from).into();
    assert_eq!(found, expected);
}
