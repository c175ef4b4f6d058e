//! `cargo xtask structure`: the workspace's shape, checked.
//!
//! - **No import cycle between modules.** In each library crate, the modules that are
//!   children of one parent must not import each other in a circle: `config` taking
//!   `output`'s types while `output` takes `config`'s makes both one module in two files,
//!   which nobody can read, test or change alone. A module may use its parent's items and
//!   its parent its children's (a `mod.rs` re-exporting, a child using the error type of
//!   its parent): that is how Rust modules nest, so only edges between siblings (the two
//!   children of the nearest common ancestor the importer and the imported sit under)
//!   count. Test modules (`#[cfg(test)]`) are left out: a test may reach anywhere.
//! - **Lean callback crate.** A program depending on `hep-callbacks` alone builds no TLS,
//!   socket or UDP-offload crate (`cargo tree -e normal`): a callback is no IO.
//! - **Sans-IO codec.** hep-proto builds without its default `codec` feature (no
//!   tokio-util): `cargo check -p hep-proto --no-default-features`.
//!
//! Paths are read with `syn`: every `use` tree and every path in code that starts with
//! `crate`, `self` or `super`, resolved to the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use syn::visit::Visit;

use crate::Workspace;

/// The library crates whose modules are checked, by their source roots.
const CRATES: &[(&str, &str)] = &[
    ("hep-proto", "hep-proto/src/lib.rs"),
    ("hep-transport", "hep-transport/src/lib.rs"),
    ("hep-callbacks", "hep-callbacks/src/lib.rs"),
    ("hep-server", "hep-server/src/lib.rs"),
    ("hep-testkit", "hep-testkit/src/lib.rs"),
];

/// Crates a build of `hep-callbacks` alone must not contain.
const NOT_IN_CALLBACKS: &[&str] = &["rustls", "tokio-rustls", "quinn-udp", "socket2", "ring"];

