//! The answer `nsfw watch` gives apply and diff on its socket (`memory`), and how it is read
//! as it arrives: its head (protocol, topology, how many places), the places and the host's
//! links (after their length) as watch kept them, then its verdict: what it found changed
//! when it read its held files again (the settings the kernel never notifies) after writing
//! all that. The run decodes the places while watch reads its files: at 1,000 namespaces each
//! took some 7 ms, one after the other.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::objects::{Link, NsObs};

/// The answer's layout: a watch of another version is ignored.
pub(crate) const PROTO: u32 = 4;
/// The longest answer read (a namespace's reading is ~0.7 KB: room for ~90,000); a server
/// that sends more is not a watch.
const MOST: usize = 64 << 20;

/// One namespace as watch last read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Place {
    pub name: String,
    /// Its inode (nsfs) when watch subscribed to it: a namespace replaced under the same name
    /// has another.
    pub ino: u64,
    pub obs: NsObs,
}

/// What watch answers (the module says in which order), whole: what tests encode.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Answer {
    pub proto: u32,
    pub topology: String,
    pub places: Vec<Place>,
    /// The host's links, when watch vouches for them (see `host_table::HostTable`).
    pub host: Option<Vec<Link>>,
}

/// The end of an answer: what watch no longer vouches for, having read its files again.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Verdict {
    /// Whether the host's links still stand.
    pub host: bool,
    /// The places that do not.
    pub forgotten: Vec<String>,
}

/// An answer decoded as it arrives.
pub(crate) struct Reader<'t> {
    topology: &'t str,
    buf: Vec<u8>,
    /// How much of `buf` is decoded.
    at: usize,
    stage: Stage,
    places: Vec<Place>,
    host: Option<Vec<Link>>,
    verdict: Option<Verdict>,
}

enum Stage {
    Head,
    /// How many places are still to come.
    Places(u64),
    /// The host's links' length, then (`Some`) the links: one item of some 150 KB at 1,000
    /// links, decoded once all of it has come rather than tried again at every read.
    Host(Option<usize>),
    Verdict,
    Done,
}

/// The next item of `rest`, with how many bytes it took; None: it has not all arrived.
fn take<T: serde::de::DeserializeOwned>(rest: &[u8]) -> Result<Option<(T, usize)>, String> {
    match postcard::take_from_bytes::<T>(rest) {
        Ok((v, left)) => Ok(Some((v, rest.len() - left.len()))),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Ok(None),
        Err(e) => Err(format!("not an answer: {e}")),
    }
}

impl<'t> Reader<'t> {
    pub(crate) fn new(topology: &'t str) -> Reader<'t> {
        Reader {
            topology,
            buf: Vec::new(),
            at: 0,
            stage: Stage::Head,
            places: Vec::new(),
            host: None,
            verdict: None,
        }
    }

    /// Decodes what `bytes` completes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.buf.len() + bytes.len() > MOST {
            return Err(format!("an answer longer than {} MiB", MOST >> 20));
        }
        self.buf.extend_from_slice(bytes);
        while self.step()? {}
        Ok(())
    }

    /// Decodes the next item, if it has all arrived (false: it has not, or the answer is done).
    fn step(&mut self) -> Result<bool, String> {
        let rest = &self.buf[self.at..];
        let used = match self.stage {
            Stage::Done if rest.is_empty() => return Ok(false),
            Stage::Done => return Err("more than an answer".into()),
            Stage::Head => {
                let Some(((proto, topology, n), used)) = take::<(u32, String, u64)>(rest)? else {
                    return Ok(false);
                };
                if proto != PROTO {
                    return Err(format!("protocol {proto} (this nsfw speaks {PROTO})"));
                }
                if topology != self.topology {
                    return Err(format!("it watches {topology}"));
                }
                self.stage = Stage::Places(n);
                used
            }
            Stage::Places(0) => {
                self.stage = Stage::Host(None);
                0
            }
            Stage::Places(n) => {
                let Some((p, used)) = take::<Place>(rest)? else {
                    return Ok(false);
                };
                self.places.push(p);
                self.stage = Stage::Places(n - 1);
                used
            }
            Stage::Host(None) => {
                let Some((len, used)) = take::<u64>(rest)? else {
                    return Ok(false);
                };
                let len = usize::try_from(len).map_err(|_| "a host field too long".to_string())?;
                self.stage = Stage::Host(Some(len));
                used
            }
            Stage::Host(Some(len)) => {
                let Some(bytes) = rest.get(..len) else {
                    return Ok(false);
                };
                let (h, left) = postcard::take_from_bytes::<Option<Vec<Link>>>(bytes)
                    .map_err(|e| format!("not an answer: {e}"))?;
                if !left.is_empty() {
                    return Err("not an answer: a host field longer than its links".into());
                }
                self.host = h;
                self.stage = Stage::Verdict;
                len
            }
            Stage::Verdict => {
                let Some((v, used)) = take::<Verdict>(rest)? else {
                    return Ok(false);
                };
                self.verdict = Some(v);
                self.stage = Stage::Done;
                used
            }
        };
        self.at += used;
        Ok(true)
    }

    /// The answer, once the whole of it has come: the places and the host's links less what
    /// the verdict took back.
    pub(crate) fn finish(self) -> Result<(Vec<Place>, Option<Vec<Link>>), String> {
        let Some(v) = self.verdict else {
            return Err("an answer cut short".into());
        };
        let names: BTreeSet<&String> = self.places.iter().map(|p| &p.name).collect();
        if names.len() != self.places.len() {
            return Err("a namespace named twice".into());
        }
        let forgotten: BTreeSet<String> = v.forgotten.into_iter().collect();
        let places = self
            .places
            .into_iter()
            .filter(|p| !forgotten.contains(&p.name))
            .collect();
        Ok((places, self.host.filter(|_| v.host)))
    }
}

