//! Repository policy checks, run as ordinary tests by `cargo test`.
//!
//! Crates that do not exist yet are skipped; the sans-IO core must exist.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{project_root, rel};

/// Every `.rs` file below `dir`, sorted, skipping hidden and `target` dirs and
/// any directory for which `skip` says so.
fn rust_files(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && !skip(&path) {
                files.extend(rust_files(&path, skip));
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source with comments removed and string/char literal contents blanked,
/// split into lines that keep their original numbering.
fn code_lines(src: &str) -> Vec<String> {
    let s: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(s[i - 1]);
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if s[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' && i + 1 < s.len() {
                    out.push(' ');
                    i += 1;
                }
                out.push(blank(s[i]));
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if let Some(hashes) = raw_string_start(&s, i).filter(|_| !prev_ident) {
            // r"..", r#".."#, br"..", cr"..": blank up to the matching quote and hashes.
            while s[i] != '"' {
                out.push(s[i]);
                i += 1;
            }
            out.push('"');
            i += 1;
            while i < s.len() {
                if s[i] == '"' && (1..=hashes).all(|k| s.get(i + k) == Some(&'#')) {
                    break;
                }
                out.push(blank(s[i]));
                i += 1;
            }
            out.push('"');
            i += 1 + hashes;
        } else if c == '\'' && (next == Some('\\') || s.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            let mut j = if next == Some('\\') { i + 3 } else { i + 2 };
            while j < s.len() && s[j] != '\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.lines().map(str::to_owned).collect()
}

/// The number of `#`s if a raw string literal starts at `i`.
fn raw_string_start(s: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(s.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if s.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&c| c == '#').count();
    (s.get(j + hashes) == Some(&'"')).then_some(hashes)
}

/// Whether `word` occurs in `line` with no identifier characters around it.
fn contains_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn fail_if_any(what: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{what}:\n  {}",
        violations.join("\n  ")
    );
}

fn proto_src() -> PathBuf {
    let src = project_root().join("crates/sockeye-proto/src");
    assert!(src.is_dir(), "{} is missing", src.display());
    src
}

/// The crate directories under `crates/`, sorted.
fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(project_root().join("crates"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("Cargo.toml").is_file());
    dirs.sort();
    dirs
}

/// Files of modules declared only under `#[cfg(test)]` (`#[cfg(test)]` on
/// the line before `mod name;`), resolved next to the declaring file.
fn test_only_modules(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs") => file.parent().map(Path::to_path_buf),
            _ => file
                .parent()
                .map(|p| p.join(file.file_stem().unwrap_or_default())),
        };
        let Some(dir) = dir else { continue };
        let lines = code_lines(&read(file));
        for pair in lines.windows(2) {
            let decl = pair[1].trim();
            let name = decl
                .strip_prefix("pub(crate) mod ")
                .or_else(|| decl.strip_prefix("mod "))
                .and_then(|rest| rest.strip_suffix(';'));
            if let (true, Some(name)) = (pair[0].trim() == "#[cfg(test)]", name) {
                out.push(dir.join(format!("{name}.rs")));
                out.push(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

#[test]
fn sans_io_core_has_no_tokio_or_clock() {
    let src = proto_src();
    let io_dir = src.join("io");
    let mut violations = Vec::new();
    let files = rust_files(&src, &|d| d == io_dir);
    let test_only = test_only_modules(&files);
    for file in files {
        // `io.rs` is the root of the `io` module, i.e. part of the driver;
        // test-only modules may take the time to start a simulated clock.
        if file == src.join("io.rs") || test_only.contains(&file) {
            continue;
        }
        let lines = code_lines(&read(&file));
        // Inline `#[cfg(test)]` modules close the file by convention.
        let end = lines
            .iter()
            .position(|l| l.trim() == "#[cfg(test)]")
            .unwrap_or(lines.len());
        for (n, line) in lines[..end].iter().enumerate() {
            let tokio = line
                .split(|c: char| !is_ident(c))
                .any(|w| w == "tokio" || w.starts_with("tokio_"));
            let compact: String = line.split_whitespace().collect();
            let clock = ["Instant::now", "SystemTime::now"]
                .iter()
                .any(|w| contains_word(&compact, w));
            if tokio || clock {
                violations.push(format!("{}:{}: {}", rel(&file), n + 1, line.trim()));
            }
        }
    }
    fail_if_any(
        "tokio or a clock used outside crates/sockeye-proto/src/io/",
        &violations,
    );
}

#[test]
fn every_member_uses_workspace_lints() {
    let root = project_root();
    let mut manifests: Vec<PathBuf> = crate_dirs().iter().map(|d| d.join("Cargo.toml")).collect();
    for dir in ["examples", "xtask", "benches"] {
        manifests.push(root.join(dir).join("Cargo.toml"));
    }
    let mut violations = Vec::new();
    for manifest in manifests.iter().filter(|m| m.is_file()) {
        let text = read(manifest);
        let mut in_lints = false;
        let mut ok = false;
        for line in text.lines() {
            let line: String = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            if line.starts_with('[') {
                in_lints = line == "[lints]";
            } else if in_lints && line == "workspace=true" {
                ok = true;
            }
        }
        if !ok {
            violations.push(rel(manifest));
        }
    }
    fail_if_any("manifests without `[lints] workspace = true`", &violations);
}

#[test]
fn no_placeholders_in_shipped_code() {
    let root = project_root();
    // Spelled in pieces, so this list is not itself a match.
    let patterns = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("XX", "X"),
        concat!("FIX", "ME"),
    ];
    let mut violations = Vec::new();
    for dir in ["crates", "examples", "xtask"] {
        let skip_tests = |d: &Path| d.file_name().is_some_and(|n| n == "tests");
        for file in rust_files(&root.join(dir), &skip_tests) {
            for (n, line) in read(&file).lines().enumerate() {
                if patterns.iter().any(|p| line.contains(p)) {
                    violations.push(format!("{}:{}: {}", rel(&file), n + 1, line.trim()));
                }
            }
        }
    }
    fail_if_any("placeholders in shipped code", &violations);
}

#[test]
fn unsafe_only_in_mask() {
    let mask = proto_src().join("mask.rs");
    let mut violations = Vec::new();
    for file in rust_files(&project_root().join("crates"), &|_| false) {
        if file == mask {
            continue;
        }
        for (n, line) in code_lines(&read(&file)).iter().enumerate() {
            if contains_word(line, "unsafe") {
                violations.push(format!("{}:{}: {}", rel(&file), n + 1, line.trim()));
            }
        }
    }
    for dir in crate_dirs() {
        let lib = dir.join("src/lib.rs");
        if dir.ends_with("sockeye-proto") || !lib.is_file() {
            continue;
        }
        let code: String = code_lines(&read(&lib))
            .concat()
            .split_whitespace()
            .collect();
        let forbids = code.split("#![forbid(").skip(1).any(|rest| {
            let list = rest.split(")]").next().unwrap_or("");
            list.split(',').any(|lint| lint == "unsafe_code")
        });
        if !forbids {
            violations.push(format!("{}: missing #![forbid(unsafe_code)]", rel(&lib)));
        }
    }
    fail_if_any(
        "unsafe outside crates/sockeye-proto/src/mask.rs",
        &violations,
    );
}

#[test]
fn code_lines_strip_comments_and_literals() {
    let src = r###"let a = "tokio"; // tokio
/* unsafe
   /* nested */ unsafe */ let b = 'x';
let c = r#"unsafe "q" "#; let d = '"'; fn f<'a>(x: &'a str) {}
let e = "multi
line unsafe"; let g = b'\''; unsafe {}
/// docs about tokio
"###;
    let lines = code_lines(src);
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0].trim_end(), r#"let a = "     ";"#);
    assert_eq!(lines[1], "");
    assert_eq!(lines[2].trim(), "let b = ' ';");
    assert!(lines[3].contains("fn f<'a>(x: &'a str)"));
    assert!(!lines[3].contains("unsafe"));
    assert!(!lines[4].contains("unsafe"));
    assert!(lines[5].contains("unsafe {}"));
    assert_eq!(lines[6], "");
}

#[test]
fn word_matching() {
    assert!(contains_word("unsafe {", "unsafe"));
    assert!(!contains_word("#![forbid(unsafe_code)]", "unsafe"));
    assert!(contains_word("std::time::Instant::now()", "Instant::now"));
    assert!(!contains_word("MyInstant::now()", "Instant::now"));
}

/// One build target as `cargo metadata` describes it, with what the test
/// command does to it.
#[derive(Debug)]
struct Target {
    /// Directory the target's root file sits in: files below it belong to it.
    root_dir: PathBuf,
    src_path: PathBuf,
    /// Whether `cargo test` on [`crate::test::TEST_TARGETS`] runs the
    /// target's `#[test]` functions.
    tested: bool,
}

/// Names of the targets the manifest declares with `harness = false`, per
/// section (`bench`, `test`, `example`, `bin`): their `#[test]` functions are
/// never run, the target's own `main` is.
fn harnessless(manifest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut name: Option<String> = None;
    let mut no_harness = false;
    let mut flush = |section: &Option<String>, name: &mut Option<String>, no_harness: &mut bool| {
        if let (Some(kind), Some(n), true) = (section, name.take(), *no_harness) {
            out.push((kind.clone(), n));
        }
        *no_harness = false;
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&section, &mut name, &mut no_harness);
            section = line
                .strip_prefix("[[")
                .and_then(|l| l.strip_suffix("]]"))
                .map(|s| s.trim().to_owned());
        } else if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "name" => name = Some(value.to_owned()),
                "harness" => no_harness = value == "false",
                _ => {}
            }
        }
    }
    flush(&section, &mut name, &mut no_harness);
    out
}

