//! How a command prints a plan: one line per change, or with `--summary` one line per kind
//! of change, so that a plan of thousands of namespaces fits a screen.

/// The output options of the commands that print a plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Printing {
    /// One JSON object on stdout (docs/json.md).
    pub json: bool,
    /// One line per kind of change.
    pub summary: bool,
}

/// Changes counted by their mark and kind (`+ namespace`, `~ sysctl`, `- nft element`), in
/// the order each kind first comes.
#[derive(Default)]
pub(super) struct Tally(Vec<(String, usize)>);

impl Tally {
    /// Counts a plan line (`+ namespace ns1`, `- nft rule inet nsfw_lab forward: ...`).
    pub(super) fn add(&mut self, line: &str) {
        let mut w = line.split_whitespace();
        let (mark, first) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
        let kind = match first {
            // `nft table`, `nft rule`, `nft element`: the nft object's kind.
            "nft" => format!("{mark} nft {}", w.next().unwrap_or("")),
            _ => format!("{mark} {}", first.trim_end_matches(':')),
        };
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.0.push((kind, 1)),
        }
    }

    /// `+ namespace × 2000`, one line per kind.
    pub(super) fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|(k, n)| format!("{k} × {n}"))
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn one_line_per_kind_in_first_order() {
        let mut t = Tally::default();
        for l in [
            "+ namespace n1",
            "+ veth veth-n1 (on br0) ⇄ n1:eth0",
            "+ namespace n2",
            "~ sysctl n1:net.ipv4.conf.eth0.promote_secondaries: 0 → 1",
            "+ nft rule inet nsfw_big forward: iifname @bridges goto judge",
            "+ nft rule inet nsfw_big forward: oifname @bridges goto judge",
            "- nft element inet nsfw_big publish4: tcp . 80",
        ] {
            t.add(l);
        }
        let got: Vec<String> = t.lines().collect();
        assert_eq!(
            got,
            [
                "+ namespace × 2",
                "+ veth × 1",
                "~ sysctl × 1",
                "+ nft rule × 2",
                "- nft element × 1"
            ]
        );
    }
}
