//! The files of the Debian package (`hep-server/debian/`) against the code that reads
//! them, so that they cannot rot: the conffile lists every key with its default and
//! parses, its examples parse, and the unit runs it with room for its connections and its
//! drain. (`cargo xtask package --check` installs and runs them.) And the binary's side
//! of the conventions: `HEP_SERVER_*` variables, `--version` with the commit.

use std::collections::BTreeMap;
use std::path::Path;

use hep_server::config::{Config, Written};
use hep_server::outputs::OutputSpec;
use hep_server::server::fd_limit::RESERVED;

const CONFFILE: &str = include_str!("../debian/hep-server.toml");
const UNIT: &str = include_str!("../debian/hep-server.service");
const MANIFEST: &str = include_str!("../Cargo.toml");

fn parse(text: &str) -> Config {
    Config::parse(Path::new("hep-server.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A line of defaults: `# key = value` or `# [section]` (one `#`, one space).
fn default_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    });
    let is_section = rest.starts_with('[') && rest.ends_with(']') && !rest.contains(' ');
    (is_key || is_section).then_some(rest)
}

/// The conffile with its default lines uncommented.
fn with_defaults_uncommented() -> String {
    CONFFILE
        .lines()
        .map(|l| default_line(l).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The defaults written in the conffile, `section.key` (top level: `key`) -> value text.
fn written_defaults() -> BTreeMap<String, String> {
    let mut section = String::new();
    let mut keys = BTreeMap::new();
    for line in CONFFILE.lines() {
        let Some(rest) = default_line(line).or_else(|| {
            // Keys the package sets are uncommented; they count as written too.
            (!line.starts_with('#') && !line.trim().is_empty()).then_some(line)
        }) else {
            continue;
        };
        if let Some(name) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            name.clone_into(&mut section);
            continue;
        }
        let (key, value) = rest.split_once(" = ").unwrap();
        let full = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        assert!(
            keys.insert(full.clone(), value.to_owned()).is_none(),
            "{full} twice"
        );
    }
    keys
}

#[test]
fn the_conffile_parses_and_changes_only_where_the_store_is() {
    let shipped = parse(CONFFILE);
    let expected = Config {
        outputs: shipped.outputs.clone(),
        ..Config::default()
    };
    assert_eq!(
        shipped, expected,
        "only `outputs` differs from the embedded defaults"
    );
    let outputs: Vec<&str> = shipped.outputs.iter().map(Written::text).collect();
    assert_eq!(outputs, ["store:/var/lib/hep-server/store"]);
    assert!(matches!(shipped.outputs[0].value(), OutputSpec::Store(_)));
}

#[test]
fn uncommenting_every_default_changes_nothing() {
    let uncommented = with_defaults_uncommented();
    assert_ne!(uncommented, CONFFILE, "there are default lines");
    assert_eq!(parse(&uncommented), parse(CONFFILE), "{uncommented}");
}

#[test]
fn every_key_check_config_prints_is_in_the_conffile_with_its_default() {
    // What `check-config` prints for the defaults: every key that has one.
    let printed: toml::Table = toml::from_str(&Config::default().to_toml()).unwrap();
    let written = written_defaults();
    let mut missing = Vec::new();
    let mut visit = |full: String, value: &toml::Value| {
        if full == "outputs" {
            return; // set by the package, checked above
        }
        match written.get(&full) {
            Some(text) => {
                let parsed: toml::Table = toml::from_str(&format!("v = {text}")).unwrap();
                assert_eq!(&parsed["v"], value, "{full}: the conffile says {text}");
            }
            None => missing.push(full),
        }
    };
    for (key, value) in &printed {
        match value {
            toml::Value::Table(section) => {
                for (k, v) in section {
                    if !v.is_table() {
                        visit(format!("{key}.{k}"), v);
                    }
                }
            }
            v => visit(key.clone(), v),
        }
    }
    assert!(
        missing.is_empty(),
        "keys with a default missing from hep-server/debian/hep-server.toml (add them, \
         commented, with their default): {missing:?}"
    );
}

#[test]
fn the_examples_of_the_sections_that_are_off_parse() {
    // `#   [section]` and `#   key = value`: the indented examples.
    let examples: Vec<&str> = CONFFILE
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .collect();
    assert!(examples.contains(&"[auth]"), "{examples:?}");
    let config = parse(&examples.join("\n"));
    assert!(config.auth.is_some() && config.metrics.is_some() && config.tls.is_some());
    assert!(config.filter.is_some() && config.rate_limit.is_some());
    assert!(config.rewrite.is_some() && config.dedup.is_some() && config.relay_tls.is_some());
}

/// `[Service]` keys of the unit (the last assignment of each).
fn service() -> BTreeMap<&'static str, &'static str> {
    let mut in_service = false;
    let mut keys = BTreeMap::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if let (true, Some((k, v))) =
            (in_service && !line.starts_with('#'), line.split_once('='))
        {
            keys.insert(k, v);
        }
    }
    keys
}

