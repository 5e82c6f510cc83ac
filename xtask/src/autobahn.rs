//! `cargo xtask autobahn`: the Autobahn TestSuite against the example echo
//! server (wstest as fuzzing client) and the example client (wstest as
//! fuzzing server), checked against the committed expected results.

mod install;
mod report;
mod spec;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use std::{fs, thread};

use crate::util::{
    ChildGuard, Result, cargo_cmd, free_port, project_root, read_file, rel, run, spawn, target_dir,
    write_file,
};

/// The agent name our server and client report under.
const AGENT: &str = "sockeye";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Which side of sockeye is tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// `echo_server` (hyper + UpgradeService), driven by `wstest -m fuzzingclient`.
    Server,
    /// `echo_server --raw` (sockeye-proto's own accept path), same driver.
    ServerRaw,
    /// `autobahn_client`, against `wstest -m fuzzingserver`.
    Client,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::ServerRaw => "server-raw",
            Side::Client => "client",
        }
    }

    /// The committed spec template, named after wstest's mode.
    fn template(self) -> &'static str {
        match self {
            Side::Server | Side::ServerRaw => "fuzzingclient.json",
            Side::Client => "fuzzingserver.json",
        }
    }

    fn outdir(self) -> PathBuf {
        autobahn_dir().join("reports").join(self.name())
    }

    /// The cases a side runs when `--cases` is not given. The raw accept
    /// path shares everything after the handshake with the hyper path, so it
    /// runs the protocol groups plus the compression cases that exercise its
    /// own negotiation (wstest is slow: the full compression groups take
    /// minutes per run).
    fn default_cases(self) -> Option<&'static [&'static str]> {
        const RAW: &[&str] = &[
            "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.1.*", "13.1.*",
            "13.5.*", "13.7.*",
        ];
        match self {
            Side::ServerRaw => Some(RAW),
            Side::Server | Side::Client => None,
        }
    }

    /// The log of this side's processes.
    fn log_file(self) -> PathBuf {
        target_dir()
            .join("autobahn")
            .join(format!("{}.log", self.name()))
    }

    /// Both server paths must give the same results.
    fn expected_file(self) -> PathBuf {
        let name = match self {
            Side::Server | Side::ServerRaw => "server",
            Side::Client => "client",
        };
        autobahn_dir().join(format!("expected-results-{name}.json"))
    }
}

/// Parsed `cargo xtask autobahn` arguments.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    server: bool,
    client: bool,
    cases: Option<String>,
    update_expected: bool,
}

impl Options {
    /// Everything, as CI runs it.
    pub(crate) fn all() -> Self {
        Options {
            server: true,
            client: true,
            ..Options::default()
        }
    }

    /// `[server|client|all] [--cases PATTERN] [--update-expected]`
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options::default();
        let mut mode = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--cases" => {
                    let pattern = args.next().ok_or("--cases needs a PATTERN")?;
                    opts.cases = Some(pattern.clone());
                }
                "--update-expected" => opts.update_expected = true,
                m @ ("server" | "client" | "all") if mode.is_none() => mode = Some(m),
                other => {
                    if let Some(pattern) = other.strip_prefix("--cases=") {
                        opts.cases = Some(pattern.to_owned());
                    } else {
                        return Err(format!("autobahn: unexpected argument `{other}`").into());
                    }
                }
            }
        }
        let mode = mode.unwrap_or("all");
        opts.server = mode != "client";
        opts.client = mode != "server";
        if let Some(pattern) = &opts.cases {
            let valid = |c: char| c.is_ascii_digit() || c == '.' || c == '*';
            if pattern.is_empty() || !pattern.chars().all(valid) {
                return Err(format!(
                    "--cases {pattern}: use case ids with `*` wildcards, e.g. `1.*` or `6.4.3`"
                )
                .into());
            }
        }
        if opts.update_expected && opts.cases.is_some() {
            return Err(
                "--update-expected records a full run; it cannot be combined with --cases".into(),
            );
        }
        Ok(opts)
    }
}

fn autobahn_dir() -> PathBuf {
    project_root().join("autobahn")
}

fn example_binary(name: &str) -> PathBuf {
    target_dir().join("release/examples").join(name)
}

