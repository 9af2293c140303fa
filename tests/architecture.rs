//! The architecture as the build enforces it: which crate may depend on which, that the
//! domain and store crates know no transport and only the store knows a storage engine or
//! database driver (sled, PostgreSQL), that no module of a crate imports in a circle, and
//! that the domain modules of the service crates stay free of gRPC. Read from the manifests and sources, so no cargo cache is needed.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each workspace crate's directory name and its normal dependencies.
fn manifests() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let manifest: toml::Value = toml::from_str(&text).unwrap();
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, deps.keys().cloned().collect());
    }
    out
}

#[test]
fn crates_depend_only_along_the_layers() {
    let crates = manifests();
    let expected: BTreeSet<&str> =
        ["api", "cli", "core", "dev", "installation", "package", "serving", "store", "web"].into_iter().collect();
    assert_eq!(crates.keys().map(String::as_str).collect::<BTreeSet<_>>(), expected);
    // Which of our crates each may use (Cargo forbids cycles; this forbids shortcuts).
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("core", &[][..]),
        ("store", &["promotion-core"][..]),
        ("api", &["promotion-core"][..]),
        ("serving", &["promotion-core", "promotion-api", "promotion-store"][..]),
        ("package", &["promotion-core", "promotion-api", "promotion-store", "promotion-serving"][..]),
        ("installation", &["promotion-core", "promotion-api", "promotion-store", "promotion-serving"][..]),
        ("cli", &["promotion-core", "promotion-api"][..]),
        // The HTTP front door reaches the services only through their gRPC handlers.
        ("web", &["promotion-core", "promotion-api", "promotion-serving"][..]),
        (
            "dev",
            &[
                "promotion-core",
                "promotion-api",
                "promotion-store",
                "promotion-serving",
                "promotion-package",
                "promotion-installation",
                "promotion-web",
            ][..],
        ),
    ]);
    for (name, deps) in &crates {
        for dep in deps.iter().filter(|d| d.starts_with("promotion-")) {
            assert!(allowed[name.as_str()].contains(&dep.as_str()), "crate {name} must not depend on {dep}");
        }
    }
    for transport in ["tonic", "tonic-prost", "tonic-health", "tonic-reflection", "tonic-types", "prost", "hyper"] {
        for layer in ["core", "store"] {
            assert!(!crates[layer].contains(transport), "{layer} must not depend on {transport}");
        }
    }
    // Storage engines and database drivers: keys, codecs and connections stay in the store.
    for engine in ["sled", "tokio-postgres", "postgres", "deadpool-postgres", "sqlx"] {
        for (name, deps) in &crates {
            if deps.contains(engine) {
                assert_eq!(name, "store", "only the store crate may depend on {engine}");
            }
        }
    }
    assert!(crates["store"].contains("tokio-postgres"), "the store's PostgreSQL driver is where this rule looks");
}

/// Top-level modules of a crate's `src` and the modules each refers to through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Test-only code may reach across modules freely.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let refs = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let target: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !target.is_empty() && target != module && target.chars().next().is_some_and(|c| c.is_lowercase()) {
                refs.insert(target);
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search with colours; iterative so that no graph shape can overflow.
    let mut colour: BTreeMap<&str, u8> = BTreeMap::new();
    for start in graph.keys() {
        if colour.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut path: Vec<&str> = vec![start];
        let mut iters = vec![graph[start].iter()];
        colour.insert(start, 1);
        while let Some(it) = iters.last_mut() {
            match it.next() {
                Some(next) if graph.contains_key(next) => match colour.get(next.as_str()).copied().unwrap_or(0) {
                    0 => {
                        colour.insert(next, 1);
                        path.push(next);
                        iters.push(graph[next].iter());
                    }
                    1 => {
                        let from = path.iter().position(|m| *m == next).unwrap();
                        let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                        cycle.push(next.clone());
                        return Some(cycle);
                    }
                    _ => {}
                },
                Some(_) => {}
                None => {
                    colour.insert(path.pop().unwrap(), 2);
                    iters.pop();
                }
            }
        }
    }
    None
}

#[test]
fn no_crate_imports_its_own_modules_in_a_circle() {
    for name in manifests().keys() {
        let graph = module_graph(&root().join("crates").join(name).join("src"));
        if let Some(cycle) = find_cycle(&graph) {
            panic!("crate {name} has an import circle: {}", cycle.join(" -> "));
        }
    }
    let mut circular = BTreeMap::new();
    circular.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    circular.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&circular).is_some(), "the check finds circles");
}

#[test]
fn domain_modules_of_the_services_know_no_transport() {
    for name in ["package", "installation"] {
        let src = root().join("crates").join(name).join("src");
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let transport_side = path.is_dir() || file == "server.rs" || file == "lib.rs";
            if transport_side || file.ends_with("_tests.rs") || file == "testing.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for word in ["tonic", "prost", "promotion_api", "promotion_serving"] {
                let found = text.lines().any(|l| !l.trim_start().starts_with("//") && contains_word(l, word));
                assert!(!found, "{name}/src/{file} is domain code and must not use {word}");
            }
        }
    }
}

fn contains_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}
