//! Project automation for sockeye, run as `cargo xtask <command>`.
//!
//! Only std and serde_json: the commands shell out to cargo, wstest and
//! cargo-fuzz, printing each command before running it.

mod autobahn;
mod bench;
mod ci;
mod fuzz;
mod system;
mod test;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

use util::Result;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test                         run every unit, integration and doc test (cargo test --locked)
  autobahn [server|client|all] run the Autobahn TestSuite (default: all)
      --cases PATTERN          only run matching cases, e.g. `1.*` or `6.4.3`
      --update-expected        record the results in autobahn/expected-results-*.json
  fuzz [--secs N] [--jobs N] [TARGET]
                               build and run the cargo-fuzz targets (default: 30 s each,
                               all, one at a time per core)
  bench [--quick] [--servers a,b] [--scenarios x,y]
                               the load benchmark against peer crates (results in benches/results/);
                               scenario crossnode starts redis-server and nats-server (installed
                               with apt when missing) for two pubsub_server nodes on each
      --micro                  the criterion micro-benchmarks instead
  ci                           test, fmt, clippy, doc, no-default-features check, autobahn, fuzz
  help                         show this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result {
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return Err("no command given".into());
        }
    };
    let no_args = || match rest.first() {
        Some(arg) => Err(format!("{command}: unexpected argument `{arg}`")),
        None => Ok(()),
    };
    match command {
        "test" => {
            no_args()?;
            test::run_tests()
        }
        "autobahn" => autobahn::run_autobahn(&autobahn::Options::parse(rest)?),
        "fuzz" => fuzz::run_fuzz(&fuzz::Options::parse(rest)?),
        "bench" => bench::run_bench(rest),
        "ci" => {
            no_args()?;
            ci::run_ci()
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            Err(format!("unknown command `{other}`").into())
        }
    }
}