/// Runs the selected sides; both run even if the first fails.
pub(crate) fn run_autobahn(opts: &Options) -> Result {
    // Reject a bad --cases pattern before installing or building anything.
    for (selected, side) in sides(opts) {
        if selected {
            load_spec(side, 0, opts.cases.as_deref())?;
        }
    }
    let wstest = install::ensure_wstest()?;
    run(&mut cargo_cmd([
        "build",
        "--release",
        "--locked",
        "-p",
        "sockeye-examples",
        "--example",
        "echo_server",
        "--example",
        "autobahn_client",
    ]))?;
    // wstest is single-threaded Python and the bottleneck: run the sides at
    // once, each logging to its own file, then check them in order.
    let selected: Vec<Side> = sides(opts)
        .into_iter()
        .filter_map(|(on, side)| on.then_some(side))
        .collect();
    let outcomes: Vec<(Side, std::result::Result<(), String>)> = thread::scope(|scope| {
        let handles: Vec<_> = selected
            .iter()
            .map(|&side| {
                let wstest = wstest.clone();
                scope.spawn(move || {
                    println!(
                        "autobahn {}: running (log: {})",
                        side.name(),
                        rel(&side.log_file())
                    );
                    let r = match side {
                        Side::Server | Side::ServerRaw => test_server(&wstest, side, opts),
                        Side::Client => test_client(&wstest, opts),
                    };
                    (side, r.map_err(|e| e.to_string()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Side::Server, Err("a runner panicked".into())))
            })
            .collect()
    });
    let mut failed = Vec::new();
    for (side, outcome) in outcomes {
        println!("\n== autobahn {} ==", side.name());
        let outcome = outcome
            .map_err(Into::into)
            .and_then(|()| check_results(side, opts));
        if let Err(e) = outcome {
            eprintln!("autobahn {}: FAILED: {e}", side.name());
            print_log_tail(side);
            failed.push(format!("{}: {e}", side.name()));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("autobahn failed ({})", failed.join("; ")).into())
    }
}

/// The last lines of a side's log, to see why it failed.
fn print_log_tail(side: Side) {
    if let Ok(log) = fs::read_to_string(side.log_file()) {
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(30);
        eprintln!("--- last lines of {} ---", rel(&side.log_file()));
        for line in &lines[start..] {
            eprintln!("{line}");
        }
    }
}

/// A log file for a side's processes (stdout and stderr).
fn log_stdio(side: Side) -> Result<(Stdio, Stdio)> {
    let path = side.log_file();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

/// Every side and whether it was asked for (`server` covers both server paths).
fn sides(opts: &Options) -> [(bool, Side); 3] {
    [
        (opts.server, Side::Server),
        (opts.server, Side::ServerRaw),
        (opts.client, Side::Client),
    ]
}

/// The committed template for `side`, made effective.
fn load_spec(side: Side, port: u16, cases: Option<&str>) -> Result<serde_json::Value> {
    let template_path = autobahn_dir().join(side.template());
    let template = serde_json::from_str(&read_file(&template_path)?)
        .map_err(|e| format!("{}: {e}", rel(&template_path)))?;
    spec::effective_spec(&template, port, &side.outdir(), cases)
}

/// Writes `target/autobahn/<template>` for this run and clears old reports.
fn write_spec(side: Side, port: u16, cases: Option<&str>) -> Result<PathBuf> {
    let mut spec = load_spec(side, port, cases)?;
    if let (None, Some(defaults), Some(obj)) = (cases, side.default_cases(), spec.as_object_mut()) {
        obj.insert("cases".to_owned(), serde_json::json!(defaults));
    }
    // One file per side: the sides run at once.
    let spec_path =
        target_dir()
            .join("autobahn")
            .join(format!("{}-{}", side.name(), side.template()));
    write_file(&spec_path, &serde_json::to_string_pretty(&spec)?)?;
    if side.outdir().exists() {
        fs::remove_dir_all(side.outdir())?;
    }
    Ok(spec_path)
}

/// wstest's fuzzing client against `echo_server` (with `--raw` for the
/// raw accept path).
fn test_server(wstest: &Path, side: Side, opts: &Options) -> Result {
    let port = free_port()?;
    let spec = write_spec(side, port, opts.cases.as_deref())?;
    let mut cmd = Command::new(example_binary("echo_server"));
    // permessage-deflate on: cases 12.* and 13.* negotiate it, the rest do not.
    cmd.args(["--addr", &format!("127.0.0.1:{port}"), "--deflate"]);
    if side == Side::ServerRaw {
        cmd.arg("--raw");
    }
    let _ = fs::remove_file(side.log_file());
    let (_, err) = log_stdio(side)?;
    let mut server = spawn(cmd.stdout(Stdio::piped()).stderr(err))?;
    wait_until_listening(&mut server)?;
    let (out, err) = log_stdio(side)?;
    run(Command::new(wstest)
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec)
        .current_dir(autobahn_dir())
        .stdout(out)
        .stderr(err))?;
    server.check_running()?;
    Ok(())
}

/// Waits for `listening on ...` on the child's stdout, then keeps draining it.
fn wait_until_listening(server: &mut ChildGuard) -> Result {
    let stdout = server
        .child
        .stdout
        .take()
        .ok_or("echo_server stdout is not piped")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut ready_tx = Some(ready_tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("listening on")
                && let Some(tx) = ready_tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
    match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(line) => {
            println!("echo_server: {line}");
            Ok(())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "echo_server did not print `listening on ...` within {} s",
            STARTUP_TIMEOUT.as_secs()
        )
        .into()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            server.check_running()?;
            Err("echo_server closed its stdout without printing `listening on ...`".into())
        }
    }
}

/// `autobahn_client` against wstest's fuzzing server.
fn test_client(wstest: &Path, opts: &Options) -> Result {
    let port = free_port()?;
    let spec = write_spec(Side::Client, port, opts.cases.as_deref())?;
    let _ = fs::remove_file(Side::Client.log_file());
    let (out, err) = log_stdio(Side::Client)?;
    let mut server = spawn(
        Command::new(wstest)
            .args(["-m", "fuzzingserver", "-s"])
            .arg(&spec)
            // No embedded report web server (it would take port 8080).
            .args(["--webport", "0"])
            .current_dir(autobahn_dir())
            .stdout(out)
            .stderr(err),
    )?;
    wait_for_port(&mut server, port)?;
    let url = format!("ws://127.0.0.1:{port}");
    let mut client = Command::new(example_binary("autobahn_client"));
    client.args(["--url", &url, "--agent", AGENT]);
    if let Some(pattern) = &opts.cases {
        client.args(["--cases", pattern]);
    }
    let (out, err) = log_stdio(Side::Client)?;
    run(client.stdout(out).stderr(err))?;
    // /updateReports writes the index before it answers; allow a moment anyway.
    let index = Side::Client.outdir().join("index.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !index.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn wait_for_port(server: &mut ChildGuard, port: u16) -> Result {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        server.check_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "wstest did not accept connections on {addr} within {} s",
                STARTUP_TIMEOUT.as_secs()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Summarises `index.json` and compares it with (or records) the expected results.
fn check_results(side: Side, opts: &Options) -> Result {
    let index = side.outdir().join("index.json");
    let results = report::parse_index(&read_file(&index)?, AGENT)?;
    if results.is_empty() {
        return Err(format!("no cases ran (see {})", rel(&index)).into());
    }
    println!(
        "\nautobahn {}: {}",
        side.name(),
        report::summary(&results, &rel(&side.outdir()))
    );
    let failing = report::failing(&results).len();
    let actual = report::outcomes(&results);
    let expected_file = side.expected_file();

    // The raw path runs a subset: it is checked against what the hyper path recorded.
    if opts.update_expected && side != Side::ServerRaw {
        if failing > 0 {
            return Err(format!(
                "{failing} case(s) failed; not updating {}",
                rel(&expected_file)
            )
            .into());
        }
        write_file(&expected_file, &report::render_expected(&actual))?;
        println!("wrote {} ({} cases)", rel(&expected_file), actual.len());
        return Ok(());
    }

    let mut problems = Vec::new();
    if failing > 0 {
        problems.push(format!("{failing} case(s) failed"));
    }
    if expected_file.exists() {
        let mut expected = report::parse_expected(&read_file(&expected_file)?)
            .map_err(|e| format!("{}: {e}", rel(&expected_file)))?;
        if let Some(pattern) = &opts.cases {
            expected.retain(|id, _| spec::glob_match(pattern, &id.0));
        } else if let Some(patterns) = side.default_cases() {
            expected.retain(|id, _| patterns.iter().any(|p| spec::glob_match(p, &id.0)));
        }
        let differences = report::diff(&expected, &actual);
        if !differences.is_empty() {
            println!("differences from {}:", rel(&expected_file));
            for d in &differences {
                println!("  {d}");
            }
            problems.push(format!(
                "{} difference(s) from {}",
                differences.len(),
                rel(&expected_file)
            ));
        }
    } else {
        problems.push(format!(
            "{} does not exist yet; record it with `cargo xtask autobahn {} --update-expected`",
            rel(&expected_file),
            side.name()
        ));
    }
    if problems.is_empty() {
        println!(
            "autobahn {}: all {} cases passed as expected",
            side.name(),
            results.len()
        );
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        Options::parse(&args)
    }

    #[test]
    fn arguments() {
        let o = parse(&[]).unwrap();
        assert!(o.server && o.client && o.cases.is_none() && !o.update_expected);
        let o = parse(&["server", "--cases", "1.*"]).unwrap();
        assert!(o.server && !o.client);
        assert_eq!(o.cases.as_deref(), Some("1.*"));
        let o = parse(&["--cases=6.4.3", "client"]).unwrap();
        assert!(!o.server && o.client);
        assert_eq!(o.cases.as_deref(), Some("6.4.3"));
        assert!(
            parse(&["all", "--update-expected"])
                .unwrap()
                .update_expected
        );
        assert!(parse(&["--update-expected", "--cases", "1.*"]).is_err());
        assert!(parse(&["--cases"]).is_err());
        assert!(parse(&["server", "client"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--cases", "[12].*"]).is_err());
        assert!(parse(&["--cases", ""]).is_err());
    }

    #[test]
    fn committed_templates_are_valid() {
        for side in [Side::Server, Side::Client] {
            let text = read_file(&autobahn_dir().join(side.template())).unwrap();
            let template: serde_json::Value = serde_json::from_str(&text).unwrap();
            let spec = spec::effective_spec(&template, 1234, &side.outdir(), None).unwrap();
            assert!(spec.to_string().contains("ws://127.0.0.1:1234"));
        }
    }
}
