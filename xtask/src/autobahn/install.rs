//! Installs `wstest` (Autobahn TestSuite, Python 2.7) into `~/.local/bin` when missing.
//!
//! Debian 12 has no Python 2, so it comes from bullseye via apt (needs root);
//! pip for Python 2 is bootstrapped from wheels downloaded by Python 3's pip.
//! Every step checks first, so running this again is cheap and harmless.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::system::{apt_install, is_root};
use crate::util::{Result, probe, run, write_file};

/// Debian's own interpreter, by path: a pyenv shim named `python2.7` may
/// stand earlier on `PATH` and fail.
const PY2: &str = "/usr/bin/python2.7";

const BULLSEYE_SOURCES: &str = "/etc/apt/sources.list.d/bullseye-python2.sources";
const BULLSEYE_ENTRY: &str = "\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

const PIP_WHEEL: &str = "pip-20.3.4-py2.py3-none-any.whl";

/// Returns the path of a working `wstest`, installing it first if needed.
pub(crate) fn ensure_wstest() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set; cannot locate ~/.local/bin")?;
    let wstest = Path::new(&home).join(".local/bin/wstest");
    if works(&wstest) {
        return Ok(wstest);
    }
    println!(
        "{} is missing or broken: installing Autobahn TestSuite (Python 2.7)",
        wstest.display()
    );
    if !probe(Command::new(PY2).arg("--version")) {
        install_python2()?;
    }
    if !probe(Command::new(PY2).args(["-m", "pip", "--version"])) {
        install_pip()?;
    }
    run(Command::new(PY2).args([
        "-m",
        "pip",
        "install",
        "-q",
        "--user",
        "--no-warn-script-location",
        "autobahntestsuite",
    ]))?;
    if works(&wstest) {
        println!("installed {}", wstest.display());
        Ok(wstest)
    } else {
        Err(format!(
            "installed autobahntestsuite, but `{} --help` fails",
            wstest.display()
        )
        .into())
    }
}

fn works(wstest: &Path) -> bool {
    wstest.is_file() && probe(Command::new(wstest).arg("--help"))
}

/// Python 2.7 from Debian bullseye (Debian 12 no longer ships it).
fn install_python2() -> Result {
    if !is_root() {
        return Err(format!(
            "{PY2} is missing and installing it needs root. As root, add Debian bullseye \
             to apt ({BULLSEYE_SOURCES}) and run `apt-get install python2.7 python2.7-dev`; \
             then rerun this command (pip and autobahntestsuite are installed per user)"
        )
        .into());
    }
    if !Path::new(BULLSEYE_SOURCES).exists() {
        println!("writing {BULLSEYE_SOURCES} (Debian bullseye, for python2.7)");
        write_file(Path::new(BULLSEYE_SOURCES), BULLSEYE_ENTRY)?;
    }
    apt_install(
        &["python2.7", "python2.7-dev"],
        "the Autobahn TestSuite runs on Python 2.7",
        true,
    )
}

/// pip 20.3.4 (the last for Python 2), run straight from its wheel to install itself.
fn install_pip() -> Result {
    let tmp = TempDir::new("xtask-py2-wheels")?;
    run(Command::new("python3")
        .args(["-m", "pip", "download", "-q", "--no-deps"])
        .args(["--python-version", "2.7", "--only-binary=:all:"])
        .args(["pip==20.3.4", "setuptools==44.1.1", "wheel==0.37.1", "-d"])
        .arg(&tmp.0))?;
    run(Command::new(PY2)
        .arg(tmp.0.join(PIP_WHEEL).join("pip"))
        .args(["install", "-q", "--user", "--no-index", "--find-links"])
        .arg(&tmp.0)
        .args(["pip", "setuptools", "wheel"]))
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path)
            .map_err(|e| format!("could not create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
