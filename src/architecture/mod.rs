//! The layer rule, checked. Every `crate::` and `super::` path in `src/` (outside test code) is
//! resolved to the module it names; then
//! - every top-level module has a layer, and imports only from layers below its own (modules on
//!   the side, like the simulator, only from the modules allowed to use them);
//! - no two modules, at any depth, import each other, directly or round a cycle;
//! - the README's "Architecture" picture names the same modules in the same order.
//!
//! [`tables`] checks that each table has one owner, and [`no_source_file_is_over_500_lines`] that
//! files stay small enough to read.

mod tables;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Top-level modules by layer, lowest first. A module may import from layers below its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("time and ids", &["clock", "ids"]),
    ("the Stripe simulator", &["sim"]),
    ("settings", &["config"]),
    ("storage and logs", &["db", "telemetry"]),
    ("the audit trail", &["audit"]),
    ("errors and the cache", &["error", "cache"]),
    ("request parsing", &["extract"]),
    ("the base", &["base"]),
    ("outbound webhooks", &["outbound"]),
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
const SIDE: &[(&str, &[&str])] = &[("sim", &["simulated", "cli"])];

/// Files that are not modules of the library, or not subject to the rule.
const NOT_MODULES: &[&str] = &["lib", "main", "architecture"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// A module path, `["billing", "webhook", "apply"]`.
type ModulePath = Vec<String>;

/// True for an attribute that makes the item after it test code.
fn is_test_cfg(attribute: &str) -> bool {
    attribute.starts_with("#[cfg(test)]") || attribute.starts_with("#[cfg(all(test,")
}

/// Source without test items (`#[cfg(test)]`, `#[cfg(all(test, …))]`) and without comments. The
/// attribute may share its line with the item, or be followed by doc comments and attributes.
fn production_code(source: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut skipping_until: Option<usize> = None;
    let mut next_is_test = false;
    for line in source.lines() {
        let mut code = line.split("//").next().unwrap_or("");
        let before = depth;
        depth = (depth + code.matches('{').count()).saturating_sub(code.matches('}').count());
        if let Some(level) = skipping_until {
            if depth <= level {
                skipping_until = None;
            }
            continue;
        }
        let trimmed = code.trim();
        if is_test_cfg(trimmed) {
            next_is_test = true;
            // An item on the attribute's own line is the test item.
            code = trimmed.split_once(']').map_or("", |(_, rest)| rest);
            if code.trim().is_empty() {
                continue;
            }
        } else if next_is_test && (trimmed.is_empty() || trimmed.starts_with("#[")) {
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

fn skip_space(s: &str, at: usize) -> usize {
    at + (s[at..].len() - s[at..].trim_start().len())
}

/// The paths of a use tree starting at `s` (after `crate::` or `super::`), as segment lists:
/// `a::{b, c::d as e, self}` gives `[a, b]`, `[a, c, d]` and `[a]`. Returns how much of `s` was
/// read.
fn use_tree(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut at = skip_space(s, 0);
    let mut path = prefix.to_vec();
    loop {
        if s[at..].starts_with('{') {
            at += 1;
            loop {
                at = skip_space(s, at);
                if s[at..].starts_with('}') {
                    return at + 1;
                }
                at += use_tree(&s[at..], &path, out);
                at = skip_space(s, at);
                if s[at..].starts_with(',') {
                    at += 1;
                } else {
                    return at + usize::from(s[at..].starts_with('}'));
                }
            }
        }
        if s[at..].starts_with('*') {
            out.push(path);
            return at + 1;
        }
        let name = ident_at(&s[at..]);
        at += name.len();
        if !name.is_empty() && name != "self" {
            path.push(name.to_owned());
        }
        if !name.is_empty() && s[at..].starts_with("::") {
            at += 2;
            continue;
        }
        let after = skip_space(s, at);
        if let Some(alias) = s[after..].strip_prefix("as ") {
            let alias_at = skip_space(alias, 0);
            at = after + 3 + alias_at + ident_at(&alias[alias_at..]).len();
        }
        out.push(path);
        return at;
    }
}

/// Every path `code` (in `module`) names through `crate::` or `super::`, resolved from the crate
/// root.
fn named_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let starts = code
        .match_indices("crate::")
        .chain(code.match_indices("super::"));
    for (at, word) in starts {
        if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &code[at..];
        let mut base: Vec<String> = if word == "crate::" {
            rest = &rest["crate::".len()..];
            Vec::new()
        } else {
            let mut base = module.to_vec();
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            base
        };
        // `crate::Result` and `crate::AppError` are the error module's, re-exported.
        if base.is_empty() && ["Result", "AppError"].contains(&ident_at(rest)) {
            base.push("error".into());
            out.push(base);
            continue;
        }
        use_tree(rest, &std::mem::take(&mut base), &mut out);
    }
    out
}

/// Every module of `src/` (by path) and its production code.
fn modules() -> BTreeMap<ModulePath, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
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
            let mut module: ModulePath = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            if NOT_MODULES.contains(&module[0].as_str()) {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source is UTF-8");
            found.insert(module, production_code(&source));
        }
    }
    found
}

/// The module each module imports from (the longest known module a named path starts with). A
/// module's use of its ancestors (where its shared types live, `super::Access`) is not an import
/// between modules.
fn module_imports(modules: &BTreeMap<ModulePath, String>) -> BTreeSet<(ModulePath, ModulePath)> {
    let mut edges = BTreeSet::new();
    for (module, code) in modules {
        for path in named_paths(module, code) {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains_key(p));
            if let Some(target) = target
                && &target != module
                && !module.starts_with(&target)
            {
                edges.insert((module.clone(), target));
            }
        }
    }
    edges
}

