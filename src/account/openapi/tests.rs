//! The document names exactly the JSON routes the code registers: every `.route(…)` in the
//! source outside the pages (`src/web`) and the simulator (`src/sim`), read from the files, is
//! compared with the document's paths and methods.

use std::{collections::BTreeSet, path::Path};

use super::document;

/// `(method, path)`, lower-case method, path parameters written `{}`.
type Route = (String, String);

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name != "web" && name != "sim" {
                source_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("openapi/tests.rs")
        {
            out.push(path);
        }
    }
}

/// `/api/keys/{id}` → `/api/keys/{}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The text of the call's arguments from just after `.route(`, up to its closing parenthesis.
fn arguments(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

/// The routes registered in `source` (comments dropped).
fn routes_in(source: &str) -> Vec<Route> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices(".route(") {
        let args = arguments(&code[at + ".route(".len()..]);
        let Some(open) = args.find('"') else { continue };
        let Some(len) = args[open + 1..].find('"') else {
            continue;
        };
        let path = &args[open + 1..open + 1 + len];
        let methods = &args[open + 1 + len..];
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = methods.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !methods.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && methods.as_bytes()[i - 1] != b'_'
            });
            if called {
                found.push((method.to_owned(), shape(path)));
            }
        }
    }
    found
}

#[test]
fn the_route_reader_reads_routes() {
    let source = r#"
        Router::new()
            .route("/api/a/{id}", get(show).delete(remove))
            // .route("/api/commented", get(x))
            .route(
                &format!("/api/demo/{need}"),
                post(webhook::receive).layer(DefaultBodyLimit::max(LIMIT)),
            )
    "#;
    let routes: BTreeSet<Route> = routes_in(source).into_iter().collect();
    let expected: BTreeSet<Route> = [
        ("get", "/api/a/{}"),
        ("delete", "/api/a/{}"),
        ("post", "/api/demo/{}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(routes, expected);
}

#[test]
fn the_document_names_every_json_route_and_no_other() {
    let mut files = Vec::new();
    source_files(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut files,
    );
    let mut in_code = BTreeSet::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for route in routes_in(&source) {
            // Doc comments of the gate's layers show routes of an example app.
            if ["/reports", "/export", "/dashboard"].contains(&route.1.as_str()) {
                continue;
            }
            in_code.insert(route);
        }
    }
    assert!(
        in_code.len() > 40,
        "the reader found the routes: {in_code:?}"
    );
    let doc = document();
    let mut in_doc = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("get", item.get.is_some()),
            ("post", item.post.is_some()),
            ("put", item.put.is_some()),
            ("patch", item.patch.is_some()),
            ("delete", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if present {
                in_doc.insert((method.to_owned(), shape(path)));
            }
        }
    }
    let missing: Vec<_> = in_code.difference(&in_doc).collect();
    let stale: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}; documented routes that do not exist: {stale:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_every_operation_says_what_errors_look_like() {
    let json: serde_json::Value = serde_json::to_value(document()).unwrap();
    assert_eq!(json["openapi"], "3.1.0");
    for (path, item) in json["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["default"].is_object(),
                "{method} {path} has no error response"
            );
            assert!(
                op["summary"].is_string() || op["description"].is_string(),
                "{method} {path} is not described"
            );
        }
    }
    let mut refs = Vec::new();
    references(&json, &mut refs);
    assert!(refs.len() > 20, "{refs:?}");
    for name in refs {
        let name = name
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the schemas: {name}"));
        assert!(
            json["components"]["schemas"][name].is_object(),
            "{name} is referenced but not in the document's components"
        );
    }
    assert!(json["components"]["schemas"]["ErrorBody"].is_object());
    assert!(json["components"]["schemas"]["UserJson"].is_object());
}

/// Every `$ref` in `value`.
fn references(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => references(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// docs/openapi.json is the document as the code makes it: regenerate with
/// `cargo run -- openapi > docs/openapi.json`.
#[test]
fn the_document_in_docs_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored.trim_end() == super::pretty(),
        "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json`"
    );
}
