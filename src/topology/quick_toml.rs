//! A fast lane for reading topology files. The `toml` crate reads 10,000 `[[allow]]` tables
//! (700 KB) in 40-50 ms, a fifth of applying them; the files nsfw reads use a small part of
//! TOML: `[a.b]` and `[[a]]` headers, `key = value` with strings, integers, booleans and arrays
//! of them, comments. This reads exactly that part, into the same `toml::Table`, an order of
//! magnitude faster, and gives up (None) at the first thing outside it: escapes, multi-line
//! strings, floats, dates, inline tables, dotted keys, a table defined twice, anything odd —
//! the `toml` crate then reads the file, and says what is wrong with it when something is.
//! So a file means the same whichever reads it; a test holds the two readers to that.

use toml::{Table, Value};

/// The table `text` holds, or None when it uses anything beyond the fast lane's part of TOML
/// (including any error).
pub fn parse(text: &str) -> Option<Table> {
    let mut p = Reader {
        b: text.as_bytes(),
        s: text,
        i: 0,
        depth: 0,
    };
    let mut root = Table::new();
    // The table keys go into: its path from the root, and whether it is the last table of an
    // array of tables (`[[path]]`).
    let mut path: Vec<String> = Vec::new();
    let mut in_array = false;
    // Arrays made by `[[...]]` headers (only those take more tables).
    let mut arrays: Vec<Vec<String>> = Vec::new();
    // Tables written inline (`key = { ... }`), which no header may extend.
    let mut inline: Vec<Vec<String>> = Vec::new();
    if p.b.starts_with(b"\xef\xbb\xbf") {
        return None;
    }
    loop {
        p.skip_ws();
        match p.peek() {
            None => return Some(root),
            Some(b'\n' | b'\r' | b'#') => p.end_of_line()?,
            Some(b'[') => {
                let aot = p.b.get(p.i + 1) == Some(&b'[');
                p.i += if aot { 2 } else { 1 };
                let keys = p.header_keys()?;
                if aot && !p.eat(b']') {
                    return None;
                }
                p.end_of_line()?;
                if inline.iter().any(|p| keys.starts_with(p)) {
                    return None;
                }
                let (last, parents) = keys.split_last()?;
                let mut t = &mut root;
                for k in parents {
                    t = match t
                        .entry(k.clone())
                        .or_insert_with(|| Value::Table(Table::new()))
                    {
                        Value::Table(inner) => inner,
                        _ => return None,
                    };
                }
                match (aot, t.get_mut(last.as_str())) {
                    (false, None) => {
                        t.insert(last.clone(), Value::Table(Table::new()));
                    }
                    (true, None) => {
                        t.insert(last.clone(), Value::Array(vec![Value::Table(Table::new())]));
                        arrays.push(keys.clone());
                    }
                    (true, Some(Value::Array(a))) if arrays.contains(&keys) => {
                        a.push(Value::Table(Table::new()));
                    }
                    // Defined before (or an array of values): the toml crate decides.
                    _ => return None,
                }
                path = keys;
                in_array = aot;
            }
            Some(_) => {
                let key = p.key()?;
                p.skip_ws();
                if !p.eat(b'=') {
                    return None;
                }
                p.skip_ws();
                let v = p.value()?;
                p.end_of_line()?;
                let t = table_at(&mut root, &path, in_array)?;
                if t.contains_key(key.as_str()) {
                    return None;
                }
                if v.is_table() {
                    inline.push(path.iter().cloned().chain([key.clone()]).collect());
                }
                t.insert(key, v);
            }
        }
    }
}

/// The table at `path` (the last table of the array there when `in_array`).
fn table_at<'a>(root: &'a mut Table, path: &[String], in_array: bool) -> Option<&'a mut Table> {
    let mut t = root;
    for (n, k) in path.iter().enumerate() {
        let last = n + 1 == path.len();
        t = match t.get_mut(k.as_str())? {
            Value::Table(inner) => inner,
            Value::Array(a) if last && in_array => match a.last_mut()? {
                Value::Table(inner) => inner,
                _ => return None,
            },
            _ => return None,
        };
    }
    Some(t)
}

struct Reader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    /// How many arrays and inline tables the value being read is inside.
    depth: usize,
}

