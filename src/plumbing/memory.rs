//! `nsfw watch`'s memory, as apply and diff use it: what watch last read of each namespace it
//! listens to and has heard nothing of since, asked for over a unix socket under /run/nsfw.
//! A namespace the memory vouches for is not entered again; everything else is read as
//! without watch. The answer is taken only from root, for this topology, in this protocol,
//! within a short wait: anything else, and the run reads everything, as it always could.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::answer::{Place, Reader};
use super::objects::{Link, NsObs};

/// How long a run waits for watch's whole answer before reading everything itself: a watch
/// busy with a check (hundreds of ms at 1,000 namespaces) is not worth waiting for.
const WAIT: Duration = Duration::from_millis(100);
/// The oldest observation watch serves (it reads every place on a sweep twice as often). The
/// settings the kernel never notifies are not left to age: watch holds them open and reads
/// them again before every answer (see watch's probes).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(60);
/// The environment variable that makes apply and diff read everything.
pub(crate) const USE_ENV: &str = "NSFW_WATCH_MEMORY";

/// The places a memory vouches for, by name; and the host's links, if it vouches for them.
/// Each place is handed over once ([`Known::vouch`] takes it out): a run that observes again
/// after changing things must not be handed what it read before them, and nothing is copied.
#[derive(Debug, Default)]
pub(crate) struct Known {
    places: Mutex<BTreeMap<String, (u64, NsObs)>>,
    host: Mutex<Option<Vec<Link>>>,
}

impl Known {
    pub(crate) fn new(places: impl IntoIterator<Item = Place>) -> Known {
        Known {
            places: Mutex::new(
                places
                    .into_iter()
                    .map(|p| (p.name, (p.ino, p.obs)))
                    .collect(),
            ),
            host: Mutex::new(None),
        }
    }

    /// With the host's links `host`.
    pub(crate) fn with_host(self, host: Option<Vec<Link>>) -> Known {
        Known {
            host: Mutex::new(host),
            ..self
        }
    }

    /// The host's links, when the memory vouches for them; handed over once, as the places
    /// are (at 1,000 namespaces, a copy was ~1,000 links' worth of allocations a run).
    pub(crate) fn take_host(&self) -> Option<Vec<Link>> {
        self.host.lock().ok()?.take()
    }

    /// How many places it still holds.
    pub(crate) fn len(&self) -> usize {
        self.places.lock().map_or(0, |p| p.len())
    }

    /// Namespace `name` (whose /run/netns entry is inode `ino` now) as the run would read it,
    /// if the memory vouches for it: the same namespace, read whole, with every sysctl in
    /// `keys` read. `deep`: whether the run reads it whole (else links only), given its owner.
    /// A place vouched for is taken out: asked again, the memory no longer vouches for it.
    pub(crate) fn vouch(
        &self,
        name: &str,
        ino: u64,
        deep: &dyn Fn(Option<&str>) -> bool,
        keys: &[String],
    ) -> Option<NsObs> {
        let mut places = self.places.lock().ok()?;
        let (i, o) = places.get(name)?;
        if *i != ino || keys.iter().any(|k| !o.node.sysctls.contains_key(k)) {
            return None;
        }
        let (_, mut o) = places.remove(name)?;
        if deep(o.owner.as_deref()) {
            o.node.sysctls.retain(|k, _| keys.contains(k));
        } else {
            o.node = super::NodeObs {
                links: std::mem::take(&mut o.node.links),
                ..Default::default()
            };
        }
        Some(o)
    }
}

/// Whether watch may keep `o` (read whole) in its memory: the parts of a namespace the answer
/// does not carry (shaped links' qdiscs, VXLAN's forwarding entries) are always read.
pub(crate) fn keepable(o: &NsObs) -> bool {
    let n = &o.node;
    n.qdiscs.is_empty()
        && n.fdb.is_empty()
        && n.links
            .iter()
            .all(|l| l.vxlan.is_none() && l.qdisc.as_deref().is_none_or(|q| q == "noqueue"))
}

