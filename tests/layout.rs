//! The layout rules of `src/`, checked on the source text (see
//! docs/DESIGN.md, "The shape"):
//!
//! - nothing under `src/http/` imports from `crate::protocol`: the kernel
//!   sits below the protocols;
//! - nothing under `src/store/` but the RocksDB metadata implementation
//!   ([`ROCKS_META`]) names `rocksdb::`;
//! - no source file is over [`MAX_LINES`] lines;
//! - no import cycle between files.
//!
//! The file graph: an edge from a file to every file it names through a
//! `use` of `crate::`, `super::`, `self::` or a child module, or through a
//! path in its code that starts with `crate::`, `super::`, a child
//! module's name or a name a `use` brought in (`engine::lock`;
//! `store::Error` after `use crate::store`). Test modules count: they are
//! part of their file. A path goes to the file of its longest module
//! prefix (`crate::a::b::C` is `src/a/b.rs` or `src/a/b/mod.rs`, else
//! `src/a.rs`…); an item a module file re-exports (`pub use self::x::C`,
//! or a glob) is followed to the file it comes from, so `use
//! crate::store::Store` depends on `src/store/engine.rs`, not on the
//! facade `src/store/mod.rs`. A parent declaring its children (`mod x;`)
//! or re-exporting their items is their facade, not their dependant:
//! neither is an edge. `depot::` (the binary naming the library) counts as
//! `crate::`. Comments and literals are blanked before anything is read.
//! `#[path]` attributes and macro-generated paths are not followed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The one file under `src/store/` that may name RocksDB.
const ROCKS_META: &str = "src/store/meta/rocks.rs";
const MAX_LINES: usize = 700;

/// Source files by path from the crate root (`src/store/gc.rs`).
type Tree = BTreeMap<String, String>;

/// A module path from the crate root (`["store", "gc"]`).
type ModPath = Vec<String>;

/// The `.rs` files under `dir`, read.
fn read_tree(root: &Path, dir: &str, tree: &mut Tree) {
    for entry in std::fs::read_dir(root.join(dir)).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            read_tree(root, &name, tree);
        } else if name.ends_with(".rs") {
            tree.insert(name, std::fs::read_to_string(entry.path()).unwrap());
        }
    }
}

/// `src` with comments, string, byte-string and char literals replaced by
/// spaces (newlines kept, so line numbers stay right).
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    // Blanks c[from..to] into `out`.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &ch in &c[from..to.min(c.len())] {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        let end = if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            c[i..].iter().position(|&x| x == '\n').map_or(c.len(), |n| i + n)
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    (depth, j) = (depth + 1, j + 2);
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    (depth, j) = (depth - 1, j + 2);
                } else {
                    j += 1;
                }
            }
            j
        } else if !prev_ident && raw_string_start(&c, i).is_some() {
            let (open, hashes) = raw_string_start(&c, i).unwrap();
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let mut j = open + 1;
            while j < c.len() && !c[j..].starts_with(&close) {
                j += 1;
            }
            j + close.len()
        } else if c[i] == '"' || (!prev_ident && c[i] == 'b' && c.get(i + 1) == Some(&'"')) {
            let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if c[i] == '\'' {
            // A char literal ('a', '\n', '\u{1b}'), not a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                j + 1
            } else if c.get(i + 2) == Some(&'\'') {
                i + 3
            } else {
                i
            }
        } else {
            i
        };
        if end > i {
            blank(&mut out, i, end);
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Where a raw (byte) string starts at `i` (`r"`, `r#"`, `br##"`): the
/// index of its opening quote and the number of `#`.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&x| x == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some((j + hashes, hashes))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// Identifiers, `::` and single punctuation of blanked code, with lines.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            if c[i].is_alphanumeric() || c[i] == '_' {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(c[start..i].iter().collect()), n + 1));
            } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
                out.push((Tok::Sep, n + 1));
                i += 2;
            } else {
                if !c[i].is_whitespace() {
                    out.push((Tok::Punct(c[i]), n + 1));
                }
                i += 1;
            }
        }
    }
    out
}

fn is_ident(t: Option<&(Tok, usize)>, s: &str) -> bool {
    matches!(t, Some((Tok::Ident(x), _)) if x == s)
}

