//! The peers: what each check needs, whether it is installed, and installing what is missing.
//!
//! As root (and unless `--no-install`), missing Debian packages are installed with one
//! `apt-get update` and one `apt-get install`, and hep-js with `npm ci` from the
//! `package-lock.json` committed in `xtask/interop/`. Only the packages whose programs are
//! missing are asked for: a machine whose `nodejs` package already ships `npm` (NodeSource)
//! would otherwise be asked for Debian's `npm`, which conflicts with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::proc;

/// Kamailio's module directory on Debian 12 (x86_64).
pub(crate) const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// The hep-js version `package-lock.json` pins.
pub(crate) const HEPJS_VERSION: &str = "1.0.22";

/// The peer assets, compiled in so a run reads nothing outside the repository.
pub(crate) const ASSETS: &[(&str, &str)] = &[
    (
        "golden-call-uac.xml",
        include_str!("../../interop/golden-call-uac.xml"),
    ),
    (
        "golden-call-uas.xml",
        include_str!("../../interop/golden-call-uas.xml"),
    ),
    (
        "golden-fail-uac.xml",
        include_str!("../../interop/golden-fail-uac.xml"),
    ),
    (
        "golden-fail-uas.xml",
        include_str!("../../interop/golden-fail-uas.xml"),
    ),
    (
        "golden-cancel-uac.xml",
        include_str!("../../interop/golden-cancel-uac.xml"),
    ),
    (
        "golden-cancel-uas.xml",
        include_str!("../../interop/golden-cancel-uas.xml"),
    ),
    (
        "golden-reinvite-uac.xml",
        include_str!("../../interop/golden-reinvite-uac.xml"),
    ),
    (
        "golden-reinvite-uas.xml",
        include_str!("../../interop/golden-reinvite-uas.xml"),
    ),
    (
        "golden-register-uac.xml",
        include_str!("../../interop/golden-register-uac.xml"),
    ),
    (
        "golden-register-uas.xml",
        include_str!("../../interop/golden-register-uas.xml"),
    ),
    (
        "kamailio-sender.cfg",
        include_str!("../../interop/kamailio-sender.cfg"),
    ),
    (
        "kamailio-receiver.cfg",
        include_str!("../../interop/kamailio-receiver.cfg"),
    ),
    (
        "sipcapture-sqlite.sql",
        include_str!("../../interop/sipcapture-sqlite.sql"),
    ),
    ("package.json", include_str!("../../interop/package.json")),
    (
        "package-lock.json",
        include_str!("../../interop/package-lock.json"),
    ),
    (
        "hepjs-encode.js",
        include_str!("../../interop/hepjs-encode.js"),
    ),
    (
        "hepjs-decode.js",
        include_str!("../../interop/hepjs-decode.js"),
    ),
];

/// The text of an asset.
pub(crate) fn asset(name: &str) -> &'static str {
    ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, text)| text)
}

/// An external program (or package) a check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Tool {
    /// Kamailio 5.6 with siptrace, sipcapture and db_sqlite.
    Kamailio,
    /// sipp (Debian `sip-tester`).
    Sipp,
    /// tshark.
    Tshark,
    /// sngrep.
    Sngrep,
    /// The sqlite3 command line shell.
    Sqlite3,
    /// Node.js and npm.
    Node,
    /// npm `hep-js`, installed by `npm ci` in the node directory.
    HepJs,
    /// Debian's `rtpengine-daemon` (userspace forwarding, its `--homer` HEP sender).
    Rtpengine,
}

impl Tool {
    /// Every tool, in install order.
    pub(crate) const ALL: [Self; 8] = [
        Self::Kamailio,
        Self::Sipp,
        Self::Tshark,
        Self::Sngrep,
        Self::Sqlite3,
        Self::Node,
        Self::HepJs,
        Self::Rtpengine,
    ];

    /// Name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kamailio => "kamailio",
            Self::Sipp => "sipp",
            Self::Tshark => "tshark",
            Self::Sngrep => "sngrep",
            Self::Sqlite3 => "sqlite3",
            Self::Node => "node/npm",
            Self::HepJs => "hep-js",
            Self::Rtpengine => "rtpengine",
        }
    }

    /// Debian packages providing the parts of this tool that are missing.
    fn missing_packages(self) -> Vec<&'static str> {
        match self {
            Self::Kamailio => {
                let mut p = Vec::new();
                if !Path::new("/usr/sbin/kamailio").is_file()
                    || !module("siptrace")
                    || !module("sipcapture")
                {
                    p.extend(["kamailio", "kamailio-extra-modules"]);
                }
                if !module("db_sqlite") {
                    p.push("kamailio-sqlite-modules");
                }
                p
            }
            Self::Sipp => missing_program("sipp", "sip-tester"),
            Self::Tshark => missing_program("tshark", "tshark"),
            Self::Sngrep => missing_program("sngrep", "sngrep"),
            Self::Sqlite3 => missing_program("sqlite3", "sqlite3"),
            Self::Node => {
                let mut p = missing_program("node", "nodejs");
                p.extend(missing_program("npm", "npm"));
                p
            }
            Self::HepJs => Vec::new(),
            Self::Rtpengine => missing_program("rtpengine", "rtpengine-daemon"),
        }
    }
}

