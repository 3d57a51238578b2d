//! The layer order of `src/` is kept: each top-level module of the `arka` crate uses only
//! modules of lower layers, in the order the module doc of `src/lib.rs` lists them. The test
//! reads the sources, so an import against the order fails here, naming the file and the
//! module it reaches. Run with `--nocapture` to print the module graph. The client, which
//! users build against, uses only the wire format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers as `src/lib.rs` lists them: items `//! N. Name: `a`, `b`, …`, lowest first,
/// each on one line or continued on indented lines.
fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read src/lib.rs");
    let mut items: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for line in lib.lines().filter_map(|l| l.strip_prefix("//!")) {
        let numbered = line
            .trim_start()
            .split_once(". ")
            .and_then(|(number, rest)| Some((number.parse::<usize>().ok()?, rest)));
        match numbered {
            Some((layer, rest)) => {
                items.push((layer, rest.to_string()));
                open = true;
            }
            None if open && line.starts_with("    ") => {
                if let Some((_, text)) = items.last_mut() {
                    text.push_str(line);
                }
            }
            None => open = false,
        }
    }
    let mut layer_of = BTreeMap::new();
    for (layer, text) in items {
        for module in text.split('`').skip(1).step_by(2) {
            let earlier = layer_of.insert(module.to_string(), layer);
            assert!(earlier.is_none(), "src/lib.rs lists `{module}` twice");
        }
    }
    layer_of
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and its unit tests (`#[cfg(test)] mod tests`,
/// at the end of a file by this crate's habit).
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names as `crate::x`, also inside `crate::{x, y::z}`.
fn modules_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        used.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used.retain(|m| !m.is_empty());
    used
}

/// `(module, file, used module)` for every top-level module use across modules.
fn uses() -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src()).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for used in modules_used(&code_of(&text)) {
            if used != module {
                out.push((module.clone(), format!("src/{}", rel.display()), used));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layer_of = layers();
    let uses = uses();
    let modules: BTreeSet<&String> = uses.iter().map(|(m, _, _)| m).collect();
    for module in &modules {
        assert!(
            layer_of.contains_key(*module),
            "src/lib.rs's layer list does not name `{module}`"
        );
    }
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut against = Vec::new();
    for (module, file, used) in &uses {
        graph.entry(module).or_default().insert(used);
        let (Some(from), Some(to)) = (layer_of.get(module), layer_of.get(used)) else {
            continue;
        };
        if to >= from {
            against.push(format!(
                "{file} uses `crate::{used}`: `{module}` (layer {from}) may use only layers below it, and `{used}` is layer {to}"
            ));
        }
    }
    for (module, used) in graph.iter() {
        let named: Vec<&str> = used.iter().copied().collect();
        println!("{module} ({}) -> {}", layer_of[*module], named.join(" "));
    }
    assert!(
        against.is_empty(),
        "uses against the layer order of src/lib.rs:\n{}",
        against.join("\n")
    );
    let edges = graph.values().map(BTreeSet::len).sum::<usize>();
    println!("{edges} uses between {} modules, all downward", graph.len());
}

/// The Rust client speaks the wire format only: it could be its own crate.
#[test]
fn the_client_uses_only_the_wire_format() {
    let outside: Vec<String> = uses()
        .into_iter()
        .filter(|(module, _, used)| {
            module == "client" && !["wire", "durability"].contains(&used.as_str())
        })
        .map(|(_, file, used)| format!("{file} uses `crate::{used}`"))
        .collect();
    assert!(
        outside.is_empty(),
        "the client uses the node's modules, not only `wire` and `durability`:\n{}",
        outside.join("\n")
    );
}

#[test]
fn uses_are_found_in_paths_and_groups_but_not_in_comments() {
    let code = code_of(
        "use crate::a::B;\nuse crate::{c, d::{E, F}, g};\n// crate::h\nlet x = crate::i::j();\n#[cfg(test)]\nmod tests {\n    use crate::k;\n}\n",
    );
    let used: Vec<String> = modules_used(&code).into_iter().collect();
    assert_eq!(used, ["a", "c", "d", "g", "i"]);
}