/// A path a file names: its segments as written, the module it is read in,
/// its line, and whether it is a `pub use` (a re-export).
#[derive(Debug, Clone)]
struct Ref {
    segs: Vec<String>,
    glob: bool,
    /// The name it is visible under, for a `use` (its last segment or `as`).
    alias: Option<String>,
    module: ModPath,
    line: usize,
    reexport: bool,
    /// Read at the file's top level (not in an inline module or a function).
    top: bool,
}

/// What one file says: the paths it names and the items it defines.
#[derive(Debug, Default)]
struct FileFacts {
    refs: Vec<Ref>,
    defines: BTreeSet<String>,
    /// `rocksdb::` in code: the lines.
    rocksdb: Vec<usize>,
}

/// Parses a `use` tree from `toks[*i]`, after `use`, up to its `;`.
fn use_tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, bool, Option<String>)>,
) {
    let mut segs = prefix;
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Ident(s)) if s == "as" => {
                *i += 1;
                let alias = match toks.get(*i).map(|t| &t.0) {
                    Some(Tok::Ident(a)) => Some(a.clone()),
                    _ => None,
                };
                *i += 1;
                out.push((segs, false, alias));
                return;
            }
            Some(Tok::Ident(s)) => {
                segs.push(s.clone());
                *i += 1;
            }
            Some(Tok::Sep) => *i += 1,
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push((segs, true, None));
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        None => return,
                        _ => use_tree(toks, i, segs.clone(), out),
                    }
                }
            }
            _ => {
                // `self` in a group names the group's own path.
                if segs.last().is_some_and(|s| s == "self") {
                    segs.pop();
                }
                let alias = segs.last().cloned();
                out.push((segs, false, alias));
                return;
            }
        }
    }
}

/// The module path of a file; `None` for the binary's root.
fn module_of(file: &str) -> Option<ModPath> {
    let rel = file.strip_prefix("src/")?.strip_suffix(".rs")?;
    if rel == "main" {
        return None;
    }
    let mut segs: ModPath = rel.split('/').map(str::to_string).collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    Some(segs)
}

