//! The README's Rust programs are the quick-start examples byte for byte, so what it shows is what
//! `cargo test` and clippy compile and what `examples.rs` runs against the fake registry: a reader
//! can paste it as it is (no hidden `# ` lines). Its `Cargo.toml` lines name exactly the crates
//! each program uses, at the version the workspace publishes.

use std::path::PathBuf;

/// The workspace root. `CARGO_MANIFEST_DIR` is read at run time when set (cargo sets it), so the
/// built test can also check another checkout.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest_dir).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fenced blocks of a markdown text: `(info string, content)`.
fn fenced_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim_end();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.to_owned(), String::new()));
                }
            }
            Some((info, content)) if trimmed == "```" => blocks.push((info, content)),
            Some((info, mut content)) => {
                content.push_str(line);
                open = Some((info, content));
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    blocks
}

/// The text of the `## heading` section, up to the next `## `.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    &rest[..end]
}

/// `(section, example file)`: each section's program.
const PROGRAMS: [(&str, &str); 2] = [
    (
        "Using the SDK from blocking Rust",
        "transport-ureq/examples/ureq_quickstart.rs",
    ),
    (
        "Using the SDK from async Rust",
        "transport-reqwest/examples/reqwest_quickstart.rs",
    ),
];

fn blocks_of(readme: &str, heading: &str, info: &str) -> Vec<String> {
    fenced_blocks(section(readme, heading))
        .into_iter()
        .filter(|(i, _)| i == info)
        .map(|(_, content)| content)
        .collect()
}

#[test]
fn readme_rust_programs_are_the_quickstart_examples() {
    let readme = read("README.md");
    for (heading, file) in PROGRAMS {
        let programs = blocks_of(&readme, heading, "rust");
        assert_eq!(programs.len(), 1, "{heading}: one Rust block");
        assert!(
            programs[0] == read(file),
            "the README's {heading:?} block differs from {file}: copy the file into the README"
        );
    }
}

#[test]
fn readme_rust_blocks_have_no_hidden_lines_and_are_all_tested() {
    let readme = read("README.md");
    let blocks: Vec<String> = fenced_blocks(&readme)
        .into_iter()
        .filter(|(info, _)| info.starts_with("rust"))
        .map(|(_, content)| content)
        .collect();
    for line in blocks.iter().flat_map(|block| block.lines()) {
        let trimmed = line.trim_start();
        assert!(
            !(trimmed == "#" || trimmed.starts_with("# ")),
            "a rustdoc hidden line does not compile when pasted: {line:?}"
        );
    }
    let programs: Vec<String> = PROGRAMS.iter().map(|(_, file)| read(file)).collect();
    for block in blocks {
        assert!(
            programs.contains(&block),
            "every Rust block of the README is one of the tested examples:\n{block}"
        );
    }
}

/// The `[dependencies]` lines of a `Cargo.toml` block: `name -> the rest of the line`.
fn dependencies(toml: &str) -> Vec<(String, String)> {
    let mut lines = toml.lines();
    assert_eq!(lines.next(), Some("[dependencies]"));
    lines
        .map(|line| {
            let (name, spec) = line.split_once(" = ").unwrap_or_else(|| panic!("{line:?}"));
            (name.to_owned(), spec.to_owned())
        })
        .collect()
}

#[test]
fn readme_cargo_toml_lines_are_what_each_program_uses() {
    let readme = read("README.md");
    let root_manifest = read("Cargo.toml");
    let workspace_version = root_manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("[workspace.package] version");
    let published = ["icr-app-core", "icr-app-ureq", "icr-app-reqwest", "icr-app-testkit"];
    for (member, name) in [
        ("core", published[0]),
        ("transport-ureq", published[1]),
        ("transport-reqwest", published[2]),
        ("testkit", published[3]),
    ] {
        assert!(read(&format!("{member}/Cargo.toml")).contains(&format!("\nname = \"{name}\"\n")));
    }

    for (heading, file) in PROGRAMS {
        let program = read(file);
        let tomls = blocks_of(&readme, heading, "toml");
        assert_eq!(tomls.len(), 1, "{heading}: one Cargo.toml block");
        let deps = dependencies(&tomls[0]);

        // Exactly the crates the program names.
        let mut used: Vec<&str> = published
            .iter()
            .copied()
            .chain(["serde_json", "tokio"])
            .filter(|name| program.contains(&format!("{}::", name.replace('-', "_"))))
            .collect();
        used.sort_unstable();
        let mut listed: Vec<&str> = deps.iter().map(|(name, _)| name.as_str()).collect();
        listed.sort_unstable();
        assert_eq!(listed, used, "{heading}");

        for (name, spec) in &deps {
            assert!(!spec.contains("path") && !spec.contains("git"), "{name} = {spec}");
            if published.contains(&name.as_str()) {
                // "0.1" accepts the workspace's 0.1.x.
                assert_eq!(spec, "\"0.1\"", "{name}");
                assert!(workspace_version.starts_with("0.1."), "{workspace_version}");
            }
        }
        if program.contains("#[tokio::main]") {
            let (_, tokio) = deps.iter().find(|(name, _)| name == "tokio").unwrap();
            // `#[tokio::main]` without a flavor is the multi-threaded runtime.
            for feature in ["\"macros\"", "\"rt-multi-thread\""] {
                assert!(tokio.contains(feature), "tokio needs {feature}: {tokio}");
            }
        }
    }
}
