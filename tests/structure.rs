//! docs/STRUCTURE.md stays true: its picture of the crates (the Mermaid `graph` block) shows
//! exactly the workspace's crates and, as solid arrows, exactly the dependencies between them
//! that `cargo metadata --format-version 1 --no-deps` reports (every kind: normal, dev, build).
//! Dotted arrows (`-.->`) are not dependencies and are not compared. And every Rust source stays
//! one unit of a readable size that logs through `tracing`.

use std::collections::BTreeSet;
use std::path::Path;

type Edges = BTreeSet<(String, String)>;

/// A Mermaid node id as the crate it stands for (ids use `_` where crate names use `-`).
fn crate_name(id: &str) -> String {
    id.replace('_', "-")
}

/// The id at the start of `text` (letters, digits, `_`), and the rest after its `["label"]`.
fn node(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    let (id, mut rest) = text.split_at(end);
    if let Some(label) = rest.strip_prefix('[') {
        rest = &label[label.find(']')? + 1..];
    }
    Some((id, rest))
}

/// The crates (nodes) and solid edges of the first ```mermaid block in `markdown`.
fn picture(markdown: &str) -> (BTreeSet<String>, Edges) {
    let block = markdown
        .split("```mermaid")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/STRUCTURE.md has a ```mermaid block");
    let mut nodes = BTreeSet::new();
    let mut edges = Edges::new();
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("graph") || line.starts_with("%%") {
            continue;
        }
        let (from, rest) = node(line).unwrap_or_else(|| panic!("no node in {line:?}"));
        nodes.insert(crate_name(from));
        let rest = rest.trim_start();
        if let Some(target) = rest.strip_prefix("-->") {
            let (to, tail) = node(target).unwrap_or_else(|| panic!("no target in {line:?}"));
            assert!(tail.trim().is_empty(), "one edge per line: {line:?}");
            nodes.insert(crate_name(to));
            edges.insert((crate_name(from), crate_name(to)));
        } else {
            assert!(
                rest.is_empty() || rest.starts_with("-."),
                "a node, a solid edge or a dotted one: {line:?}"
            );
        }
    }
    (nodes, edges)
}

/// The workspace's crates and the dependencies between them, from cargo itself.
fn workspace() -> (BTreeSet<String>, Edges) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|package| package["name"].as_str().expect("a name").to_owned())
        .collect();
    let mut edges = Edges::new();
    for package in packages {
        let name = package["name"].as_str().expect("a name");
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let on = dependency["name"].as_str().expect("a dependency name");
            if members.contains(on) {
                edges.insert((name.to_owned(), on.to_owned()));
            }
        }
    }
    (members, edges)
}

#[test]
fn the_crate_picture_is_the_workspace() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/STRUCTURE.md");
    let markdown = std::fs::read_to_string(&path).expect("docs/STRUCTURE.md");
    let (drawn_crates, drawn_edges) = picture(&markdown);
    let (crates, edges) = workspace();
    assert_eq!(drawn_crates, crates, "the picture's crates");
    assert_eq!(drawn_edges, edges, "the picture's arrows");
    // The architecture's own rules, which the picture shows.
    assert!(edges.iter().all(|(from, _)| from != "treemux-core"));
    assert!(!edges.contains(&("treemux-functions".into(), "treemux-worker".into())));
}

/// The parser reads what it is meant to, and a missing arrow is caught.
#[test]
fn the_picture_parser_reads_nodes_and_solid_edges_only() {
    let markdown = "x\n```mermaid\ngraph TD\n    a_b[\"a-b (x/)<br/>y\"]\n    c\n    a_b --> c\n    c -. \"runs\" .-> a_b\n```\n";
    let (nodes, edges) = picture(markdown);
    assert_eq!(nodes, BTreeSet::from(["a-b".to_owned(), "c".to_owned()]));
    assert_eq!(edges, Edges::from([("a-b".to_owned(), "c".to_owned())]));
    let (_, none) = picture("```mermaid\ngraph TD\n    a\n    c\n```");
    assert_ne!(none, edges);
}

/// Longest a Rust source file may grow (lines): past this it holds several jobs (issue 14).
const MAX_SOURCE_LINES: usize = 650;

/// Every `.rs` file of the workspace's crates (sources and tests), relative to the root.
fn rust_sources(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending: Vec<std::path::PathBuf> = ["src", "tests", "core", "functions", "worker"]
        .iter()
        .map(|dir| root.join(dir))
        .collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                // Build output and npm packages hold no source of ours.
                if name != "target" && name != "node_modules" {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn sources_stay_small_and_log_through_tracing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = rust_sources(root);
    assert!(
        sources.iter().any(|path| path.ends_with("core/src/lib.rs")),
        "the walk finds the core: {sources:?}"
    );
    let mut too_long = Vec::new();
    let mut printing = Vec::new();
    for path in &sources {
        let text = std::fs::read_to_string(root.join(path)).expect("a readable source");
        let lines = text.lines().count();
        if lines > MAX_SOURCE_LINES {
            too_long.push(format!("{} ({lines} lines)", path.display()));
        }
        // The CLI's last-resort error print is the one `eprintln!` allowed (src/main.rs).
        let prints = text
            .lines()
            .filter(|line| {
                !line.trim_start().starts_with("//") && line.contains(concat!("eprint", "ln!("))
            })
            .count();
        if prints > 0 && path != Path::new("src/main.rs") {
            printing.push(format!("{} ({prints})", path.display()));
        }
    }
    assert!(
        too_long.is_empty(),
        "split these by responsibility (over {MAX_SOURCE_LINES} lines): {too_long:?}"
    );
    assert!(
        printing.is_empty(),
        "log with tracing (or println! in a test's summary), not eprintln!: {printing:?}"
    );
}
