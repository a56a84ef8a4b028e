//! Every public item of the SDK shows how it is used: a doc example above
//! each `pub fn`, `pub struct`, `pub enum`, `pub trait`, `pub type`,
//! `pub const` and exported macro of `src/` (those of private modules and
//! hidden ones aside).

use std::path::Path;

/// Modules whose items are not public: not re-exported, not reachable.
const PRIVATE: &[&str] = &["src/row.rs:read_rows"];

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_public_item_has_a_doc_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("src"), &mut paths);
    let kinds = [
        "pub fn ",
        "pub const fn ",
        "pub unsafe fn ",
        "pub struct ",
        "pub enum ",
        "pub trait ",
        "pub type ",
        "pub const ",
    ];
    let mut missing = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        let rel = path
            .strip_prefix(root)
            .expect("under the crate")
            .display()
            .to_string();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let exported_macro =
                t.starts_with("macro_rules!") && i > 0 && lines[i - 1].trim() == "#[macro_export]";
            let Some(kind) = kinds.iter().find(|k| t.starts_with(*k)) else {
                if !exported_macro {
                    continue;
                }
                missing.extend(check(&lines, i, &rel, t));
                continue;
            };
            let name: String = t[kind.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if PRIVATE.contains(&format!("{rel}:{name}").as_str()) {
                continue;
            }
            missing.extend(check(&lines, i, &rel, t));
        }
    }
    assert!(
        missing.is_empty(),
        "public items without a doc example:\n{}",
        missing.join("\n")
    );
}

/// The item on line `i`, if its doc comment has no example and it is not hidden.
fn check(lines: &[&str], i: usize, file: &str, item: &str) -> Option<String> {
    let mut j = i;
    let (mut example, mut hidden) = (false, false);
    while j > 0 {
        j -= 1;
        let t = lines[j].trim();
        if t.starts_with("///") {
            example |= t.contains("```");
        } else if t.starts_with("#[") {
            hidden |= t.contains("doc(hidden)");
        } else {
            break;
        }
    }
    (!example && !hidden).then(|| format!("{file}:{}: {item}", i + 1))
}
