//! Each published crate's front page (its `src/lib.rs` crate docs) opens with an example of what
//! the crate is for, and that example is a doctest that runs (`cargo test` runs it; `no_run`,
//! `ignore` or a `text` block would only show it). Links from a front page to another crate carry
//! their URL: an intra-doc link to another crate renders as plain text (no warning) when that
//! crate's docs are not built alongside, as with `cargo doc --no-deps`.

use std::path::PathBuf;

/// The workspace root. `CARGO_MANIFEST_DIR` is read at run time when set (cargo sets it), so the
/// built test can also check another checkout.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest_dir).join("..")
}

/// The crate docs of `member`: its `src/lib.rs`'s leading `//!` lines, without the `//!`.
fn front_page(member: &str) -> Vec<String> {
    let path = root().join(member).join("src/lib.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    source
        .lines()
        .map_while(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line).to_owned())
        .collect()
}

/// `(member, what its example must show, outside hidden lines)`.
const CRATES: [(&str, &[&str]); 6] = [
    ("core", &["AppKey::from_pem(", ".jwt(", "Step::Send", "Step::Done"]),
    ("settings", &["Settings::from_args(", ".app(", ".installation()"]),
    ("transport-ureq", &["FakeRegistry::demo()", ".installation_token("]),
    ("transport-reqwest", &["FakeRegistry::demo()", ".installation_token("]),
    ("testkit", &["FakeRegistry::demo()", ".mint_count("]),
    (
        "store-redis",
        &["RedisServer::start()", ".store(RedisStore::connect(", ".mint_count("],
    ),
];

#[test]
fn each_front_page_starts_with_a_runnable_example() {
    for (member, shows) in CRATES {
        let docs = front_page(member);
        let open = docs
            .iter()
            .position(|l| l.starts_with("```"))
            .unwrap_or_else(|| panic!("{member}: the front page has no example"));
        let info = docs[open].trim_start_matches('`');
        assert!(
            info.is_empty() || info == "rust",
            "{member}: the first example is ```{info}, which cargo test does not run"
        );
        // Before it: the title and one paragraph saying what the crate is.
        let paragraphs = docs[..open]
            .split(|l| l.trim().is_empty())
            .filter(|p| !p.is_empty())
            .count();
        assert!(
            paragraphs <= 2,
            "{member}: the example comes after {paragraphs} paragraphs"
        );

        let close = open + 1 + docs[open + 1..].iter().position(|l| l.starts_with("```")).unwrap();
        let visible: Vec<&str> = docs[open + 1..close]
            .iter()
            .map(String::as_str)
            .filter(|l| *l != "#" && !l.trim_start().starts_with("# "))
            .collect();
        let visible = visible.join("\n");
        for call in shows {
            assert!(
                visible.contains(call),
                "{member}: the example does not show {call}:\n{visible}"
            );
        }
    }
}

#[test]
fn front_pages_link_other_crates_by_url() {
    let others = ["http::", "icr_app_", "ureq::", "reqwest::", "tokio::", "serde_json::"];
    for (member, _) in CRATES {
        let mut in_code = false;
        for line in front_page(member) {
            if line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            // `[text]` or `` [`path`] `` not followed by `(url)`: an intra-doc link.
            let mut rest = line.as_str();
            while let Some(start) = rest.find('[') {
                let Some(len) = rest[start..].find(']') else { break };
                let target = rest[start + 1..start + len].trim_matches('`');
                let after = &rest[start + len + 1..];
                let is_intra_doc = !after.starts_with('(') && !after.starts_with('[');
                assert!(
                    !(is_intra_doc && others.iter().any(|o| target.starts_with(o))),
                    "{member}: [{target}] renders as plain text under `cargo doc --no-deps`; link it by URL: {line}"
                );
                rest = after;
            }
        }
    }
}