/// Reads one file's paths, definitions and `rocksdb::` mentions.
fn facts(file: &str, src: &str, children: &dyn Fn(&ModPath, &str) -> bool) -> FileFacts {
    let code = blank_comments_and_literals(src);
    let toks = tokens(&code);
    let base = module_of(file).unwrap_or_default();
    let mut f = FileFacts::default();
    // Inline modules open at a brace depth; any other brace (fn bodies,
    // impls) makes a `use` non-top-level too.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    // Names a `use` brought in (a module, usually: `use crate::store;`),
    // so that `store::Error` in code reads as `crate::store::Error`.
    let mut aliases: BTreeMap<String, (Vec<String>, ModPath)> = BTreeMap::new();
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        let module =
            || -> ModPath { base.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect() };
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                    f.defines.insert(name.clone());
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(k) if k == "use" => {
                let reexport = is_ident(i.checked_sub(1).and_then(|p| toks.get(p)), "pub")
                    || (matches!(toks.get(i.wrapping_sub(1)), Some((Tok::Punct(')'), _)))
                        && toks[..i].iter().rev().take(6).any(|t| t.0 == Tok::Ident("pub".into())));
                let mut trees = Vec::new();
                i += 1;
                use_tree(&toks, &mut i, Vec::new(), &mut trees);
                let m = module();
                let top = depth == inline.len();
                for (segs, glob, alias) in trees {
                    let root = segs.first().map(String::as_str);
                    let ours = matches!(root, Some("crate" | "super" | "self" | "depot"))
                        || root.is_some_and(|r| children(&m, r));
                    if ours {
                        if let Some(a) = alias.as_ref().filter(|_| !glob) {
                            aliases.insert(a.clone(), (segs.clone(), m.clone()));
                        }
                        f.refs.push(Ref { segs, glob, alias, module: m.clone(), line, reexport, top });
                    }
                }
                continue;
            }
            Tok::Ident(k) if k == "rocksdb" && matches!(toks.get(i + 1), Some((Tok::Sep, _))) => {
                f.rocksdb.push(line)
            }
            Tok::Ident(k)
                if matches!(
                    k.as_str(),
                    "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "union"
                ) =>
            {
                if let Some((Tok::Ident(name), _)) = toks.get(i + 1) {
                    f.defines.insert(name.clone());
                }
            }
            Tok::Ident(k) if k == "macro_rules" => {
                if let Some((Tok::Ident(name), _)) = toks.get(i + 2) {
                    f.defines.insert(name.clone());
                }
            }
            Tok::Ident(root) => {
                // A path in code: `crate::…`, `super::…`, `self::…`, a
                // child module's name or a name a `use` brought in, at the
                // start of a path (not after `::`, `$`, `.` or `in`).
                let after = matches!(toks.get(i + 1), Some((Tok::Sep, _)));
                let starts = !matches!(
                    i.checked_sub(1).map(|p| &toks[p].0),
                    Some(Tok::Sep | Tok::Punct('$') | Tok::Punct('.'))
                ) && !is_ident(i.checked_sub(1).and_then(|p| toks.get(p)), "in");
                let mut m = module();
                let keyword = matches!(root.as_str(), "crate" | "super" | "self" | "depot");
                let (mut segs, ours) = match aliases.get(root) {
                    Some((target, context)) if !keyword && !children(&m, root) => {
                        m = context.clone();
                        (target.clone(), true)
                    }
                    _ => (vec![root.clone()], keyword || children(&m, root)),
                };
                if after && starts && ours {
                    let mut j = i + 1;
                    while let (Some((Tok::Sep, _)), Some((Tok::Ident(s), _))) = (toks.get(j), toks.get(j + 1))
                    {
                        segs.push(s.clone());
                        j += 2;
                    }
                    let top = depth == inline.len();
                    f.refs.push(Ref {
                        segs,
                        glob: false,
                        alias: None,
                        module: m,
                        line,
                        reexport: false,
                        top,
                    });
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    f
}

/// The crate's files, what each says, and the graph between them.
struct Layout {
    files: Tree,
    /// Module path → file.
    modules: BTreeMap<ModPath, String>,
    facts: BTreeMap<String, FileFacts>,
}

/// One dependency: from a file, at a line, to a file; and the absolute
/// module path it named.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    line: usize,
    to: String,
    named: ModPath,
}

impl Layout {
    fn new(files: Tree) -> Layout {
        let modules: BTreeMap<ModPath, String> =
            files.keys().filter_map(|f| Some((module_of(f)?, f.clone()))).collect();
        let is_child = |m: &ModPath, name: &str| {
            let mut p = m.clone();
            p.push(name.to_string());
            modules.contains_key(&p)
        };
        let facts = files.iter().map(|(f, src)| (f.clone(), facts(f, src, &is_child))).collect();
        Layout { files, modules, facts }
    }

    /// The absolute module path `segs` names when read in `module`.
    fn absolute(&self, segs: &[String], module: &ModPath) -> ModPath {
        let mut at: ModPath;
        let mut rest = segs;
        match segs.first().map(String::as_str) {
            Some("crate" | "depot") => {
                at = Vec::new();
                rest = &segs[1..];
            }
            Some("self") => {
                at = module.clone();
                rest = &segs[1..];
            }
            Some("super") => {
                at = module.clone();
                while rest.first().is_some_and(|s| s == "super") {
                    at.pop();
                    rest = &rest[1..];
                }
            }
            // A child module by its name.
            _ => at = module.clone(),
        }
        at.extend(rest.iter().cloned());
        at
    }

    /// The file an absolute path leads to: its longest module prefix, then
    /// through that module's re-exports of the next segment.
    fn file_of(&self, path: &ModPath, hops: usize) -> Option<String> {
        let n = (0..=path.len()).rev().find(|&n| self.modules.contains_key(&path[..n]))?;
        let file = self.modules[&path[..n]].clone();
        let Some(item) = path.get(n) else { return Some(file) };
        if hops > 8 {
            return Some(file);
        }
        let f = &self.facts[&file];
        let reexports = f.refs.iter().filter(|r| r.reexport && r.top);
        if let Some(r) = reexports.clone().find(|r| !r.glob && r.alias.as_deref() == Some(item)) {
            return self.file_of(&self.absolute(&r.segs, &r.module), hops + 1).or(Some(file));
        }
        if f.defines.contains(item) {
            return Some(file);
        }
        let globs: Vec<&Ref> = reexports.filter(|r| r.glob).collect();
        for g in &globs {
            let target = self.absolute(&g.segs, &g.module);
            if let Some(tf) = self.modules.get(&target) {
                let tfacts = &self.facts[tf];
                if tfacts.defines.contains(item)
                    || tfacts.refs.iter().any(|r| r.reexport && r.alias.as_deref() == Some(item))
                {
                    let mut p = target.clone();
                    p.push(item.clone());
                    return self.file_of(&p, hops + 1);
                }
            }
        }
        if let [g] = globs.as_slice() {
            return self.file_of(&self.absolute(&g.segs, &g.module), hops + 1);
        }
        Some(file)
    }

    /// Every dependency between two different files.
    fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::new();
        for (file, f) in &self.facts {
            let own = module_of(file);
            for r in &f.refs {
                let named = self.absolute(&r.segs, &r.module);
                let Some(to) = self.file_of(&named, 0) else { continue };
                // A facade re-exporting its own descendants does not depend on them.
                let facade =
                    r.reexport && own.as_ref().is_some_and(|m| named.starts_with(m) && named.len() > m.len());
                if to != *file && !facade {
                    out.push(Edge { from: file.clone(), line: r.line, to, named });
                }
            }
        }
        out
    }

    /// Files under `src/http/` naming anything in `crate::protocol`.
    fn http_importing_protocol(&self) -> Vec<String> {
        self.edges()
            .into_iter()
            .filter(|e| e.from.starts_with("src/http/") && e.named.first().is_some_and(|s| s == "protocol"))
            .map(|e| format!("{}:{} imports crate::{}", e.from, e.line, e.named.join("::")))
            .collect()
    }

    /// Files under `src/store/` other than [`ROCKS_META`] naming `rocksdb::`.
    fn rocksdb_outside_its_backend(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (file, f) in &self.facts {
            if file.starts_with("src/store/") && file != ROCKS_META {
                out.extend(f.rocksdb.iter().map(|line| format!("{file}:{line} names rocksdb::")));
            }
        }
        out
    }

    fn long_files(&self) -> Vec<String> {
        let long = self.files.iter().map(|(f, src)| (f, src.lines().count())).filter(|&(_, n)| n > MAX_LINES);
        long.map(|(f, n)| format!("{f} has {n} lines (at most {MAX_LINES})")).collect()
    }

    /// Every import cycle: one per strongly connected group of files, as a
    /// path through it with the line of each step.
    fn cycles(&self) -> Vec<String> {
        let edges = self.edges();
        let mut next: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for e in &edges {
            next.entry(&e.from).or_default().entry(&e.to).or_insert(e.line);
        }
        let nodes: BTreeSet<&str> = edges.iter().flat_map(|e| [e.from.as_str(), e.to.as_str()]).collect();
        fn reach<'a>(next: &BTreeMap<&'a str, BTreeMap<&'a str, usize>>, from: &'a str) -> BTreeSet<&'a str> {
            let mut seen = BTreeSet::from([from]);
            let mut todo = vec![from];
            while let Some(n) = todo.pop() {
                for &m in next.get(n).map(|m| m.keys()).into_iter().flatten() {
                    if seen.insert(m) {
                        todo.push(m);
                    }
                }
            }
            seen
        }
        let reachable: BTreeMap<&str, BTreeSet<&str>> = nodes.iter().map(|&n| (n, reach(&next, n))).collect();
        let mut done = BTreeSet::new();
        let mut out = Vec::new();
        for &n in &nodes {
            if done.contains(n) {
                continue;
            }
            let group: BTreeSet<&str> =
                reachable[n].iter().copied().filter(|m| reachable[m].contains(n)).collect();
            done.extend(group.iter().copied());
            if group.len() < 2 {
                continue;
            }
            // The shortest way back to `n` inside the group.
            let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = VecDeque::from([n]);
            'search: while let Some(a) = queue.pop_front() {
                for &b in next[a].keys() {
                    if !group.contains(b) || prev.contains_key(b) {
                        continue;
                    }
                    prev.insert(b, a);
                    if b == n {
                        break 'search;
                    }
                    queue.push_back(b);
                }
            }
            let mut path = vec![n];
            let mut at = prev[n];
            while at != n {
                path.push(at);
                at = prev[at];
            }
            path.push(n);
            path.reverse();
            let steps: Vec<String> =
                path.windows(2).map(|w| format!("{} (line {}) → ", w[0], next[w[0]][w[1]])).collect();
            let members = group.iter().copied().collect::<Vec<_>>().join(", ");
            out.push(format!("cycle {}{n}; the files in it: {members}", steps.concat()));
        }
        out
    }

    /// Every broken rule, named.
    fn problems(&self) -> Vec<String> {
        let mut out = self.http_importing_protocol();
        out.extend(self.rocksdb_outside_its_backend());
        out.extend(self.long_files());
        out.extend(self.cycles());
        out
    }
}

