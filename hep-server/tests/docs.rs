//! Every example of the documentation, checked, so that none can go stale: each
//! `hep-server` command line of README.md, SECURITY.md and docs/*.md (in code blocks and
//! in inline code) parses as the binary would parse it, each usage synopsis names only
//! subcommands and flags that exist, and each TOML block is a configuration
//! `check-config` accepts. And the README's first steps, run end to end.

use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _};
use hep_server::cli::{Cli, Command};
use hep_server::config::Config;
use hep_server::outputs::OutputSpec;

mod common;
use common::{Server, send_udp, set_bytes, test_dir};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The documentation: README.md, SECURITY.md and every docs/*.md.
fn doc_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A fenced code block: where it starts, its info string, its lines.
#[derive(Debug)]
struct Block {
    at: String,
    lang: String,
    lines: Vec<(usize, String)>,
}

/// The fenced code blocks of a markdown file, and its prose (with the lines of the
/// blocks blanked, so that inline code is found in the prose only).
fn split_markdown(file: &Path) -> (Vec<Block>, Vec<(usize, String)>) {
    let name = file.strip_prefix(repo()).unwrap().display().to_string();
    let text = std::fs::read_to_string(file).unwrap();
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                open = Some(Block {
                    at: format!("{name}:{n}"),
                    lang: line.trim_start().trim_start_matches('`').trim().to_owned(),
                    lines: Vec::new(),
                });
            }
            (Some(_), true) => blocks.extend(open.take()),
            (Some(b), false) => b.lines.push((n, line.to_owned())),
            (None, false) => prose.push((n, line.to_owned())),
        }
    }
    assert!(open.is_none(), "{name}: a code block is not closed");
    (blocks, prose)
}

/// Splits a shell line into words: whitespace-separated, `'...'` and `"..."` quoted.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A `hep-server` command line of the documentation.
#[derive(Debug)]
struct Example {
    /// `FILE:LINE`.
    at: String,
    /// The arguments after `hep-server`.
    args: Vec<String>,
    /// A usage synopsis (`[--flag VALUE]`, `A|B`, `...`) rather than a command.
    synopsis: bool,
}

/// The `hep-server` command in one shell line, if there is one: `hep-server ARGS`
/// (after any wrapper such as `valgrind` or `/usr/bin/time`), or `cargo run ... -p
/// hep-server [-- ARGS]`. A comment (`# ...`) ends the line; `&`, `|`, `;` and `>` end
/// the command.
fn command_in(line: &str) -> Option<Vec<String>> {
    let mut code = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    if code.trim_start().starts_with('#') {
        return None;
    }
    // A synopsis's description, aligned in a column: `hep-server      run on defaults`.
    let indent = code.len() - code.trim_start().len();
    if let Some(i) = code[indent..].find("   ") {
        code = &code[..indent + i];
    }
    let mut words = shell_words(code);
    // Environment assignments before the program.
    let assignments = words
        .iter()
        .take_while(|w| w.contains('=') && !w.starts_with('-'))
        .count();
    words.drain(..assignments);
    let end = |rest: &[String]| -> Vec<String> {
        rest.iter()
            .take_while(|w| !matches!(w.as_str(), "&" | "&&" | "|" | ";" | ">" | "2>&1"))
            .cloned()
            .collect()
    };
    if words.first().is_some_and(|w| w == "cargo") {
        // Only `cargo run -p hep-server`: `cargo test -p hep-server` runs the tests.
        if words.get(1).is_none_or(|w| w != "run")
            || !words
                .windows(2)
                .any(|w| w[0] == "-p" && w[1] == "hep-server")
        {
            return None;
        }
        return Some(match words.iter().position(|w| w == "--") {
            Some(i) => end(&words[i + 1..]),
            None => Vec::new(),
        });
    }
    let i = words
        .iter()
        .position(|w| w == "hep-server" || w.ends_with("/hep-server"))?;
    Some(end(&words[i + 1..]))
}

fn is_synopsis(args: &[String]) -> bool {
    args.iter()
        .any(|a| a.starts_with('[') || a.contains("...") || (a.contains('|') && !a.contains(':')))
}

/// Every `hep-server` command line of the documentation.
fn examples() -> Vec<Example> {
    let mut found = Vec::new();
    for file in doc_files() {
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        let (blocks, prose) = split_markdown(&file);
        for block in blocks
            .iter()
            .filter(|b| !matches!(b.lang.as_str(), "rust" | "toml" | "json"))
        {
            let mut lines = block.lines.iter().peekable();
            while let Some((n, line)) = lines.next() {
                let Some(mut args) = command_in(line) else {
                    continue;
                };
                // A synopsis goes on on indented lines that start with `[`.
                while let Some((_, next)) = lines.peek() {
                    if !next.starts_with(' ') || !next.trim_start().starts_with('[') {
                        break;
                    }
                    args.extend(shell_words(next));
                    lines.next();
                }
                found.push(Example {
                    at: format!("{name}:{n}"),
                    synopsis: is_synopsis(&args),
                    args,
                });
            }
        }
        // Inline code in the prose: `hep-server ...` (a span may wrap to the next line).
        let text: Vec<&str> = prose.iter().map(|(_, l)| l.as_str()).collect();
        for (k, (n, line)) in prose.iter().enumerate() {
            let mut rest = line.as_str();
            while let Some(start) = rest.find("`hep-server ") {
                let after = &rest[start + 1..];
                let span = match after.find('`') {
                    Some(end) => after[..end].to_owned(),
                    None => {
                        // Wrapped: the span ends on the next prose line.
                        let next = text.get(k + 1).copied().unwrap_or_default();
                        let end = next.find('`').unwrap_or(next.len());
                        format!("{after} {}", &next[..end])
                    }
                };
                rest = after.find('`').map_or("", |e| &after[e + 1..]);
                let args = command_in(&span).unwrap_or_default();
                found.push(Example {
                    at: format!("{name}:{n}"),
                    synopsis: is_synopsis(&args),
                    args,
                });
            }
        }
    }
    found
}

/// `hep-server SUBCOMMAND` alone or ending in a flag without its value: prose naming a
/// subcommand or a flag, not a command to run.
fn is_mention(args: &[String]) -> bool {
    args.len() <= 1 || args.last().is_some_and(|a| a.starts_with("--"))
}

/// The subcommand and the `--flags` a synopsis or a mention names must exist.
fn check_names(e: &Example) -> Result<(), String> {
    let cli = Cli::command();
    let Some(first) = e.args.first() else {
        return Ok(()); // `hep-server` alone: run on defaults
    };
    let sub = cli
        .find_subcommand(first)
        .ok_or_else(|| format!("no subcommand `{first}`"))?;
    for arg in &e.args[1..] {
        let flag = arg.trim_start_matches('[');
        let Some(long) = flag.strip_prefix("--") else {
            continue;
        };
        let long = long.trim_end_matches([']', '.']);
        let long = long.split('=').next().unwrap_or_default();
        if !sub.get_arguments().any(|a| a.get_long() == Some(long)) && long != "help" {
            return Err(format!("`hep-server {first}` has no flag --{long}"));
        }
    }
    Ok(())
}

/// The documentation's placeholders made concrete: a port written as a word
/// (`127.0.0.1:P`, `:PORT`, `:A`) becomes a number, and so does the value of a numeric
/// flag written as a word (`--count N`, `--rate R`). Other words (`FILE`, `DIR`, `ID`)
/// are valid values as they stand.
fn concrete(args: &[String]) -> Vec<String> {
    let placeholder = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '*')
    };
    let mut out: Vec<String> = Vec::new();
    for a in args {
        let numeric = out
            .last()
            .is_some_and(|f| matches!(f.as_str(), "--count" | "--rate" | "--limit"));
        let a = match a.rsplit_once(':') {
            Some((head, port)) if placeholder(port) => format!("{head}:9999"),
            _ if numeric && placeholder(a) => "1".to_owned(),
            _ => a.clone(),
        };
        out.push(a);
    }
    out
}

/// Parses a command as the binary does, and checks what the binary checks before it
/// starts work: `run`'s output specs, `send`'s flags against each other.
fn check_command(args: &[String]) -> Result<(), String> {
    let argv = std::iter::once("hep-server".to_owned()).chain(concrete(args));
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    match cli.command_or_default() {
        Command::Run(run) => {
            for o in &run.output {
                o.parse::<OutputSpec>().map_err(|e| e.to_string())?;
            }
        }
        Command::Send(mut send) => {
            // The payload from "stdin": the files named are not there.
            send.files.clear();
            if !send.dest.destination.to_string().starts_with("hep_tls") {
                hep_server::commands::send::plan(&send, &b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..])
                    .map_err(|e| format!("{e:#}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn every_command_line_of_the_docs_parses() {
    let examples = examples();
    let commands = examples.iter().filter(|e| !e.synopsis).count();
    assert!(
        commands >= 20 && examples.len() - commands >= 5,
        "the docs' examples were found ({} commands, {} synopses)",
        commands,
        examples.len() - commands
    );
    let mut problems = Vec::new();
    for e in &examples {
        let result = if e.synopsis || is_mention(&e.args) {
            check_names(e)
        } else {
            check_command(&e.args)
        };
        if let Err(why) = result {
            problems.push(format!(
                "{}: `hep-server {}`: {why}",
                e.at,
                e.args.join(" ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "stale examples:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_catch_what_went_stale_before() {
    // issue 15: the README's `--since -1h` did not parse.
    let args = shell_words("search --user alice --since -1h --format json");
    check_command(&args).unwrap();
    assert!(check_command(&shell_words("search --sinse -1h")).is_err());
    assert!(
        check_command(&shell_words(
            "send --dest hep_tcp:127.0.0.1:P --hep-version 2"
        ))
        .is_err()
    );
    assert!(check_command(&shell_words("run --output relay:hep_sctp:10.0.0.1")).is_err());
    let synopsis = Example {
        at: String::new(),
        args: shell_words("search [--store DIR] [--colour WHEN]"),
        synopsis: true,
    };
    assert!(check_names(&synopsis).unwrap_err().contains("--colour"));
    assert_eq!(
        command_in("valgrind --tool=callgrind hep-server run --listen hep_tcp:127.0.0.1:P &"),
        Some(shell_words("run --listen hep_tcp:127.0.0.1:P"))
    );
    assert_eq!(
        command_in("cargo run --release -p hep-server -- search --call-id 1 # the flow"),
        Some(shell_words("search --call-id 1"))
    );
    assert_eq!(command_in("cargo test -p hep-server --test send"), None);
}

// ===== configuration examples =====

/// The TOML blocks of the documentation.
fn toml_blocks() -> Vec<Block> {
    doc_files()
        .iter()
        .flat_map(|f| split_markdown(f).0)
        .filter(|b| b.lang == "toml")
        .collect()
}

/// `b` merged into `a`, tables key by key (`b` wins).
fn merge(a: &mut toml::Table, b: toml::Table) {
    for (k, v) in b {
        match (a.get_mut(&k), v) {
            (Some(toml::Value::Table(at)), toml::Value::Table(bt)) => merge(at, bt),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
}

#[test]
fn every_toml_block_of_the_docs_is_a_valid_config() {
    let blocks = toml_blocks();
    let text = |b: &Block| -> String { b.lines.iter().map(|(_, l)| format!("{l}\n")).collect() };
    // The complete example file of docs/CONFIG.md: a fragment (a section that needs
    // another, like `[tls.clients]` without `[tls]`) is checked inside it.
    let full = blocks
        .iter()
        .find(|b| b.at.starts_with("docs/CONFIG.md") && text(b).contains("[limits]"))
        .expect("docs/CONFIG.md's complete example file");
    let full_table: toml::Table = toml::from_str(&text(full)).unwrap();
    assert!(blocks.len() >= 3, "the docs' TOML blocks were found");
    let mut problems = Vec::new();
    for b in &blocks {
        let fragment = text(b);
        let alone = Config::parse(Path::new(&b.at), &fragment);
        let Err(alone) = alone else {
            continue;
        };
        let merged = match toml::from_str::<toml::Table>(&fragment) {
            Ok(t) => {
                let mut all = full_table.clone();
                merge(&mut all, t);
                Config::parse(Path::new(&b.at), &toml::to_string(&all).unwrap())
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(merged) = merged {
            problems.push(format!(
                "{}: alone: {alone}\n  inside the complete example: {merged}",
                b.at
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "stale config examples:\n{}",
        problems.join("\n")
    );
}

// ===== the README's first steps =====

/// README's set-up: the collector on its defaults (the store `hep-store` in the working
/// directory), the bundled Kamailio call replayed over UDP, then the README's own
/// `search --call-id` finds it. Only the port differs (a free one, not 5656).
#[test]
fn the_readme_flow_finds_the_call() {
    let readme = split_markdown(&repo().join("README.md")).0;
    let setup = readme
        .iter()
        .find(|b| b.lang == "sh")
        .expect("the set-up block");
    let search: Vec<String> = setup
        .lines
        .iter()
        .filter_map(|(_, l)| command_in(l))
        .find(|args| args.first().is_some_and(|a| a == "search"))
        .expect("a search in the set-up block");
    let replay = setup
        .lines
        .iter()
        .find(|(_, l)| l.contains("/dev/udp/"))
        .expect("the replay of the vectors");
    assert!(replay.1.contains("kamailio/v3-udp-0*.hep"), "{}", replay.1);

    let dir = test_dir("readme-flow");
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.current_dir(&dir)
        .args(["run", "--listen", "hep_udp:127.0.0.1:0"]);
    let server = Server::spawn(cmd);
    let vectors = set_bytes("v3-udp-");
    assert_eq!(vectors.len(), 12);
    send_udp(server.udp(), &vectors);
    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, 12, "{}", stopped.stderr);

    let out = std::process::Command::new(common::BIN)
        .current_dir(&dir)
        .args(&search)
        .args(["--color", "never"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`hep-server {}` found nothing: {}{}",
        search.join(" "),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    for what in ["INVITE", "180", "200", "ACK", "BYE"] {
        assert!(stdout.contains(what), "{what} in the ladder:\n{stdout}");
    }
}