#[test]
fn the_unit_runs_the_packaged_conffile_where_it_is_installed() {
    let service = service();
    assert_eq!(
        service["ExecStart"],
        "/usr/bin/hep-server run --config /etc/hep-server/hep-server.toml"
    );
    assert!(
        MANIFEST.contains(r#"["debian/hep-server.toml", "etc/hep-server/hep-server.toml", "644"]"#),
        "the conffile is installed where ExecStart reads it"
    );
    assert_eq!(service["Type"], "notify");
    assert_eq!(service["ExecReload"], "/bin/kill -HUP $MAINPID");
    assert_eq!(service["User"], "hep-server");
    let config = parse(CONFFILE);
    let store = config.store_dir().unwrap();
    assert!(
        store.starts_with(service["ReadWritePaths"])
            && store.starts_with(service["WorkingDirectory"]),
        "the store {} is writable under ProtectSystem=strict",
        store.display()
    );
}

#[test]
fn the_unit_leaves_room_for_every_connection_and_for_the_drain() {
    let service = service();
    let config = parse(CONFFILE);
    let stream_listeners = config
        .listen
        .iter()
        .filter(|l| !l.text().starts_with("hep_udp"))
        .count();
    let nofile: u64 = service["LimitNOFILE"].parse().unwrap();
    let max = config.limits.max_connections as u64;
    // With 9060 added beside 5656 (as the conffile suggests): twice the stream listeners.
    let needed = max * 2 * stream_listeners as u64 + RESERVED;
    assert!(nofile >= needed, "LimitNOFILE={nofile} < {needed}");
    let stop: u64 = service["TimeoutStopSec"]
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        stop * 1_000 > config.limits.shutdown_timeout_ms,
        "systemd would kill the drain: TimeoutStopSec={stop}s"
    );
}

// ===== the binary as the service and a container run it =====

