//! Text as the picture sets it: one monospace font, so that a label's width is its length
//! times one advance (0.6 em in DejaVu Sans Mono, Menlo, Consolas and Liberation Mono alike;
//! the advance used here has a little to spare), and XML escaping.

/// Font size of every line, in pixels.
pub(crate) const FONT: f64 = 12.0;
/// The advance of one character at `FONT`, with room for a slightly wider monospace font.
pub(crate) const CHAR: f64 = 7.4;
/// Distance between baselines.
pub(crate) const LINE: f64 = 16.0;
/// Padding inside a box.
pub(crate) const PAD: f64 = 8.0;
/// The longest line a box holds; longer ones are cut with `...` (the whole in a tooltip).
pub(crate) const MAX_CHARS: usize = 48;

pub(crate) fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Width of `n` characters.
pub(crate) fn width(n: usize) -> f64 {
    n as f64 * CHAR
}

/// `s` cut to `max` characters (ending in `...` when cut), and whether it was.
pub(crate) fn fit(s: &str, max: usize) -> (String, bool) {
    if chars(s) <= max {
        return (s.to_string(), false);
    }
    let keep: String = s.chars().take(max.saturating_sub(3)).collect();
    (format!("{keep}..."), true)
}

/// `s` in lines of at most `max` characters, broken at spaces where it can be (a word longer
/// than a line is cut); lines after the first are indented by two spaces.
pub(crate) fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        let room = if out.is_empty() { max } else { max - 2 };
        if !cur.is_empty() && chars(&cur) + 1 + chars(word) > room {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(cur);
    out.into_iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { l } else { format!("  {l}") })
        .collect()
}

/// `s` made safe for XML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_xml_is_escaped() {
        assert_eq!(fit("abcdef", 6), ("abcdef".into(), false));
        assert_eq!(fit("abcdefgh", 6), ("abc...".into(), true));
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(
            wrap("missing: route ns1 default", 14),
            ["missing: route", "  ns1 default"]
        );
        assert_eq!(wrap("short", 14), ["short"]);
    }
}
