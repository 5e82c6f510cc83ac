//! `cargo xtask ci`: every CI stage in order, stopping at the first failure,
//! with a timing table at the end. Add a stage by adding a row to [`STAGES`].

use std::time::Instant;

use crate::util::{Result, cargo_cmd, run};
use crate::{autobahn, fuzz, test};

/// One CI step: a name for the table and what it runs.
struct Stage {
    name: &'static str,
    run: fn() -> Result,
}

const STAGES: &[Stage] = &[
    Stage {
        name: "test",
        run: test::run_tests,
    },
    Stage {
        name: "fmt",
        run: || run(&mut cargo_cmd(["fmt", "--all", "--", "--check"])),
    },
    Stage {
        name: "clippy",
        run: || {
            run(&mut cargo_cmd([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]))
        },
    },
    Stage {
        name: "doc",
        run: || {
            let mut cmd = cargo_cmd([
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--locked",
            ]);
            run(cmd.env("RUSTDOCFLAGS", "-D warnings"))
        },
    },
    Stage {
        name: "no-default-features",
        run: || {
            // The sans-IO core alone, the hyper crate without TLS, and the
            // hub without hyper (bring your own sockets).
            for krate in ["sockeye-proto", "sockeye-hyper", "sockeye-pubsub"] {
                run(&mut cargo_cmd([
                    "check",
                    "-p",
                    krate,
                    "--no-default-features",
                    "--locked",
                ]))?;
            }
            Ok(())
        },
    },
    Stage {
        name: "autobahn",
        run: || autobahn::run_autobahn(&autobahn::Options::all()),
    },
    Stage {
        name: "fuzz",
        run: || fuzz::run_fuzz(&fuzz::Options::default()),
    },
];

/// Runs [`STAGES`] until one fails, then prints how long each took.
pub(crate) fn run_ci() -> Result {
    let mut timings = Vec::new();
    let mut failure = None;
    for stage in STAGES {
        println!("\n==== ci: {} ====", stage.name);
        let start = Instant::now();
        let result = (stage.run)();
        timings.push((stage.name, start.elapsed().as_secs_f64(), result.is_ok()));
        if let Err(e) = result {
            failure = Some(format!("stage `{}` failed: {e}", stage.name));
            break;
        }
    }
    let width = STAGES.iter().map(|s| s.name.len()).max().unwrap_or(5);
    println!("\n{:width$}  {:>8}  result", "stage", "seconds");
    for stage in STAGES {
        match timings.iter().find(|(name, ..)| *name == stage.name) {
            Some((_, secs, ok)) => {
                let verdict = if *ok { "ok" } else { "FAILED" };
                println!("{:width$}  {secs:>8.1}  {verdict}", stage.name);
            }
            None => println!("{:width$}  {:>8}  skipped", stage.name, "-"),
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
