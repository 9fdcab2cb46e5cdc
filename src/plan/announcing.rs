//! Addresses arriving on namespaces' new interfaces, announced (`plan::neighbours` plans it):
//! from inside, by the kernel, once the interface's bridge port forwards; or, for a port that
//! still does not forward when the wait ends, by the host on the bridge, as before.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::inside::visit_each;
use super::run::{Errors, Tally, indexes, pick, send};
use crate::kinds::{Announce, At, Indexes, Step};
use crate::plumbing::{Conn, announce, neigh};

/// How long announcements wait for their interfaces' bridge ports to forward (one deadline
/// for all): the kernel's link watch enables a port right after the pair's ends are both up,
/// within milliseconds even on a busy host. A port that is later (STP on the bridge: seconds
/// of listening and learning) is announced from the bridge instead.
const PORT_UP: Duration = Duration::from_millis(200);

/// Announces the addresses of `these`' inside announcements: from inside (the kernel's
/// gratuitous ARP, `kinds::announce`) where the bridge port forwards — one more visit of each
/// such namespace, not the packet socket whose close costs ~20 ms; from the bridge
/// (`on_bridges`) where it does not yet.
pub(super) fn announce_inside(
    host: &mut Conn,
    ix: &Indexes,
    mark: &str,
    these: &[&Step],
    ok: &mut Vec<Step>,
    tally: &mut Tally,
) {
    let inside = pick(
        these,
        |s| matches!(s, Step::Announce(a) if a.place.ns().is_some()),
    );
    if inside.is_empty() {
        return;
    }
    let t = Instant::now();
    let ports: Vec<&str> = inside
        .iter()
        .filter_map(|s| match s {
            Step::Announce(a) => a.port.as_ref().map(|p| p.name.as_str()),
            _ => None,
        })
        .collect();
    let late = announce::await_forwarding(host, &ports, PORT_UP);
    tally.add("wait for bridge ports to forward", ports.len(), t);
    let t = Instant::now();
    let (blocked, open): (Vec<&Step>, Vec<&Step>) = inside.into_iter().partition(|s| {
        matches!(s, Step::Announce(a) if a.port.as_ref().is_some_and(|p| late.contains(&p.name)))
    });
    // A lost announcement costs the segment seconds, not the run: a warning.
    let mut lost = Errors::default();
    visit_each(&open, ok, &mut lost, &|_, c, steps| {
        let (mut ok, mut errs) = (Vec::new(), Errors::default());
        match indexes(c) {
            Ok(ix) => send(c, steps, &At::new(mark, &ix), &mut ok, &mut errs),
            Err(e) => errs.add(e),
        }
        (ok, errs.0)
    });
    for e in lost.0 {
        crate::warning!("{e}: the segment's neighbour entries follow in a few seconds");
    }
    tally.add("announce in namespace", open.len(), t);
    let t = Instant::now();
    on_bridges(host, ix, &blocked, ok);
    tally.add("announce on bridge (port not forwarding)", blocked.len(), t);
}

/// Announcements whose bridge port does not forward yet (an inside announcement would be
/// dropped by it, and so would the kernel's two retries, for STP's forward delay of seconds):
/// the host's gratuitous ARP on the bridge, which leaves through the segment's forwarding
/// ports (one packet socket for all), and the bridge's own neighbour entries forgotten (the
/// host does not hear its own ARP). Failures are warnings, as for every announcement.
fn on_bridges(host: &mut Conn, ix: &Indexes, blocked: &[&Step], ok: &mut Vec<Step>) {
    if blocked.is_empty() {
        return;
    }
    let mut by_bridge: BTreeMap<&str, Vec<&Announce>> = BTreeMap::new();
    for s in blocked {
        if let Step::Announce(a) = s
            && let Some(p) = &a.port
        {
            by_bridge.entry(p.bridge.as_str()).or_default().push(a);
        }
    }
    let mut frames: Vec<(&str, IpAddr, [u8; 6])> = Vec::new();
    for (bridge, these) in &by_bridge {
        let forgot = match ix.get(*bridge) {
            Some(i) => neigh::forget(host, *i, bridge),
            None => Err(anyhow::anyhow!("no interface {bridge}")),
        };
        if let Err(e) = forgot {
            crate::warning!(
                "{e:#}: the host's neighbour entries on {bridge} follow in a few seconds"
            );
        }
        frames.extend(these.iter().map(|a| (*bridge, a.net.ip(), a.mac.0)));
    }
    for (r, (bridge, addr, _)) in announce::announce_all(&frames).into_iter().zip(&frames) {
        if let Err(e) = r {
            crate::warning!(
                "{e:#}: the neighbour entries for {addr} on {bridge} follow in a few seconds"
            );
        }
    }
    ok.extend(blocked.iter().map(|s| (*s).clone()));
}