fn crate_tree() -> Tree {
    let mut tree = Tree::new();
    read_tree(Path::new(env!("CARGO_MANIFEST_DIR")), "src", &mut tree);
    tree
}

#[test]
fn src_follows_the_layout_rules() {
    let tree = crate_tree();
    assert!(tree.contains_key(ROCKS_META), "{ROCKS_META} moved: say where RocksDB may be named");
    let problems = Layout::new(tree).problems();
    assert!(problems.is_empty(), "{} layout problems:\n{}", problems.len(), problems.join("\n"));
}

/// The rules catch each kind of violation planted in the real tree.
#[test]
fn planted_violations_in_the_real_tree_are_named() {
    let mut tree = crate_tree();
    let add = |tree: &mut Tree, file: &str, text: &str| tree.get_mut(file).unwrap().push_str(text);
    // The store depending on the HTTP kernel, which depends on the store.
    add(&mut tree, "src/store/engine.rs", "\nfn planted(_: &crate::http::AppState) {}\n");
    add(&mut tree, "src/http/ops.rs", "\nuse crate::protocol::range;\n");
    add(&mut tree, "src/store/chunks.rs", "\nfn planted() -> rocksdb::Options { todo!() }\n");
    add(&mut tree, "src/decimal.rs", &"\n".repeat(MAX_LINES));
    let problems = Layout::new(tree).problems().join("\n");
    assert!(problems.contains("src/http/ops.rs:"), "{problems}");
    assert!(problems.contains("imports crate::protocol::range"), "{problems}");
    assert!(problems.contains("src/store/chunks.rs:"), "{problems}");
    assert!(problems.contains("src/decimal.rs has"), "{problems}");
    let cycle = problems.lines().find(|l| l.starts_with("cycle ") && l.contains("src/store/engine.rs"));
    assert!(cycle.is_some_and(|c| c.contains("src/http/mod.rs")), "{problems}");
}