/// The socket of watch for topology `name`.
pub(crate) fn socket_path(name: &str) -> PathBuf {
    PathBuf::from(crate::state::STATE_DIR).join(format!("watch-{name}.sock"))
}

/// Whether a watch of topology `name` may be listening: its socket is there (not followed).
pub(crate) fn served(name: &str) -> bool {
    std::fs::symlink_metadata(socket_path(name)).is_ok_and(|m| m.file_type().is_socket())
}

/// Which namespace /run/netns/NAME holds now (its device and inode, not following a
/// symlink), for each of `names`.
pub(crate) fn inodes(names: &[String]) -> BTreeMap<String, super::netns::NsId> {
    names
        .iter()
        .filter_map(|n| {
            std::fs::symlink_metadata(super::netns::path(n))
                .ok()
                .map(|m| (n.clone(), (m.dev(), m.ino())))
        })
        .collect()
}

/// Asks topology `topology`'s watch what it vouches for, when `NSFW_WATCH_MEMORY` asks for
/// it. None: not asked for (the default: measured at 1,000 namespaces the memory saved under
/// a tenth of a run's CPU), no watch, or none worth trusting (not root's, another topology or
/// version, too slow, garbage).
pub(crate) fn ask(topology: &str) -> Option<Known> {
    if !wanted() {
        return None;
    }
    if topology.contains('/') || topology.is_empty() {
        return None;
    }
    let t0 = Instant::now();
    let out = match ask_at(&socket_path(topology), topology) {
        Ok(k) => Some(k),
        Err(why) => {
            crate::detail!("memory: not used ({why}): reading every namespace");
            None
        }
    };
    if let Some(k) = &out {
        crate::detail!(
            "timing: watch's memory vouches for {} namespace(s), asked in {:?}",
            k.len(),
            t0.elapsed()
        );
    }
    out
}

/// [`ask`] started early, on a thread of its own: watch puts its answer together, and this
/// process decodes it, while the file compiles and nftables is read. The answer goes to the
/// run's first observation only ([`Asking::answer`]); a later one (after the run changed
/// things, or someone committed beside it) reads everything: what the answer vouched for may
/// have changed, and asking again would wait out the whole 100 ms for a watch that is itself
/// waiting for this run's lock to check what it heard.
pub(crate) struct Asking {
    topology: String,
    /// Taken by the first answer.
    started: Mutex<Option<Started>>,
}

/// The early ask: on its thread, or not started (not wanted, or no thread to be had: the first
/// answer asks then).
enum Started {
    Thread(std::thread::JoinHandle<Option<Known>>),
    Not,
}

impl Asking {
    /// Asks at once when `NSFW_WATCH_MEMORY` asks for the memory; with no thread to be had,
    /// the first answer is asked for when it is wanted.
    pub(crate) fn start(topology: &str) -> Asking {
        let t = topology.to_string();
        let thread = wanted()
            .then(|| {
                std::thread::Builder::new()
                    .name("nsfw-memory".into())
                    .spawn(move || ask(&t))
                    .ok()
                    // Let it connect now (`threads::beside` says why): watch then puts its
                    // answer together while this thread parses the file.
                    .inspect(|_| std::thread::yield_now())
            })
            .flatten();
        Asking {
            topology: topology.to_string(),
            started: Mutex::new(Some(thread.map_or(Started::Not, Started::Thread))),
        }
    }

    /// What watch vouches for: the early answer the first time, nothing after.
    pub(crate) fn answer(&self) -> Option<Known> {
        let mut started = self.started.lock().ok()?;
        match started.take()? {
            Started::Thread(h) => h.join().ok().flatten(),
            Started::Not => ask(&self.topology),
        }
    }
}

