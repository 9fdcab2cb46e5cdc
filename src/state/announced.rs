//! Announcements in flight, in the write-ahead record. An address arriving on a namespace's
//! new interface is announced after it is made (`plan::neighbours`): a run killed between the
//! two leaves the address unannounced, and the segment's neighbour entries naming the MAC of
//! its earlier holder until they age out, while the next run finds the address in place and
//! would plan nothing. Noted before the address is made, it is made by the next run of the
//! topology (or dropped, the address gone), and cleared with the run's other pending work.

use std::collections::BTreeSet;

use ipnetwork::IpNetwork;
use serde_json::{Value, json};

/// Address `net` to be announced on interface `ifname` of namespace `ns` (None: the host).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Announcement {
    pub ns: Option<String>,
    pub ifname: String,
    pub net: IpNetwork,
}

/// The announcements a record's pending entry holds (none in records from before them).
pub(super) fn from_json(v: &Value) -> BTreeSet<Announcement> {
    let one = |a: &Value| {
        Some(Announcement {
            ns: a["ns"].as_str().map(str::to_string),
            ifname: a["ifname"].as_str()?.to_string(),
            net: a["net"].as_str()?.parse().ok()?,
        })
    };
    v.as_array().into_iter().flatten().filter_map(one).collect()
}

pub(super) fn to_json(all: &BTreeSet<Announcement>) -> Value {
    all.iter()
        .map(|a| json!({"ns": a.ns, "ifname": a.ifname, "net": a.net.to_string()}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_json_and_unreadable_entries_are_dropped() {
        let all: BTreeSet<Announcement> = [
            Announcement {
                ns: Some("ns1".into()),
                ifname: "eth0".into(),
                net: "198.51.100.2/24".parse().expect("net"),
            },
            Announcement {
                ns: None,
                ifname: "br0".into(),
                net: "2001:db8::1/64".parse().expect("net"),
            },
        ]
        .into();
        let mut v = to_json(&all);
        assert_eq!(from_json(&v), all);
        if let Some(a) = v.as_array_mut() {
            a.push(json!({"ns": "ns2", "ifname": "eth0", "net": "not an address"}));
        }
        assert_eq!(from_json(&v), all);
    }
}