fn tree(files: &[(&str, &str)]) -> Tree {
    files.iter().map(|(f, s)| (f.to_string(), s.to_string())).collect()
}

#[test]
fn a_cycle_between_siblings_is_reported_with_its_path() {
    let t = tree(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("src/a.rs", "use crate::b::B;\npub struct A;\n"),
        ("src/b.rs", "pub struct B;\nfn f() -> super::c::C { todo!() }\n"),
        ("src/c.rs", "pub struct C(crate::a::A);\n"),
    ]);
    let cycles = Layout::new(t).cycles();
    assert_eq!(
        cycles,
        ["cycle src/a.rs (line 1) → src/b.rs (line 2) → src/c.rs (line 1) → src/a.rs; \
          the files in it: src/a.rs, src/b.rs, src/c.rs"],
    );
}

#[test]
fn a_facade_and_its_children_are_no_cycle_but_a_parent_using_its_child_is() {
    let facade = [
        ("src/lib.rs", "pub mod m;\n"),
        ("src/m/mod.rs", "mod x;\nmod y;\nmod z;\npub use self::x::X;\npub use self::y::*;\n"),
        ("src/m/x.rs", "use super::Y;\npub struct X;\n"),
        ("src/m/y.rs", "pub struct Y;\n"),
        ("src/m/z.rs", "fn f(_: super::X) {}\n"),
    ];
    let l = Layout::new(tree(&facade));
    assert_eq!(l.cycles(), Vec::<String>::new());
    // Items are followed through the facade (a glob and a named re-export).
    let edges: Vec<(String, String)> = l.edges().into_iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        edges,
        [("src/m/x.rs".to_string(), "src/m/y.rs".to_string()), ("src/m/z.rs".into(), "src/m/x.rs".into())]
    );

    // The parent's own code using a child that uses the parent's items.
    let mut t = tree(&facade[..1]);
    t.extend(tree(&[
        ("src/m/mod.rs", "mod x;\npub struct Shared;\nfn f() { x::run(); }\n"),
        ("src/m/x.rs", "pub fn run(_: &super::Shared) {}\n"),
    ]));
    let cycles = Layout::new(t).cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].starts_with("cycle src/m/mod.rs (line 3) → src/m/x.rs (line 1) → src/m/mod.rs"));
}

