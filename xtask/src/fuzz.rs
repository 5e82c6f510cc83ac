//! `cargo xtask fuzz`: builds every cargo-fuzz target in `fuzz/` and runs each
//! for a fixed time on its corpus and committed seeds, summarising libFuzzer's stats.
//! libFuzzer is single-threaded, so targets run side by side, one per core.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;

use crate::util::{Result, cargo_cmd, display_cmd, probe, project_root, rel, run, target_dir};

/// Parsed `cargo xtask fuzz` arguments.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) secs: u64,
    /// How many targets run at once (default: one per core).
    pub(crate) jobs: usize,
    pub(crate) target: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secs: 30,
            jobs: thread::available_parallelism().map_or(1, |n| n.get()),
            target: None,
        }
    }
}

/// The value of `--name V` or `--name=V`, if `arg` is that option.
fn option_value<'a>(
    name: &str,
    arg: &'a str,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<Option<&'a str>> {
    if arg == name {
        let value = rest.next().ok_or(format!("{name} needs a number"))?;
        Ok(Some(value.as_str()))
    } else {
        Ok(arg.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    }
}

impl Options {
    /// `[--secs N] [--jobs N] [TARGET]`
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if let Some(secs) = option_value("--secs", arg, &mut args)? {
                opts.secs = secs
                    .parse()
                    .map_err(|_| format!("--secs: not a number of seconds: {secs}"))?;
            } else if let Some(jobs) = option_value("--jobs", arg, &mut args)? {
                opts.jobs = jobs
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--jobs: not a positive number: {jobs}"))?;
            } else if arg.starts_with('-') || opts.target.is_some() {
                return Err(format!("fuzz: unexpected argument `{arg}`").into());
            } else {
                opts.target = Some(arg.clone());
            }
        }
        Ok(opts)
    }
}

/// What libFuzzer reported for one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Stats {
    executions: Option<u64>,
    coverage: Option<u64>,
    corpus: Option<u64>,
    artifacts: Vec<String>,
}

/// Picks the final stats out of libFuzzer's stderr.
fn parse_stats(log: &str) -> Stats {
    let mut stats = Stats::default();
    for line in log.lines() {
        if let Some(n) = line.trim().strip_prefix("stat::number_of_executed_units:") {
            stats.executions = n.trim().parse().ok().or(stats.executions);
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            stats.artifacts.push(path.trim().to_owned());
        }
        if line.starts_with('#') {
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                let value = words.clone().next();
                match (word, value) {
                    ("cov:", Some(v)) => stats.coverage = v.parse().ok().or(stats.coverage),
                    ("corp:", Some(v)) => {
                        let n = v.split('/').next().unwrap_or(v);
                        stats.corpus = n.parse().ok().or(stats.corpus);
                    }
                    _ => {}
                }
            }
        }
    }
    stats
}

fn fuzz_dir() -> PathBuf {
    project_root().join("fuzz")
}

/// The file stems of `fuzz/fuzz_targets/*.rs`, sorted.
fn list_targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let entries =
        fs::read_dir(&dir).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
    let mut targets = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

fn cargo_fuzz<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    let mut cmd = cargo_cmd(["fuzz"]);
    // cargo-fuzz needs nightly flags (sanitizers, sancov) on the stable toolchain.
    cmd.args(args).env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Builds and runs the fuzz targets; fails if any target finds a crash.
pub(crate) fn run_fuzz(opts: &Options) -> Result {
    if !probe(cargo_cmd(["fuzz", "--version"]).env("RUSTC_BOOTSTRAP", "1")) {
        println!("cargo-fuzz is not installed; installing it");
        run(&mut cargo_cmd(["install", "cargo-fuzz", "--locked"]))?;
    }
    let all = list_targets()?;
    let targets = match &opts.target {
        None if all.is_empty() => return Err("no fuzz targets in fuzz/fuzz_targets/".into()),
        None => all,
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => return Err(format!("unknown fuzz target `{t}` (have: {all:?})").into()),
    };
    let mut build = cargo_fuzz(["build", "-O"]);
    if let Some(t) = &opts.target {
        build.arg(t);
    }
    run(&mut build)?;

    let logs = target_dir().join("fuzz-logs");
    fs::create_dir_all(&logs)?;
    // Workers take the next target off the queue until it is empty.
    let queue = Mutex::new(targets.iter());
    let failures = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..opts.jobs.min(targets.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.next());
                    let Ok(Some(target)) = next else { return };
                    let log = logs.join(format!("{target}.log"));
                    if let Err(e) = fuzz_one(target, opts.secs, &log)
                        && let Ok(mut f) = failures.lock()
                    {
                        f.push(format!("{target}: {e}"));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzzing failed:\n  {}", failures.join("\n  ")).into())
    }
}