/// `a` encoded, all of it vouched for (watch puts its answers together from places encoded
/// once: `encode_parts`).
#[cfg(test)]
pub(crate) fn encode(a: &Answer) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = a.places.iter().map(encode_place).collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let mut out =
        postcard::to_allocvec(&(a.proto, &a.topology, refs.len() as u64)).unwrap_or_default();
    for p in refs {
        out.extend_from_slice(p);
    }
    let host = encode_host(a.host.as_deref());
    out.extend(postcard::to_allocvec(&(host.len() as u64)).unwrap_or_default());
    out.extend(host);
    out.extend(encode_verdict(&Verdict {
        host: true,
        forgotten: Vec::new(),
    }));
    out
}

/// One place encoded, as an answer carries it.
pub(crate) fn encode_place(p: &Place) -> Vec<u8> {
    postcard::to_allocvec(p).unwrap_or_default()
}

/// An answer of topology `topology` up to its verdict: its head, its places `parts` (each
/// `encode_place`) and `host` ([`encode_host`]) after its length, put together without
/// encoding anything again.
pub(crate) fn encode_parts(topology: &str, parts: &[&[u8]], host: &[u8]) -> Vec<u8> {
    let mut out = postcard::to_allocvec(&(PROTO, topology, parts.len() as u64)).unwrap_or_default();
    out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + host.len());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend(postcard::to_allocvec(&(host.len() as u64)).unwrap_or_default());
    out.extend_from_slice(host);
    out
}

/// An answer's verdict encoded.
pub(crate) fn encode_verdict(v: &Verdict) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

/// An answer's host field encoded.
pub(crate) fn encode_host(host: Option<&[Link]>) -> Vec<u8> {
    postcard::to_allocvec(&host).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(name: &str, ino: u64) -> Place {
        let mut lo = Link::bare(1, true, false);
        lo.name = "lo".into();
        Place {
            name: name.into(),
            ino,
            obs: NsObs {
                owner: Some("nsfw:t".into()),
                node: crate::plumbing::objects::NodeObs {
                    links: vec![lo],
                    ..Default::default()
                },
                id: None,
            },
        }
    }

    /// An answer decoded as it arrives, however it is cut, is the answer decoded whole.
    #[test]
    fn an_answer_fed_a_byte_at_a_time_is_the_same() {
        let a = Answer {
            proto: PROTO,
            topology: "t".into(),
            places: vec![place("a", 7), place("b", 8)],
            host: Some(place("h", 1).obs.node.links),
        };
        let b = encode(&a);
        let mut r = Reader::new("t");
        for (i, byte) in b.iter().enumerate() {
            assert!(
                matches!(r.stage, Stage::Done) == (i == b.len()),
                "done before its end"
            );
            r.feed(&[*byte]).expect("fed");
        }
        let (places, host) = r.finish().expect("whole");
        assert_eq!(places.len(), 2);
        assert_eq!(host, a.host);
        let mut r = Reader::new("t");
        r.feed(&b[..b.len() - 1]).expect("fed");
        assert!(r.finish().is_err(), "its last byte missing");
    }
}