/// The top-level pairs of `edges` (`billing::webhook::apply → auth::users` is `billing → auth`).
fn top_level(edges: &BTreeSet<(ModulePath, ModulePath)>) -> BTreeSet<(String, String)> {
    edges
        .iter()
        .filter(|(a, b)| a[0] != b[0])
        .map(|(a, b)| (a[0].clone(), b[0].clone()))
        .collect()
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

/// A cycle in `edges`, if there is one (as the modules round it).
fn cycle<N: Ord + Clone>(edges: &BTreeSet<(N, N)>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        node: &N,
        edges: &BTreeSet<(N, N)>,
        done: &mut BTreeSet<N>,
        path: &mut Vec<N>,
    ) -> Option<Vec<N>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for (_, next) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(found) = visit(next, edges, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(node, _)| visit(node, edges, &mut done, &mut Vec::new()))
}

#[test]
fn every_module_has_a_layer() {
    let modules = modules();
    let top: BTreeSet<&String> = modules.keys().map(|m| &m[0]).collect();
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or(l.trim().strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';').to_owned())
        .filter(|m| !NOT_MODULES.contains(&m.as_str()))
        .collect();
    for m in top.into_iter().chain(&declared) {
        assert!(
            layer_of(m).is_some(),
            "src/{m} has no layer in src/architecture/mod.rs"
        );
    }
}

#[test]
fn modules_import_only_downward() {
    let upward = violations(&top_level(&module_imports(&modules())));
    assert!(
        upward.is_empty(),
        "imports against the layer rule: {upward:?}"
    );
}

#[test]
fn no_modules_import_each_other() {
    let edges = module_imports(&modules());
    let found = cycle(&edges).map(|c| c.iter().map(|m| m.join("::")).collect::<Vec<_>>());
    assert_eq!(found, None, "modules in an import cycle");
}

#[test]
fn the_readme_draws_the_layers_in_order() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let picture = readme
        .split_once("**Layers.**")
        .and_then(|(_, rest)| rest.split_once("```text\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(picture, _)| picture)
        .expect("the README's Architecture section has a layer picture");
    // Reading order: top to bottom, left to right; each line's words up to its description.
    let drawn: Vec<&str> = picture
        .lines()
        .flat_map(|line| {
            line.trim()
                .split("   ")
                .next()
                .unwrap_or("")
                .split([' ', '─', '·'])
                .filter(|w| layer_of(w).is_some())
                .collect::<Vec<_>>()
        })
        .collect();
    let all: BTreeSet<&str> = LAYERS
        .iter()
        .flat_map(|(_, ms)| ms.iter().copied())
        .collect();
    assert_eq!(
        drawn.iter().copied().collect::<BTreeSet<_>>(),
        all,
        "the picture names every module of LAYERS once"
    );
    let on_the_side: Vec<&str> = SIDE.iter().map(|(m, _)| *m).collect();
    let ordered: Vec<&str> = drawn
        .into_iter()
        .filter(|m| !on_the_side.contains(m))
        .collect();
    for pair in ordered.windows(2) {
        assert!(
            layer_of(pair[0]) >= layer_of(pair[1]),
            "the picture draws {} above {}, but its layer is lower",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn an_upward_or_sideways_import_is_caught() {
    let edges: BTreeSet<(String, String)> = [
        ("auth", "gate"),
        ("billing", "sim"),
        ("auth", "billing"),
        ("gate", "auth"),
        ("cli", "sim"),
        ("sim", "config"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .into();
    assert_eq!(
        violations(&edges),
        [
            "auth → billing",
            "auth → gate",
            "billing → sim",
            "sim → config"
        ]
    );
}

#[test]
fn a_cycle_is_found_at_any_depth() {
    let path = |s: &str| s.split("::").map(String::from).collect::<ModulePath>();
    let mut edges: BTreeSet<(ModulePath, ModulePath)> = [
        ("auth::magic", "auth::email_flows"),
        ("auth::email_flows", "auth::users"),
    ]
    .map(|(a, b)| (path(a), path(b)))
    .into();
    assert_eq!(cycle(&edges), None);
    edges.insert((path("auth::users"), path("auth::magic")));
    assert!(cycle(&edges).is_some_and(|c| c.len() == 3));
}

#[test]
fn the_parser_resolves_groups_super_paths_and_skips_tests() {
    let module = ["auth".to_owned(), "magic".to_owned()];
    let code = "use crate::{a::{b, c}, d, e::f as g};\nfn x() { crate::h::i(); }\n\
                use super::email_flows::{self, link};\nuse super::super::gate::X;\n\
                use crate::{\n    j::k,\n    l,\n};\n\
                #[cfg(test)]\nmod tests {\n    use crate::z;\n}\n// crate::comment\n\
                #[cfg(all(test, feature = \"sim\"))]\n/// A doc.\n#[allow(unused)]\n\
                mod more {\n    use crate::y;\n}\n\
                #[cfg(test)] use crate::w;\nuse crate::after;\n\
                #[cfg(not(test))]\nuse crate::not_test;\n";
    let found: BTreeSet<String> = named_paths(&module, &production_code(code))
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "a::b",
        "a::c",
        "d",
        "e::f",
        "h::i",
        "auth::email_flows",
        "auth::email_flows::link",
        "gate::X",
        "j::k",
        "l",
        "after",
        "not_test",
    ]
    .map(String::from)
    .into();
    assert_eq!(found, expected);
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

#[test]
fn no_source_file_is_over_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long: Vec<String> = ["src", "tests", "bench", "examples"]
        .iter()
        .filter(|d| root.join(d).is_dir())
        .flat_map(|d| rust_files(&root.join(d)))
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path).ok()?.lines().count();
            let name = path.strip_prefix(root).ok()?.display().to_string();
            (lines > 500).then(|| format!("{name}: {lines} lines"))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}