/// Whether a Kamailio module is installed.
fn module(name: &str) -> bool {
    Path::new(KAMAILIO_MODULES)
        .join(format!("{name}.so"))
        .is_file()
}

/// `[package]` if `program` is not on `PATH`.
fn missing_program(program: &str, package: &'static str) -> Vec<&'static str> {
    if on_path(program).is_some() {
        Vec::new()
    } else {
        vec![package]
    }
}

/// The full path of `program` on `PATH`.
pub(crate) fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What is installed after [`prepare`]: for each missing tool, why.
#[derive(Debug, Default)]
pub(crate) struct Available {
    /// Tools that are missing, with the reason.
    missing: Vec<(Tool, String)>,
}

impl Available {
    /// Why `tool` is unavailable, or `None` when it is there.
    pub(crate) fn why_missing(&self, tool: Tool) -> Option<&str> {
        self.missing
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, why)| why.as_str())
    }
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    proc::stdout("id", &["-u"], None, Duration::from_secs(5)).is_ok_and(|out| out.trim() == "0")
}

/// Writes the assets into `node_dir`, installs missing peers when allowed, and reports
/// what is available.
pub(crate) fn prepare(node_dir: &Path, install: bool) -> Available {
    if let Err(err) = write_assets(node_dir) {
        eprintln!("==> interop: cannot write peer assets: {err:#}");
    }
    let packages: Vec<&str> = Tool::ALL
        .iter()
        .flat_map(|t| t.missing_packages())
        .collect();
    let root = is_root();
    if !packages.is_empty() {
        if install && root {
            if let Err(err) = apt_install(&packages) {
                eprintln!("==> interop: installing peers failed: {err:#}");
            }
        } else {
            println!(
                "==> interop: missing Debian packages {} (not installing: {})",
                packages.join(" "),
                if install { "not root" } else { "--no-install" }
            );
        }
    }
    let mut available = Available::default();
    for tool in Tool::ALL {
        let still = tool.missing_packages();
        if !still.is_empty() {
            available
                .missing
                .push((tool, format!("missing package(s) {}", still.join(" "))));
        }
    }
    if available.why_missing(Tool::Node).is_some() {
        available
            .missing
            .push((Tool::HepJs, "node/npm missing".to_owned()));
    } else if !hepjs_installed(node_dir) {
        let result = if install {
            npm_ci(node_dir)
        } else {
            Err(anyhow::anyhow!("not installed (--no-install)"))
        };
        if let Err(err) = result {
            available
                .missing
                .push((Tool::HepJs, format!("npm ci failed: {err:#}")));
        }
    }
    available
}

/// Copies the assets into `dir` (only files whose content changed are rewritten).
fn write_assets(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (name, text) in ASSETS {
        let path = dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Whether `node_modules/hep-js` has the pinned version.
fn hepjs_installed(dir: &Path) -> bool {
    let manifest = dir.join("node_modules/hep-js/package.json");
    fs::read_to_string(manifest).is_ok_and(|text| {
        serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| {
            v.get("version").and_then(serde_json::Value::as_str) == Some(HEPJS_VERSION)
        })
    })
}

/// `npm ci` in `dir`, bounded to 5 minutes.
fn npm_ci(dir: &Path) -> Result<()> {
    println!(
        "==> interop: npm ci (hep-js {HEPJS_VERSION}) in {}",
        dir.display()
    );
    let out = proc::output(
        "npm",
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        Some(dir),
        Duration::from_secs(300),
    )?;
    if !out.status.success() || !hepjs_installed(dir) {
        bail!(
            "npm ci ({}): {}",
            out.status,
            super::ours::last_line(&out.stderr)
        );
    }
    Ok(())
}

/// `apt-get update` once, then `apt-get install -y PACKAGES` without prompts.
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    println!("==> interop: installing {}", packages.join(" "));
    let run = |args: &[&str], input: Option<&str>| -> Result<()> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        println!("==> {}", args.join(" "));
        let mut child = Command::new("timeout")
            .arg("900")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", args[0]))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes())?;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("`{}` failed ({status})", args.join(" "));
        }
        Ok(())
    };
    run(&["apt-get", "update", "-q"], None)?;
    run(
        &["debconf-set-selections"],
        Some("wireshark-common wireshark-common/install-setuid boolean false\n"),
    )?;
    let mut args = vec!["apt-get", "install", "-y", "-q"];
    args.extend_from_slice(packages);
    run(&args, None)
}