/// Whether `NSFW_WATCH_MEMORY` asks for watch's memory: `1`, `true`, `yes` or `on` (in any
/// case); `0`, `false`, `no`, `off`, empty or unset do not, and anything else does not either,
/// said once.
pub(crate) fn wanted() -> bool {
    let Some(v) = std::env::var_os(USE_ENV) else {
        return false;
    };
    let v = v.to_string_lossy();
    let off = ["", "0", "false", "no", "off"]
        .iter()
        .any(|w| v.trim().eq_ignore_ascii_case(w));
    if !on(&v) && !off {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            crate::warning!(
                "{USE_ENV}={v:?} is neither on (1, true, yes, on) nor off (0, false, no, off): watch's memory stays off"
            );
        });
    }
    on(&v)
}

fn on(v: &str) -> bool {
    ["1", "true", "yes", "on"]
        .iter()
        .any(|w| v.trim().eq_ignore_ascii_case(w))
}

fn ask_at(path: &std::path::Path, topology: &str) -> Result<Known, String> {
    // The directory is root's and nobody else can write it (the lock checks it); the socket
    // itself must be a socket of root's, and the one answering root.
    let md = std::fs::symlink_metadata(path).map_err(|_| "no watch".to_string())?;
    if !md.file_type().is_socket() || md.uid() != 0 {
        return Err(format!("{} is not root's socket", path.display()));
    }
    let deadline = Instant::now() + WAIT;
    let mut s = connect(path)?;
    let cred = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("its credentials: {e}"))?;
    if cred.uid() != 0 {
        return Err(format!("it answers as uid {}", cred.uid()));
    }
    let mut reader = Reader::new(topology);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no whole answer within {WAIT:?}"));
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| format!("reading: {e}"))?;
        match s.read(&mut buf) {
            Ok(0) => return known(reader),
            Ok(n) => reader.feed(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(format!("no whole answer within {WAIT:?}"));
            }
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// A connection to the socket at `path`, made without waiting: a watch that is stopped
/// (SIGSTOP, a debugger) accepts nothing, and once its listen queue is full a blocking
/// connect would wait for it with no end — holding nsfw's lock. A full queue says EAGAIN at
/// once instead, and the run reads everything.
fn connect(path: &std::path::Path) -> Result<UnixStream, String> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let addr = SockAddr::unix(path).map_err(|e| format!("its address: {e}"))?;
    let s = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)
        .map_err(|e| format!("a socket: {e}"))?;
    // A Unix stream socket connects at once or not at all (EAGAIN when the queue is full):
    // there is no connection in progress to wait for.
    s.connect(&addr).map_err(|e| format!("connecting: {e}"))?;
    s.set_nonblocking(false)
        .map_err(|e| format!("connecting: {e}"))?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(s)))
}

/// The answer in `bytes`, if it is one for `topology` in this protocol.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8], topology: &str) -> Result<Known, String> {
    let mut r = Reader::new(topology);
    r.feed(bytes)?;
    known(r)
}