/// Runs the checks; an error lists every cycle, every crate that should not be there, and
/// a failed build without the codec feature.
pub(crate) fn run(ws: &Workspace) -> Result<()> {
    let mut problems = String::new();
    for (name, root) in CRATES {
        let graph = ModuleGraph::read(&ws.root().join(root))
            .with_context(|| format!("reading the modules of {name}"))?;
        let cycles = graph.sibling_cycles();
        println!(
            "    {name}: {} modules, {} import cycle(s)",
            graph.modules.len(),
            cycles.len()
        );
        for cycle in cycles {
            let _ = writeln!(
                problems,
                "{name}: modules import each other in a circle:\n{cycle}"
            );
        }
    }
    let tree = ws
        .cargo()
        .args([
            "tree",
            "-p",
            "hep-callbacks",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .read_stdout()?;
    let heavy: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|krate| NOT_IN_CALLBACKS.contains(krate))
        .collect();
    if heavy.is_empty() {
        println!("    hep-callbacks alone builds none of {NOT_IN_CALLBACKS:?}");
    } else {
        let _ = writeln!(
            problems,
            "hep-callbacks alone builds {heavy:?}: a callback crate needs no TLS, sockets or UDP offload"
        );
    }
    let sans_io = ws
        .cargo()
        .args([
            "check",
            "-q",
            "-p",
            "hep-proto",
            "--no-default-features",
            "--lib",
        ])
        .run();
    match sans_io {
        Ok(()) => println!("    hep-proto builds without its codec feature"),
        Err(e) => {
            let _ = writeln!(problems, "hep-proto without its codec feature: {e:#}");
        }
    }
    if !problems.is_empty() {
        bail!("{problems}");
    }
    Ok(())
}

/// The modules of one crate and the sibling edges between them.
#[derive(Debug, Default)]
struct ModuleGraph {
    /// Every module, as its path from the crate root (`[]` is the root).
    modules: BTreeSet<Vec<String>>,
    /// `(from, to) -> an example`: module `from` uses something of module `to`.
    uses: BTreeMap<(Vec<String>, Vec<String>), String>,
}

impl ModuleGraph {
    /// Reads the module tree from the crate root file `root`.
    fn read(root: &Path) -> Result<Self> {
        let mut graph = Self::default();
        let mut raw = Vec::new();
        let dir = root.parent().context("a crate root has a directory")?;
        read_file(root, dir, &[], &mut graph.modules, &mut raw)?;
        for (from, path) in raw {
            if let Some(to) = graph.resolve(&from, &path) {
                let example = format!("{} uses {}", display(&from), display(&path));
                graph.uses.entry((from, to)).or_insert(example);
            }
        }
        Ok(graph)
    }

    /// The module an absolute path (from the crate root) names: its longest prefix that
    /// is a module.
    fn resolve(&self, _from: &[String], path: &[String]) -> Option<Vec<String>> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.modules.contains(p))
    }

    /// Each circle of sibling modules (a strongly connected set of two or more), with
    /// one use behind each of its edges.
    fn sibling_cycles(&self) -> Vec<String> {
        // Sibling edges, grouped by their parent.
        let mut by_parent: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> =
            BTreeMap::new();
        let mut examples: BTreeMap<(Vec<String>, String, String), &String> = BTreeMap::new();
        for ((from, to), example) in &self.uses {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // One is the other's ancestor.
            }
            let parent = from[..common].to_vec();
            let (a, b) = (from[common].clone(), to[common].clone());
            by_parent
                .entry(parent.clone())
                .or_default()
                .entry(a.clone())
                .or_default()
                .insert(b.clone());
            examples.entry((parent, a, b)).or_insert(example);
        }
        let mut cycles = Vec::new();
        for (parent, edges) in &by_parent {
            for scc in strongly_connected(edges) {
                let mut text = String::new();
                for a in &scc {
                    for b in edges
                        .get(a)
                        .into_iter()
                        .flatten()
                        .filter(|b| scc.contains(*b))
                    {
                        let child =
                            |n: &str| display(&[parent.clone(), vec![n.to_owned()]].concat());
                        let why = examples[&(parent.clone(), a.clone(), b.clone())];
                        let _ = writeln!(text, "  {} -> {} (e.g. {why})", child(a), child(b));
                    }
                }
                cycles.push(text);
            }
        }
        cycles
    }
}

/// `crate::a::b`.
fn display(module: &[String]) -> String {
    std::iter::once("crate")
        .chain(module.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("::")
}

/// Reads the module in `file` (whose child modules' files are in `dir`), named `module`:
/// records it and its children, and the absolute paths its code uses.
fn read_file(
    file: &Path,
    dir: &Path,
    module: &[String],
    modules: &mut BTreeSet<Vec<String>>,
    raw: &mut Vec<(Vec<String>, Vec<String>)>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
    read_items(&ast.items, dir, module, modules, raw)
}

/// Records `module` with the items `items` (its children's files in `dir`).
fn read_items(
    items: &[syn::Item],
    dir: &Path,
    module: &[String],
    modules: &mut BTreeSet<Vec<String>>,
    raw: &mut Vec<(Vec<String>, Vec<String>)>,
) -> Result<()> {
    modules.insert(module.to_vec());
    let mut paths = Paths {
        module,
        found: Vec::new(),
    };
    for item in items {
        if is_test_only(item) {
            continue;
        }
        if let syn::Item::Mod(m) = item {
            let child: Vec<String> = [module, &[m.ident.to_string()]].concat();
            match &m.content {
                Some((_, inner)) => {
                    read_items(inner, &dir.join(m.ident.to_string()), &child, modules, raw)?
                }
                None => {
                    let name = m.ident.to_string();
                    let (child_file, child_dir) = child_file(dir, &name, m)?;
                    read_file(&child_file, &child_dir, &child, modules, raw)?;
                }
            }
            continue;
        }
        paths.visit_item(item);
    }
    raw.extend(paths.found.into_iter().map(|p| (module.to_vec(), p)));
    Ok(())
}

/// The file of the child module `name` declared in a module whose children are in `dir`,
/// and the directory of its own children.
fn child_file(dir: &Path, name: &str, m: &syn::ItemMod) -> Result<(PathBuf, PathBuf)> {
    let flat = dir.join(format!("{name}.rs"));
    let nested = dir.join(name).join("mod.rs");
    if m.attrs.iter().any(|a| a.path().is_ident("path")) {
        bail!(
            "{}: `#[path]` on `mod {name}` is not supported by this check",
            dir.display()
        );
    }
    if flat.is_file() {
        Ok((flat, dir.join(name)))
    } else if nested.is_file() {
        Ok((nested, dir.join(name)))
    } else {
        bail!("no file for `mod {name}` in {}", dir.display())
    }
}

/// Whether an item is compiled for tests only (`#[cfg(test)]`).
fn is_test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        _ => return false,
    };
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string() == "test")
    })
}

