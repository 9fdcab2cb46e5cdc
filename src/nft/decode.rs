//! Turns a rule dumped from the kernel (libnftnl's rendering of its expressions) back into the
//! IR, so that diffs show rules found in the kernel in `nft` syntax. Only the shapes nsfw
//! itself writes (and `nft` writes for the same rules) are recognised; anything else is shown as
//! libnftnl prints it.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::{Match, Rule, Verdict};

/// The `[ ... ]` items of a rendered rule.
fn items(exprs: &str) -> Vec<String> {
    exprs
        .split(']')
        .map(|s| s.trim().trim_start_matches('[').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The bytes of libnftnl's `0x%08x` words (each a u32 read in host order).
fn hex_bytes(words: &[&str]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for w in words {
        let v = u32::from_str_radix(w.strip_prefix("0x")?, 16).ok()?;
        out.extend_from_slice(&v.to_ne_bytes());
    }
    Some(out)
}

fn ifname(words: &[&str]) -> Option<String> {
    let b = hex_bytes(words)?;
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8(b[..end].to_vec()).ok()
}

/// `cmp eq reg 1 0x... ...` → (eq?, data words)
fn cmp(item: &str) -> Option<(bool, Vec<&str>)> {
    let w: Vec<&str> = item.split_whitespace().collect();
    if w.len() < 5 || w[0] != "cmp" || w[2] != "reg" {
        return None;
    }
    let eq = match w[1] {
        "eq" => true,
        "neq" => false,
        _ => return None,
    };
    Some((eq, w[4..].to_vec()))
}

/// `bitwise reg 1 = ( reg 1 & 0x00ffffff ) ^ 0x00000000` → the mask word
fn bitwise_mask(item: &str) -> Option<&str> {
    let w: Vec<&str> = item.split_whitespace().collect();
    if w.first() != Some(&"bitwise") {
        return None;
    }
    let amp = w.iter().position(|x| *x == "&")?;
    let xor = w.get(amp + 4)?;
    if *xor != "0x00000000" {
        return None;
    }
    w.get(amp + 1).copied()
}

fn ipv4(word: &str) -> Option<Ipv4Addr> {
    let b = hex_bytes(&[word])?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

/// Decodes a dumped rule; `None` when it has a shape nsfw does not write.
pub fn decode(exprs: &str, comment: Option<&str>) -> Option<Rule> {
    let it = items(exprs);
    let mut i = 0;
    let mut matches = Vec::new();
    let mut verdict = None;
    while i < it.len() {
        let cur = it[i].as_str();
        let next = it.get(i + 1).map(String::as_str);
        match cur {
            "meta load iifname => reg 1" | "meta load oifname => reg 1" => {
                let (eq, words) = cmp(next?)?;
                let name = ifname(&words)?;
                matches.push(if cur.contains("iifname") {
                    Match::IifName { name, eq }
                } else {
                    Match::OifName { name, eq }
                });
                i += 2;
            }
            "ct load state => reg 1" => {
                let mask = bitwise_mask(next?)?;
                let (eq, words) = cmp(it.get(i + 2)?)?;
                if eq || words != ["0x00000000"] {
                    return None;
                }
                matches.push(Match::CtState(
                    u32::from_str_radix(mask.strip_prefix("0x")?, 16).ok()?,
                ));
                i += 3;
            }
            "meta load nfproto => reg 1" => {
                let (eq, words) = cmp(next?)?;
                if !eq || words != ["0x00000002"] {
                    return None;
                }
                let field = it.get(i + 2)?;
                let saddr = match field.as_str() {
                    "payload load 4b @ network header + 12 => reg 1" => true,
                    "payload load 4b @ network header + 16 => reg 1" => false,
                    _ => return None,
                };
                let mut j = i + 3;
                let mut prefix = 32;
                if let Some(m) = it.get(j).and_then(|s| bitwise_mask(s)) {
                    prefix = u32::from(ipv4(m)?).leading_ones() as u8;
                    j += 1;
                }
                let (eq, words) = cmp(it.get(j)?)?;
                if !eq || words.len() != 1 {
                    return None;
                }
                let net = Ipv4Network::new(ipv4(words[0])?, prefix).ok()?;
                matches.push(if saddr {
                    Match::Saddr(net)
                } else {
                    Match::Daddr(net)
                });
                i = j + 1;
            }
            "meta load l4proto => reg 1" => {
                let (eq, words) = cmp(next?)?;
                let proto = *hex_bytes(&words)?.first()?;
                let field = it.get(i + 2)?;
                let dport = match field.as_str() {
                    "payload load 2b @ transport header + 2 => reg 1" => true,
                    "payload load 2b @ transport header + 0 => reg 1" => false,
                    _ => return None,
                };
                let (eq2, words) = cmp(it.get(i + 3)?)?;
                let b = hex_bytes(&words)?;
                if !eq || !eq2 || words.len() != 1 {
                    return None;
                }
                let port = u16::from_be_bytes([b[0], b[1]]);
                matches.push(Match::Port { proto, dport, port });
                i += 4;
            }
            "immediate reg 0 accept" => {
                verdict = Some(Verdict::Accept);
                i += 1;
            }
            "immediate reg 0 drop" => {
                verdict = Some(Verdict::Drop);
                i += 1;
            }
            "masq" => {
                verdict = Some(Verdict::Masquerade);
                i += 1;
            }
            s if s.starts_with("immediate reg 0 jump -> ") => {
                verdict = Some(Verdict::Jump(
                    s.trim_start_matches("immediate reg 0 jump -> ").to_string(),
                ));
                i += 1;
            }
            // Counters change nothing about what a rule does.
            s if s.starts_with("counter ") => i += 1,
            _ => return None,
        }
        if verdict.is_some() && i < it.len() {
            return None;
        }
    }
    Some(Rule {
        matches,
        verdict: verdict?,
        comment: comment.map(str::to_string),
    })
}

/// A dumped rule in `nft` syntax when it can be decoded, else as libnftnl renders it.
pub fn show(exprs: &str, comment: Option<&str>) -> String {
    match decode(exprs, comment) {
        Some(r) => r.to_string(),
        None => exprs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_nsfw_writes() {
        let r = decode(
            "[ meta load nfproto => reg 1 ] [ cmp eq reg 1 0x00000002 ] [ payload load 4b @ network header + 12 => reg 1 ] [ bitwise reg 1 = ( reg 1 & 0x00ffffff ) ^ 0x00000000 ] [ cmp eq reg 1 0x00000a0a ] [ meta load oifname => reg 1 ] [ cmp neq reg 1 0x00307262 0x00000000 0x00000000 0x00000000 ] [ masq ]",
            None,
        )
        .expect("decodes");
        assert_eq!(
            r.to_string(),
            "ip saddr 10.10.0.0/24 oifname != \"br0\" masquerade"
        );
        let r = decode(
            "[ ct load state => reg 1 ] [ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ] [ cmp neq reg 1 0x00000000 ] [ immediate reg 0 accept ]",
            None,
        )
        .expect("decodes");
        assert_eq!(r.to_string(), "ct state established,related accept");
        let r = decode("[ meta load l4proto => reg 1 ] [ cmp eq reg 1 0x00000006 ] [ payload load 2b @ transport header + 2 => reg 1 ] [ cmp eq reg 1 0x00001600 ] [ immediate reg 0 drop ]", None).expect("decodes");
        assert_eq!(r.to_string(), "tcp dport 22 drop");
        assert!(
            decode(
                "[ payload load 2b @ transport header + 2 => reg 1 ] [ immediate reg 0 drop ]",
                None
            )
            .is_none()
        );
    }
}