/// What a whole answer vouches for.
fn known(r: Reader) -> Result<Known, String> {
    let (places, host) = r.finish()?;
    Ok(Known::new(places).with_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plumbing::answer::{
        Answer, PROTO, Verdict, encode, encode_host, encode_parts, encode_place, encode_verdict,
    };
    use crate::plumbing::objects::{Link, NodeObs};

    fn place(name: &str, ino: u64) -> Place {
        let mut lo = Link::bare(1, true, false);
        lo.name = "lo".into();
        lo.alias = Some("nsfw:t".into());
        lo.conf.insert("ipv6.addr_gen_mode", "1".into());
        let mut node = NodeObs {
            links: vec![lo],
            ..Default::default()
        };
        node.sysctls
            .insert("net.ipv4.ip_forward".into(), Some("1".into()));
        Place {
            name: name.into(),
            ino,
            obs: NsObs {
                owner: Some("nsfw:t".into()),
                node,
                id: None,
            },
        }
    }

    #[test]
    fn an_answer_travels_whole_and_only_for_its_topology() {
        let a = Answer {
            proto: PROTO,
            topology: "t".into(),
            places: vec![place("a", 7)],
            host: None,
        };
        let b = encode(&a);
        let k = decode(&b, "t").expect("decodes");
        let o = k
            .vouch("a", 7, &|_| true, &["net.ipv4.ip_forward".into()])
            .expect("vouched");
        assert_eq!(o.node.links, a.places[0].obs.node.links);
        assert_eq!(
            o.node.links[0].conf.get("ipv6.addr_gen_mode"),
            Some(&"1".into())
        );
        assert!(decode(&b, "u").is_err(), "another topology's");
        assert!(decode(&b[..b.len() / 2], "t").is_err(), "cut short");
        assert!(decode(b"garbage, not postcard", "t").is_err());
        let parts = [encode_place(&a.places[0]), encode_place(&place("b", 8))];
        let host = place("h", 1).obs.node.links;
        let two = Answer {
            proto: PROTO,
            topology: "t".into(),
            places: vec![place("a", 7), place("b", 8)],
            host: Some(host.clone()),
        };
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let h = encode_host(Some(&host));
        let all = encode_verdict(&Verdict {
            host: true,
            forgotten: vec![],
        });
        assert_eq!(
            [encode_parts("t", &refs, &h), all.clone()].concat(),
            encode(&two),
            "put together"
        );
        let k = decode(&encode(&two), "t").expect("decodes");
        assert_eq!(k.take_host(), Some(host.clone()));
        assert_eq!(k.take_host(), None, "handed over once");
        assert_eq!(
            [encode_parts("t", &[], &encode_host(None)), all].concat(),
            encode(&Answer {
                places: vec![],
                host: None,
                ..two
            })
        );
        // What watch found changed once it had written the rest is taken back.
        let back = encode_verdict(&Verdict {
            host: false,
            forgotten: vec!["a".into()],
        });
        let k = decode(&[encode_parts("t", &refs, &h), back].concat(), "t").expect("decodes");
        assert!(k.vouch("a", 7, &|_| true, &[]).is_none(), "a taken back");
        assert!(k.vouch("b", 8, &|_| true, &[]).is_some(), "b stands");
        assert_eq!(k.take_host(), None, "the host taken back");
        let mut more = encode(&a);
        more.push(0);
        assert!(decode(&more, "t").is_err(), "more than an answer");
        let old = Answer { proto: 0, ..a };
        assert!(decode(&encode(&old), "t").is_err(), "another protocol");
    }

    #[test]
    fn only_a_yes_turns_the_memory_on() {
        for v in ["1", "true", "YES", "on", " On "] {
            assert!(on(v), "{v:?}");
        }
        for v in ["", "0", "false", "no", "off", "2", "y"] {
            assert!(!on(v), "{v:?}");
        }
    }

    #[test]
    fn vouches_only_for_the_same_namespace_with_what_the_run_reads() {
        let k = Known::new([place("a", 7)]);
        let fwd = ["net.ipv4.ip_forward".to_string()];
        assert!(k.vouch("a", 8, &|_| true, &fwd).is_none(), "replaced");
        assert!(k.vouch("b", 7, &|_| true, &fwd).is_none(), "unknown");
        let more = ["net.ipv4.conf.all.rp_filter".to_string()];
        assert!(
            k.vouch("a", 7, &|_| true, &more).is_none(),
            "a sysctl not read"
        );
        let fewer = k.vouch("a", 7, &|_| true, &[]).expect("vouched");
        assert!(fewer.node.sysctls.is_empty(), "only what the run asks");
        assert!(
            k.vouch("a", 7, &|_| true, &[]).is_none(),
            "handed over once"
        );
        let k = Known::new([place("a", 7)]);
        let shallow = k.vouch("a", 7, &|_| false, &[]).expect("vouched");
        assert_eq!(shallow.node.links.len(), 1);
        assert!(shallow.node.sysctls.is_empty());
    }
}