/// Collects the absolute paths a module's items use.
struct Paths<'m> {
    module: &'m [String],
    found: Vec<Vec<String>>,
}

impl Paths<'_> {
    /// `segments` (a path as written in this module) made absolute, if it starts with
    /// `crate`, `self` or `super`.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => self.module.to_vec(),
            _ => return None,
        };
        let mut rest = if first == "crate" || first == "self" {
            &segments[1..]
        } else {
            segments
        };
        while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
            base.pop()?;
            rest = tail;
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn record(&mut self, segments: &[String]) {
        if let Some(p) = self.absolute(segments) {
            self.found.push(p);
        }
    }

    /// Every path of a `use` tree, with `prefix` before it.
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                if name == "self" {
                    self.record(prefix);
                } else {
                    prefix.push(name);
                    self.record(prefix);
                    prefix.pop();
                }
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.record(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.record(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(t, prefix);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.record(&segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // A module inside a function body: not part of the tree this check reads.
    }
}

/// The strongly connected sets of two or more nodes of `edges` (Tarjan's algorithm).
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn connect<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                connect(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            connect(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry((*a).to_owned())
                .or_default()
                .insert((*b).to_owned());
        }
        e
    }

    #[test]
    fn a_circle_is_found_and_a_chain_is_not() {
        let chain = edges(&[("a", "b"), ("b", "c")]);
        assert!(strongly_connected(&chain).is_empty());
        let circle = edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]);
        let found = strongly_connected(&circle);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    /// A crate in a temporary directory: `files` as (path under src, text).
    fn crate_with(name: &str, files: &[(&str, &str)]) -> ModuleGraph {
        let dir =
            std::env::temp_dir().join(format!("xtask-structure-{name}-{}", std::process::id()));
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let g = ModuleGraph::read(&dir.join("lib.rs")).expect("reads");
        std::fs::remove_dir_all(&dir).expect("cleans up");
        g
    }

    #[test]
    fn siblings_using_each_other_are_a_cycle_parents_and_children_are_not() {
        let g = crate_with(
            "cycle",
            &[
                ("lib.rs", "mod config; mod output; pub use output::Spec;"),
                ("config.rs", "use crate::output::Spec; pub struct Config;"),
                ("output/mod.rs", "mod set; pub use set::Spec;"),
                (
                    "output/set.rs",
                    "pub struct Spec; fn f(_: super::super::config::Config) {}",
                ),
            ],
        );
        let cycles = g.sibling_cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert!(
            cycles[0].contains("crate::config -> crate::output"),
            "{}",
            cycles[0]
        );
        assert!(
            cycles[0].contains("crate::output -> crate::config"),
            "{}",
            cycles[0]
        );
    }

    #[test]
    fn tests_may_reach_anywhere() {
        let g = crate_with(
            "tests",
            &[
                ("lib.rs", "mod a; mod b;"),
                (
                    "a.rs",
                    "pub struct A; #[cfg(test)] mod tests { use crate::b::B; }",
                ),
                ("b.rs", "pub struct B; fn f(_: crate::a::A) {}"),
            ],
        );
        assert!(g.sibling_cycles().is_empty());
    }
}