#[test]
fn a_module_brought_in_by_use_is_followed_to_the_item_it_names() {
    let t = tree(&[
        ("src/lib.rs", "pub mod s;\npub mod h;\n"),
        ("src/s/mod.rs", "mod e;\nmod x;\npub use self::e::Error;\n"),
        ("src/s/e.rs", "pub enum Error { A }\n"),
        ("src/s/x.rs", "pub struct X;\n"),
        ("src/h.rs", "use crate::s;\nfn f() -> s::Error {\n    s::Error::A\n}\n"),
    ]);
    let edges: Vec<(String, usize, String)> =
        Layout::new(t).edges().into_iter().map(|e| (e.from, e.line, e.to)).collect();
    let to_e = |line| ("src/h.rs".to_string(), line, "src/s/e.rs".to_string());
    assert_eq!(edges, [("src/h.rs".to_string(), 1, "src/s/mod.rs".to_string()), to_e(2), to_e(3)]);
}

#[test]
fn comments_strings_and_test_modules_are_not_imports() {
    let t = tree(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/a.rs",
            "// use crate::b::B;\n/* crate::b::B /* nested */ crate::b::B */\n\
             const S: &str = \"crate::b::B\";\nconst R: &str = r#\"use crate::b::B;\"#;\n\
             fn f<'a>(x: &'a str) -> char { 'x' }\npub struct A;\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
        ("src/b.rs", "use crate::a::A;\n"),
    ]);
    let l = Layout::new(t);
    let edges: Vec<(String, usize, String)> = l.edges().into_iter().map(|e| (e.from, e.line, e.to)).collect();
    assert_eq!(edges, [("src/b.rs".to_string(), 1, "src/a.rs".to_string())]);
    assert!(l.cycles().is_empty());
}

#[test]
fn http_importing_protocol_and_rocksdb_outside_its_backend_are_named() {
    let t = tree(&[
        ("src/lib.rs", "pub mod http;\npub mod protocol;\npub mod store;\n"),
        ("src/http/mod.rs", "pub mod error;\nuse crate::protocol::tus;\n"),
        ("src/http/error.rs", "fn f() { super::super::protocol::files::list(); }\n"),
        ("src/protocol/mod.rs", "pub mod files;\npub mod tus;\n"),
        ("src/protocol/files.rs", "pub fn list() {}\n"),
        ("src/protocol/tus.rs", "use crate::http;\n"),
        ("src/store/mod.rs", "pub mod meta;\nmod gc;\n"),
        ("src/store/gc.rs", "// rocksdb::DB in a comment is fine\nfn f(_: rocksdb::WriteBatch) {}\n"),
        ("src/store/meta/mod.rs", "pub mod rocks;\n"),
        ("src/store/meta/rocks.rs", "use rocksdb::DB;\n"),
    ]);
    let l = Layout::new(t);
    assert_eq!(
        l.http_importing_protocol(),
        [
            "src/http/error.rs:1 imports crate::protocol::files::list",
            "src/http/mod.rs:2 imports crate::protocol::tus"
        ]
    );
    assert_eq!(l.rocksdb_outside_its_backend(), ["src/store/gc.rs:2 names rocksdb::"]);
    assert!(l.long_files().is_empty());
}