/// Deeper nesting is left to the toml crate, which refuses it past its own limit (about 80):
/// no topology nests more than three deep, and reading recursively without a bound would
/// let a small file overflow the stack.
const MAX_DEPTH: usize = 16;

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Spaces, a comment, then the end of the line (or of the text).
    fn end_of_line(&mut self) -> Option<()> {
        self.skip_ws();
        if self.eat(b'#') {
            while let Some(c) = self.peek() {
                if c == b'\n' || c == b'\r' {
                    break;
                }
                if is_control(c) {
                    return None;
                }
                self.i += 1;
            }
        }
        match self.peek() {
            None => Some(()),
            Some(b'\n') => {
                self.i += 1;
                Some(())
            }
            Some(b'\r') if self.b.get(self.i + 1) == Some(&b'\n') => {
                self.i += 2;
                Some(())
            }
            _ => None,
        }
    }

    /// Whitespace, newlines and comments inside an array.
    fn skip_blank(&mut self) -> Option<()> {
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'\n' | b'\r' | b'#') => self.end_of_line()?,
                _ => return Some(()),
            }
        }
    }

    /// `a.b.c]` of a header, its `[` read.
    fn header_keys(&mut self) -> Option<Vec<String>> {
        let mut keys = Vec::new();
        loop {
            self.skip_ws();
            keys.push(self.key()?);
            self.skip_ws();
            match self.peek()? {
                b'.' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(keys);
                }
                _ => return None,
            }
        }
    }

    /// A bare key, or a quoted one without escapes.
    fn key(&mut self) -> Option<String> {
        if self.peek() == Some(b'"') {
            return self.basic_string();
        }
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            self.i += 1;
        }
        (self.i > start).then(|| self.s[start..self.i].to_string())
    }

    fn value(&mut self) -> Option<Value> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let v = self.value_here();
        self.depth -= 1;
        v
    }

    fn value_here(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => self.basic_string().map(Value::String),
            b'\'' => self.literal_string().map(Value::String),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_blank()?;
                    if self.eat(b']') {
                        return Some(Value::Array(items));
                    }
                    // Nested arrays are left to the toml crate.
                    if self.peek()? == b'[' {
                        return None;
                    }
                    items.push(self.value()?);
                    self.skip_blank()?;
                    if !self.eat(b',') {
                        self.skip_blank()?;
                        return self.eat(b']').then_some(Value::Array(items));
                    }
                }
            }
            // An inline table on one line, with no trailing comma (what TOML 1.1 adds to
            // them is left to the toml crate).
            b'{' => {
                self.i += 1;
                let mut t = Table::new();
                self.skip_ws();
                if self.eat(b'}') {
                    return Some(Value::Table(t));
                }
                loop {
                    self.skip_ws();
                    let key = self.key()?;
                    self.skip_ws();
                    if !self.eat(b'=') {
                        return None;
                    }
                    self.skip_ws();
                    let v = self.value()?;
                    if t.insert(key, v).is_some() {
                        return None;
                    }
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Value::Table(t));
                        }
                        _ => return None,
                    }
                }
            }
            b't' | b'f' => {
                let word = self.word();
                match word {
                    "true" => Some(Value::Boolean(true)),
                    "false" => Some(Value::Boolean(false)),
                    _ => None,
                }
            }
            b'0'..=b'9' | b'+' | b'-' => {
                let word = self.word();
                let digits = word.strip_prefix(['+', '-']).unwrap_or(word);
                let plain = !digits.is_empty()
                    && digits.bytes().all(|c| c.is_ascii_digit())
                    && !(digits.len() > 1 && digits.starts_with('0'));
                if plain {
                    word.parse().ok().map(Value::Integer)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Everything up to the next delimiter of a value.
    fn word(&mut self) -> &str {
        let start = self.i;
        while matches!(self.peek(), Some(c) if !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b'#'))
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// `"..."` with no escape in it, on one line.
    fn basic_string(&mut self) -> Option<String> {
        self.quoted(b'"', true)
    }

    /// `'...'` on one line.
    fn literal_string(&mut self) -> Option<String> {
        self.quoted(b'\'', false)
    }

    fn quoted(&mut self, q: u8, no_escape: bool) -> Option<String> {
        self.i += 1;
        // `"""` or `'''` opens a multi-line string.
        if self.b.get(self.i..self.i + 2) == Some(&[q, q][..]) {
            return None;
        }
        let start = self.i;
        loop {
            let c = self.peek()?;
            if c == q {
                let s = self.s[start..self.i].to_string();
                self.i += 1;
                return Some(s);
            }
            if is_control(c) || (no_escape && c == b'\\') {
                return None;
            }
            self.i += 1;
        }
    }
}

/// A control character TOML allows in no string or comment (tab is allowed).
fn is_control(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readers agree whenever the fast one reads the text at all.
    fn same(text: &str) -> bool {
        let fast = parse(text);
        let slow = text.parse::<Table>().ok();
        if let Some(f) = &fast {
            assert_eq!(Some(f), slow.as_ref(), "{text:?}");
            // And in the same order, at every level.
            fn order(v: &Value, out: &mut Vec<String>) {
                match v {
                    Value::Table(t) => {
                        for (k, v) in t {
                            out.push(k.clone());
                            order(v, out);
                        }
                    }
                    Value::Array(a) => a.iter().for_each(|v| order(v, out)),
                    _ => {}
                }
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            order(&Value::Table(f.clone()), &mut a);
            if let Some(slow) = &slow {
                order(&Value::Table(slow.clone()), &mut b);
            }
            assert_eq!(a, b, "{text:?}");
        }
        fast.is_some()
    }

    #[test]
    fn reads_what_topologies_use() {
        let texts = [
            "name = \"lab\"\n[bridges.br0]\naddress = \"10.0.0.1/24\" # the gateway\nmasquerade = true\n",
            "# c\n\n[namespaces.ns1]\nbridge = 'br0'\npublish = [\"8080:80/tcp\", \"53:53/udp\",]\nmtu = 1400\n",
            "[[allow]]\nfrom = \"ns1\"\nto = \"world\"\nports = [\n  \"tcp/443\", # https\n  \"udp/53\"\n]\n[[allow]]\nfrom = \"ns2\"\nto = \"host\"\n",
            "a = -5\nb = +7\nc = 0\nd = []\ne = [ 1 , true , 'x' ]\r\n[x . \"y z\"]\nk = \"é ü\"\n",
            "[h]\nroutes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }, {}]\nx = { a = [1, 2], b = { c = 'd' } }\n",
            "[a.b]\nx = 1\n[a.c]\ny = 2\n[a]\n",
        ];
        for t in texts.iter().take(5) {
            assert!(same(t), "the fast lane should read {t:?}");
        }
        // `[a]` after `[a.b]` is valid TOML, left to the crate.
        assert!(!same(texts[5]));
        for f in std::fs::read_dir("rulesets").expect("rulesets") {
            let path = f.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(same(&text), "the fast lane should read {}", path.display());
        }
    }

    #[test]
    fn leaves_the_rest_to_the_toml_crate() {
        for t in [
            "a = \"x\\ty\"\n",
            "a = \"\"\"x\"\"\"\n",
            "a = '''x'''\n",
            "a = 1.5\n",
            "a = 1_000\n",
            "a = 012\n",
            "a = 0x10\n",
            "a = 1979-05-27\n",
            "a = { b = 1, }\n",
            "a = { b = 1,\n c = 2 }\n",
            "a = { b.c = 1 }\n",
            "a = { b = 1, b = 2 }\n",
            "a = { b = 1 }\n[a.c]\n",
            "a = { b = 1 }\n[a]\n",
            "a = [{ b = 1 }]\n[[a]]\n",
            "a.b = 1\n",
            "a = [[1], [2]]\n",
            "a = 1\na = 2\n",
            "[t]\n[t]\n",
            "a = [1, 2]\n[[a]]\n",
            "a = 1\n[a.b]\n",
            "[[t]]\n[t]\n",
            "a = \"x\" b = 2\n",
            "a = \"unterminated\n",
            "a = tru\n",
            "a = 1 # \u{7}\n",
            "a = \"\u{1}\"\n",
            "a = 1\rb = 2\n",
            "\u{feff}a = 1\n",
            "[ [t] ]\n",
            "a = [1 2]\n",
            "= 1\n",
            "a = \n",
            "a = +\n",
            "a = 99999999999999999999\n",
            "a = inf\n",
            &format!("a = {}1{}\n", "{b=".repeat(20), "}".repeat(20)),
            &format!("a = {}1{}\n", "{b=".repeat(20_000), "}".repeat(20_000)),
            &format!("a = [{}1{}]\n", "{b=[".repeat(10), "]}".repeat(10)),
        ] {
            assert!(
                !same(t),
                "the fast lane should leave {t:?} to the toml crate"
            );
        }
    }

    #[test]
    fn arrays_of_tables_collect_in_order() {
        let mut text = String::from("name = \"big\"\n");
        for i in 0..300 {
            text.push_str(&format!(
                "[[allow]]\nfrom = \"ns{i}\"\nto = \"203.0.113.{}/32\"\nports = [\"tcp/{}\"]\n",
                i % 250,
                1000 + i
            ));
        }
        assert!(same(&text));
        let t = parse(&text).expect("read");
        let allow = t.get("allow").and_then(Value::as_array).expect("allow");
        assert_eq!(allow.len(), 300);
    }
}