fn fuzz_one(target: &str, secs: u64, log_path: &Path) -> Result {
    let corpus = format!("fuzz/corpus/{target}");
    let seeds = format!("fuzz/seeds/{target}");
    fs::create_dir_all(project_root().join(&corpus))?;
    let mut cmd = cargo_fuzz(["run", "-O", target, &corpus]);
    if project_root().join(&seeds).is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--").args([
        format!("-max_total_time={secs}"),
        // libFuzzer's own tables take ~250 MiB; the hub target (a runtime
        // and a hub per input) peaks near 450 MiB. Growth past 1 GiB is a
        // leak worth a report.
        "-rss_limit_mb=1024".to_owned(),
        "-timeout=10".to_owned(),
        "-print_final_stats=1".to_owned(),
    ]);
    let log = File::create(log_path)
        .map_err(|e| format!("could not create {}: {e}", log_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    println!("{}    > {}", display_cmd(&cmd), rel(log_path));
    let status = cmd.status()?;

    let text = fs::read_to_string(log_path).unwrap_or_default();
    let stats = parse_stats(&text);
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let verdict = if status.success() { "OK" } else { "CRASH" };
    println!(
        "fuzz {target}: {verdict}  executions {}  cov {}  corpus {}",
        show(stats.executions),
        show(stats.coverage),
        show(stats.corpus)
    );
    if status.success() {
        return Ok(());
    }
    // One write, so a target running beside this one does not interleave.
    let mut tail: Vec<&str> = text.lines().rev().take(40).collect();
    tail.reverse();
    eprintln!(
        "--- last lines of {} ---\n{}",
        rel(log_path),
        tail.join("\n")
    );
    let artifacts = if stats.artifacts.is_empty() {
        format!("no artifact reported; see {}", rel(log_path))
    } else {
        format!("artifact {}", stats.artifacts.join(", "))
    };
    Err(format!("exited with {status}; {artifacts}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
INFO: Seed: 1234
#2\tINITED cov: 120 ft: 130 corp: 1/1b exec/s: 0 rss: 30Mb
#1024\tpulse  cov: 300 ft: 410 corp: 25/900b lim: 14 exec/s: 512 rss: 40Mb
#1500\tNEW    cov: 305 ft: 420 corp: 26/950b lim: 14 exec/s: 500 rss: 41Mb L: 9/14 MS: 1 CopyPart-
#90210\tDONE   cov: 310 ft: 433 corp: 27/1Kb lim: 100 exec/s: 3007 rss: 60Mb
Done 90210 runs in 31 second(s)
stat::number_of_executed_units: 90210
stat::average_exec_per_sec:     2910
stat::new_units_added:          26
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              60
";

    #[test]
    fn final_stats_are_parsed() {
        let stats = parse_stats(LOG);
        assert_eq!(stats.executions, Some(90210));
        assert_eq!(stats.coverage, Some(310));
        assert_eq!(stats.corpus, Some(27));
        assert!(stats.artifacts.is_empty());
    }

    #[test]
    fn crash_artifact_is_found() {
        let log = "\
#5\tINITED cov: 12 ft: 13 corp: 3/7b exec/s: 0 rss: 30Mb
==1==ERROR: libFuzzer: deadly signal
MS: 2 ChangeBit-InsertByte-; base unit: 0000
artifact_prefix='/w/fuzz/artifacts/frame/'; Test unit written to /w/fuzz/artifacts/frame/crash-ab12
stat::number_of_executed_units: 77
";
        let stats = parse_stats(log);
        assert_eq!(stats.artifacts, ["/w/fuzz/artifacts/frame/crash-ab12"]);
        assert_eq!(stats.executions, Some(77));
        assert_eq!(stats.coverage, Some(12));
        assert_eq!(stats.corpus, Some(3));
    }

    #[test]
    fn empty_log_has_no_stats() {
        assert_eq!(parse_stats(""), Stats::default());
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            Options::parse(&args)
        };
        let o = parse(&[]).unwrap();
        assert_eq!((o.secs, o.target), (30, None));
        let o = parse(&["--secs", "5", "frame"]).unwrap();
        assert_eq!((o.secs, o.target.as_deref()), (5, Some("frame")));
        assert_eq!(parse(&["--secs=7"]).unwrap().secs, 7);
        assert!(parse(&["--secs", "x"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["--secs"]).is_err());
        assert_eq!(parse(&["--jobs", "3"]).unwrap().jobs, 3);
        assert_eq!(parse(&["--jobs=1", "frame"]).unwrap().jobs, 1);
        assert!(parse(&["--jobs", "0"]).is_err());
        assert!(parse(&["--jobsx"]).is_err());
        assert!(parse(&["--threads", "2"]).is_err());
        assert!(parse(&[]).unwrap().jobs >= 1);
    }
}
