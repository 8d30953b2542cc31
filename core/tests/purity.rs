//! The core is pure: no file, environment, network, thread, lock, atomic, clock or sleep
//! anywhere under `core/src` (tests included). Time comes in as an argument and effects go out
//! as data; whatever concurrency a client needs belongs to its driver.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::env",
    "std::net",
    "std::thread",
    "thread_local!",
    "Mutex",
    "RwLock",
    "Condvar",
    "atomic::",
    "Atomic",
    "SystemTime::now",
    "Instant::now",
    "sleep(",
    "std::process",
];

fn visit(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, found);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
}

#[test]
fn core_src_does_no_io_reads_no_clock_and_holds_no_lock() {
    let mut found = Vec::new();
    visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut found);
    assert!(found.is_empty(), "the core must stay pure:\n{}", found.join("\n"));
}