fn hep_server(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hep-server"))
        .args(args)
        .env_remove("HEP_SERVER_CONFIG")
        .env_remove("HEP_SERVER_LISTEN")
        .env_remove("HEP_SERVER_OUTPUT")
        .env_remove("HEP_SERVER_METRICS")
        .env_remove("HEP_SERVER_HTTP")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_config_shows_the_file_under_the_environment_under_the_flags() {
    let dir = std::env::temp_dir().join(format!("hep-package-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hep-server.toml");
    std::fs::write(
        &file,
        "listen = [\"hep_udp:127.0.0.1:7001\"]\noutputs = [\"null\"]\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let env = [
        ("HEP_SERVER_CONFIG", file),
        ("HEP_SERVER_LISTEN", "hep_tcp:127.0.0.1:8001"),
        ("HEP_SERVER_OUTPUT", "stdout"),
    ];
    // The file named by the environment, its keys replaced by the environment's.
    let (ok, out, err) = hep_server(&["check-config"], &env);
    assert!(ok, "{err}");
    let printed: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(
        printed["listen"].as_array().unwrap()[0].as_str(),
        Some("hep_tcp:127.0.0.1:8001")
    );
    assert_eq!(
        printed["outputs"].as_array().unwrap()[0].as_str(),
        Some("stdout")
    );
    // A flag replaces its variable; the other variable still applies.
    let (ok, out, err) = hep_server(&["check-config", "--output", "null"], &env);
    assert!(ok, "{err}");
    let printed: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(
        printed["outputs"].as_array().unwrap()[0].as_str(),
        Some("null")
    );
    assert_eq!(
        printed["listen"].as_array().unwrap()[0].as_str(),
        Some("hep_tcp:127.0.0.1:8001")
    );
    // A bad variable stops `run` before it binds anything, naming it.
    let (ok, _, err) = hep_server(&["run"], &[("HEP_SERVER_HTTP", "everywhere")]);
    assert!(!ok);
    assert!(
        err.contains("environment variable HEP_SERVER_HTTP=\"everywhere\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn version_names_the_commit_when_built_from_a_checkout() {
    let (ok, out, _) = hep_server(&["--version"], &[]);
    assert!(ok);
    let expected = format!("hep-server {}", env!("CARGO_PKG_VERSION"));
    assert!(out.starts_with(&expected), "{out}");
    // This test runs from the repository: build.rs found the commit (12 hex digits).
    let in_checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.git")
        .exists();
    if in_checkout {
        let commit = out
            .trim()
            .strip_prefix(&format!("{expected} (git "))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no commit in {out:?}"));
        assert!(
            commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{out}"
        );
    }
}

#[test]
fn under_the_journal_lines_carry_their_priority_and_no_timestamp() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = std::env::temp_dir().join(format!("hep-package-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A port in use: `run` fails to bind it and says so through the logger.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let run = |journal: bool| {
        let log = dir.join(format!("stderr-{journal}"));
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hep-server"));
        cmd.args(["run", "--listen", &format!("hep_tcp:127.0.0.1:{port}")])
            .args(["--output", "null", "--http", "off"])
            .env("RUST_LOG", "info")
            .stderr(file);
        // What systemd sets for a service whose stderr is the journal: its device and inode.
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            cmd.env("JOURNAL_STREAM", "1:1");
        }
        let status = cmd.status().unwrap();
        assert!(!status.success(), "the port is taken");
        std::fs::read_to_string(log).unwrap()
    };
    let journal = run(true);
    let error = journal
        .lines()
        .find(|l| l.contains(&port.to_string()))
        .unwrap_or_else(|| panic!("{journal}"));
    assert!(error.starts_with("<3>hep-server: "), "{journal}");
    assert!(
        journal
            .lines()
            .all(|l| l.starts_with('<') && !l.contains("Z  ")),
        "{journal}"
    );
    // Another stream named (stderr redirected elsewhere): plain lines, as on a terminal.
    let plain = run(false);
    assert!(!plain.contains("<3>"), "{plain}");
    assert!(plain.contains("hep-server: "), "{plain}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Containerfile cannot be built here (no container engine): what can rot in it is
/// checked instead, against the files and the defaults it relies on.
#[test]
fn the_containerfile_ships_the_packaged_conffile_and_runs_it() {
    let containerfile = include_str!("../../Containerfile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // What the build stage copies from the sources exists.
    let conf = "hep-server/debian/hep-server.toml /out/etc/hep-server/hep-server.toml";
    assert!(containerfile.contains(conf), "{containerfile}");
    assert!(root.join("hep-server/debian/hep-server.toml").is_file());
    assert!(containerfile.contains("cargo build --release --locked -p hep-server"));
    // `run` (CMD) and `search` (docker exec) read that file through the environment.
    assert!(containerfile.contains("ENV HEP_SERVER_CONFIG=/etc/hep-server/hep-server.toml"));
    assert!(containerfile.contains("CMD [\"run\"]"));
    // The volume is the store the conffile names, owned by the user that runs.
    let store = parse(CONFFILE).store_dir().unwrap().display().to_string();
    assert!(
        containerfile.contains(&format!("VOLUME {store}")),
        "{store}"
    );
    assert!(containerfile.contains(&format!("install -d -m 0750 /out{store}")));
    assert!(containerfile.contains("USER nonroot"));
    // The ports it exposes are the conffile's.
    let hep_port = parse(CONFFILE).hep_port;
    assert!(containerfile.contains(&format!("EXPOSE {hep_port}/udp {hep_port}/tcp")));
    // The build context leaves out the build outputs.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}