/// The targets of every workspace member, from `cargo metadata` output, with
/// `manifest` giving each package's `Cargo.toml` text.
fn targets(metadata: &serde_json::Value, manifest: &dyn Fn(&Path) -> String) -> Vec<Target> {
    let mut out = Vec::new();
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    for package in &packages {
        let manifest_path = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let no_harness = harnessless(&manifest(&manifest_path));
        for target in package["targets"].as_array().cloned().unwrap_or_default() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .map(|k| k.iter().filter_map(serde_json::Value::as_str).collect())
                .unwrap_or_default();
            let name = target["name"].as_str().unwrap_or_default();
            let src_path = PathBuf::from(target["src_path"].as_str().unwrap_or_default());
            // `--all-targets` builds every example and bench with the test
            // harness; libraries, binaries and tests unless `test = false`.
            let selected = kinds.iter().any(|k| matches!(*k, "example" | "bench"))
                || (target["test"].as_bool() == Some(true)
                    && kinds
                        .iter()
                        .any(|k| matches!(*k, "lib" | "rlib" | "proc-macro" | "bin" | "test")));
            let harness = !no_harness
                .iter()
                .any(|(kind, n)| n == name && kinds.contains(&kind.as_str()));
            out.push(Target {
                root_dir: src_path.parent().map(Path::to_path_buf).unwrap_or_default(),
                src_path,
                tested: selected && harness,
            });
        }
    }
    out
}

