//! Shared helpers: paths, printing and running commands, guarded child processes.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Every fallible xtask operation returns this; errors are printed by `main`.
pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs us (`$CARGO`), or `cargo` from `PATH`.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// A `cargo` command running in the project root.
pub(crate) fn cargo_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(cargo());
    cmd.args(args).current_dir(project_root());
    cmd
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the root) or `target/`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => project_root().join(dir),
        _ => project_root().join("target"),
    }
}

/// Renders a command the way a shell user would type it.
pub(crate) fn display_cmd(cmd: &Command) -> String {
    let mut out = String::from("$");
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(out, " {}={}", key.to_string_lossy(), quote(value));
        }
    }
    let program = cmd.get_program();
    if program == OsStr::new(&cargo()) {
        out.push_str(" cargo");
    } else {
        let _ = write!(out, " {}", quote(program));
    }
    for arg in cmd.get_args() {
        let _ = write!(out, " {}", quote(arg));
    }
    if let Some(dir) = cmd.get_current_dir()
        && dir != project_root()
    {
        let _ = write!(out, "    (in {})", dir.display());
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Prints the command, runs it with inherited stdio and fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result {
    println!("{}", display_cmd(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{}`: {e}", cmd.get_program().display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command failed ({status}): {}", display_cmd(cmd)).into())
    }
}

/// Runs a command silently and reports whether it exited 0 (a probe, not a step).
pub(crate) fn probe(cmd: &mut Command) -> bool {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints and spawns a command; the returned guard kills it when dropped.
pub(crate) fn spawn(cmd: &mut Command) -> Result<ChildGuard> {
    println!("{}", display_cmd(cmd));
    let child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", cmd.get_program().display()))?;
    let name = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    Ok(ChildGuard { name, child })
}

/// A background process that is killed (and reaped) when the guard goes away.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    pub(crate) name: String,
    pub(crate) child: Child,
}

impl ChildGuard {
    /// Fails if the process already exited.
    pub(crate) fn check_running(&mut self) -> Result {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("{} exited early ({status})", self.name).into()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            println!("stopping {} (pid {})", self.name, self.child.id());
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Writes a file, creating its parent directories.
pub(crate) fn write_file(path: &Path, contents: &str) -> Result {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
    }
    fs::write(path, contents).map_err(|e| format!("could not write {}: {e}", path.display()))?;
    Ok(())
}

/// Reads a file to a string, naming the file in the error.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()).into())
}

/// `path` relative to the project root when it lies inside it, for messages.
pub(crate) fn rel(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_displayed_shell_style() {
        let mut cmd = Command::new("wstest");
        cmd.args(["-m", "fuzzingclient", "a b", "it's"])
            .env("X", "1");
        assert_eq!(
            display_cmd(&cmd),
            r"$ X=1 wstest -m fuzzingclient 'a b' 'it'\''s'"
        );
    }
}
