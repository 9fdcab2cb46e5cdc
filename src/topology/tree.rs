//! The file's TOML tree, parsed once. `text.parse::<toml::Table>()` parses into toml's
//! borrowed `DeTable` and then rebuilds it as a `Table` through serde's visitors; the origin
//! map needs the `DeTable` (its spans) too, so the file used to be parsed twice. Here it is
//! parsed once, the `DeTable` lends its spans to [`Origins`], and the `Table` is built from it
//! directly. With 10,000 `[[allow]]` entries that was more than half of reading the file.
//!
//! The rebuild takes the plain values (strings, booleans, integers that fit an `i64`, finite
//! floats, arrays, tables); a file holding anything else (a datetime, a huge integer) is
//! handed to toml's own conversion, so its values and errors are toml's exactly.

use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use super::origin::Origins;

/// The file's tree and where its entries are; the error is toml's, as `str::parse` gives it.
pub(super) fn read(text: &str, file: &str) -> Result<(Table, Origins), toml::de::Error> {
    let root = DeTable::parse(text)?;
    let origins = Origins::of(root.get_ref(), text, file);
    match table(root.into_inner()) {
        Some(t) => Ok((t, origins)),
        None => Ok((text.parse::<Table>()?, origins)),
    }
}

/// The `Table` of a parsed table; None when a value needs toml's own conversion.
fn table(t: DeTable<'_>) -> Option<Table> {
    let mut out = Table::with_capacity(t.len());
    for (k, v) in t {
        // toml's serde carries a datetime as a table with this one key: a file that spells
        // it gets toml's reading of it.
        if k.get_ref() == "$__toml_private_datetime" {
            return None;
        }
        out.insert(k.into_inner().into_owned(), value(v.into_inner())?);
    }
    Some(out)
}

fn value(v: DeValue<'_>) -> Option<Value> {
    Some(match v {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Boolean(b) => Value::Boolean(b),
        // What toml's conversion does for the integers it keeps (`to_i64`); larger ones fail
        // or widen there, and go there.
        DeValue::Integer(i) => Value::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
        // As toml's `to_f64`: an overflow to infinity is its error, not a value.
        DeValue::Float(f) => {
            let x: f64 = f.as_str().parse().ok()?;
            if x.is_infinite() && !f.as_str().contains("inf") {
                return None;
            }
            Value::Float(x)
        }
        DeValue::Datetime(_) => return None,
        DeValue::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for item in a {
                out.push(value(item.into_inner())?);
            }
            Value::Array(out)
        }
        DeValue::Table(t) => Value::Table(table(t)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Every TOML text the repository holds: files, and the ```toml blocks of the docs.
    fn texts() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        let mut dirs: Vec<PathBuf> = ["tests", "testdata", "examples", "docs", "src"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        let mut files = vec![root.join("README.md")];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        for p in files {
            let name = p.display().to_string();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            match ext {
                "toml" => out.push((name, text)),
                "rs" => out.extend(literals(&text).into_iter().map(|t| (name.clone(), t))),
                "md" => {
                    let mut block: Option<String> = None;
                    for line in text.lines() {
                        match &mut block {
                            None if line.trim_start().starts_with("```toml") => {
                                block = Some(String::new())
                            }
                            Some(b) if line.trim_start().starts_with("```") => {
                                out.push((name.clone(), std::mem::take(b)));
                                block = None;
                            }
                            Some(b) => {
                                b.push_str(line);
                                b.push('\n');
                            }
                            None => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The string literals of Rust source that look like TOML (a line break and a `=`),
    /// plain ones with their escapes read; a misread literal is only one more text to compare.
    fn literals(src: &str) -> Vec<String> {
        let b = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i..].starts_with(b"r#\"") {
                let body = &src[i + 3..];
                let end = body.find("\"#").unwrap_or(body.len());
                out.push(body[..end].to_string());
                i += 3 + end + 2;
            } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
                let mut s = String::new();
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                        match b[j] {
                            b'n' => s.push('\n'),
                            b't' => s.push('\t'),
                            b'\n' => {
                                while j + 1 < b.len() && b[j + 1].is_ascii_whitespace() {
                                    j += 1;
                                }
                            }
                            c => s.push(c as char),
                        }
                    } else if let Some(c) = src.get(j..).and_then(|r| r.chars().next()) {
                        s.push(c);
                        j += c.len_utf8() - 1;
                    }
                    j += 1;
                }
                out.push(s);
                i = j + 1;
            } else {
                i += 1;
            }
        }
        out.retain(|s| s.contains('\n') && s.contains('='));
        out
    }

    /// The tree is toml's own, value for value and key order for key order, on every file
    /// the repository holds, and on the odd values that take toml's path.
    #[test]
    fn same_tree_as_toml() {
        let mut all = texts();
        assert!(all.len() > 300, "found only {} TOML texts", all.len());
        for odd in [
            "a = 1979-05-27T07:32:00Z",
            "a = 18446744073709551615",
            "a = 0xff\nb = 0o17\nc = -0b101\nd = 1_000",
            "a = 1e400",
            "a = inf\nb = -nan\nc = 1.5e3",
            "a = [1, [\"x\", {b = true}]]\n[[c]]\nd = 'e'\n[[c]]\n",
            "a = \"\\u00e9\\n\"\nb = '''\nraw\n'''",
            "a = 9223372036854775807\nb = -9223372036854775808",
            "[a]\n\"$__toml_private_datetime\" = \"1979-05-27\"",
            "[a]\n\"$__toml_private_datetime\" = \"x\"",
            "a = [",
        ] {
            all.push(("odd".into(), odd.into()));
        }
        for (name, text) in all {
            let theirs = text.parse::<Table>();
            let ours = read(&text, "f").map(|(t, _)| t);
            match (theirs, ours) {
                // Debug shows every value (NaN too, which is not equal to itself) in the
                // tables' order.
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{name}: {text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
                (a, b) => panic!("{name}: toml says {a:?}, the reader {b:?}"),
            }
        }
    }
}