/// Files holding `#[cfg(test)]` code that no tested target owns. A file is
/// owned by the target whose root file it is, else by the targets whose root
/// directory is its longest prefix (one of them tested is enough).
fn untested_files(files: &[(PathBuf, String)], targets: &[Target]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (file, src) in files {
        if !code_lines(src).iter().any(|l| l.contains("#[cfg(test)]")) {
            continue;
        }
        let exact: Vec<&Target> = targets.iter().filter(|t| &t.src_path == file).collect();
        let owners = if exact.is_empty() {
            let depth = targets
                .iter()
                .filter(|t| file.starts_with(&t.root_dir))
                .map(|t| t.root_dir.components().count())
                .max();
            targets
                .iter()
                .filter(|t| {
                    file.starts_with(&t.root_dir) && Some(t.root_dir.components().count()) == depth
                })
                .collect()
        } else {
            exact
        };
        if !owners.iter().any(|t| t.tested) {
            out.push(file.clone());
        }
    }
    out
}

#[test]
fn every_test_module_is_run() {
    for flag in ["--workspace", "--all-targets"] {
        assert!(
            crate::test::TEST_TARGETS.contains(&flag),
            "the test command lacks {flag}"
        );
    }
    let root = project_root();
    let output = std::process::Command::new(crate::util::cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let targets = targets(&metadata, &|p| read(p));
    // Everything below the root, the separate fuzz workspace included: a
    // test module there is not run by the test command either.
    let files: Vec<(PathBuf, String)> = rust_files(&root, &|_| false)
        .into_iter()
        .map(|f| {
            let src = read(&f);
            (f, src)
        })
        .collect();
    let untested: Vec<String> = untested_files(&files, &targets)
        .iter()
        .map(|f| rel(f))
        .collect();
    fail_if_any(
        "#[cfg(test)] code in files that `cargo xtask test` does not run",
        &untested,
    );
}

#[test]
fn untested_files_finds_harnessless_and_unselected_targets() {
    let metadata = serde_json::json!({"packages": [{
        "manifest_path": "/w/p/Cargo.toml",
        "targets": [
            {"kind": ["lib"], "name": "p", "src_path": "/w/p/src/lib.rs", "test": true},
            {"kind": ["bin"], "name": "tool", "src_path": "/w/p/src/bin/tool.rs", "test": false},
            {"kind": ["example"], "name": "demo", "src_path": "/w/p/examples/demo/main.rs", "test": false},
            {"kind": ["bench"], "name": "speed", "src_path": "/w/p/benches/speed.rs", "test": false},
        ],
    }]});
    let manifest = |_: &Path| {
        "[package]\nname = \"p\"\n\n[[bench]]\nname = \"speed\"\nharness = false\n".to_owned()
    };
    let targets = targets(&metadata, &manifest);
    let test_mod = "#[cfg(test)]\nmod tests {}\n".to_owned();
    let files: Vec<(PathBuf, String)> = [
        "/w/p/src/lib.rs",
        "/w/p/src/deep/mod.rs",
        "/w/p/src/bin/tool.rs",
        "/w/p/examples/demo/main.rs",
        "/w/p/examples/demo/part.rs",
        "/w/p/benches/speed.rs",
        "/w/other/src/lib.rs",
    ]
    .iter()
    .map(|f| (PathBuf::from(f), test_mod.clone()))
    .chain([(PathBuf::from("/w/p/src/plain.rs"), "fn f() {}\n".to_owned())])
    .collect();
    let untested = untested_files(&files, &targets);
    let expected: Vec<PathBuf> = [
        "/w/p/src/bin/tool.rs",
        "/w/p/benches/speed.rs",
        "/w/other/src/lib.rs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(untested, expected);
}
