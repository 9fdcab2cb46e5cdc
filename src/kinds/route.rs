//! A route of a namespace or the host: put in place (added, or replacing the one to the same
//! destination and metric: no moment without one), deleted.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Indexes, Stage, index_of};
use crate::plumbing::{Req, msgs};
use crate::resources::{Place, RouteSpec};

/// The route's destination as JSON shows it: `default` or the network.
fn dest(r: &RouteSpec) -> String {
    if r.dst.prefix() == 0 {
        "default".into()
    } else {
        r.dst.to_string()
    }
}

/// Where the routes are, in a line of text: `host` or the namespace.
fn at(place: &Place) -> &str {
    match place {
        Place::Host => "host",
        Place::Ns(ns) => ns,
    }
}

/// On the host, after the addresses (a route's next hop is on one); in a namespace, in its
/// visit, after its addresses too.
fn stage(place: &Place) -> Stage {
    Stage::at(place, Stage::HostFinish)
}

fn object(place: &Place) -> String {
    match place {
        Place::Host => "host routes".into(),
        Place::Ns(ns) => format!("namespace {ns}"),
    }
}

/// A route put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetRoute {
    pub place: Place,
    pub route: RouteSpec,
    /// What was there to the same destination; `again`: it looked right but an address it
    /// depends on changes in this run.
    pub old: Option<RouteSpec>,
    pub again: bool,
}

impl SetRoute {
    pub(crate) fn request(&self, ix: &Indexes) -> Result<Req> {
        let r = &self.route;
        Ok(msgs::replace_route(r, index_of(ix, &r.dev)?))
    }
}

impl Change for SetRoute {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.request(at.ix).map(|r| vec![r]))
    }
    fn stage(&self) -> Stage {
        stage(&self.place)
    }
    fn mark(&self) -> char {
        if self.old.is_none() && !self.again {
            '+'
        } else {
            '~'
        }
    }
    fn object(&self) -> String {
        object(&self.place)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        let r = &self.route;
        (
            "route",
            json!({"namespace": self.place.ns(), "destination": dest(r), "interface": r.dev,
                   "old": self.old.as_ref().and_then(|o| o.via.map(|v| v.to_string())),
                   "new": r.via.map(|v| v.to_string()), "src": r.src.map(|s| s.to_string())}),
        )
    }
}

impl fmt::Display for SetRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (at, route) = (at(&self.place), &self.route);
        match (&self.old, self.again) {
            (_, true) => write!(
                f,
                "~ route {at}: {route} (again: an address under it changes)"
            ),
            (None, false) => write!(f, "+ route {at}: {route}"),
            (Some(o), false) => write!(f, "~ route {at}: {o} → {route}"),
        }
    }
}

/// A route deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DelRoute {
    pub place: Place,
    pub route: RouteSpec,
}

impl DelRoute {
    /// A route through an interface that is gone, or of a type with none, goes by destination
    /// and metric alone.
    pub(crate) fn request(&self, ix: &Indexes) -> Req {
        msgs::del_route(&self.route, ix.get(&self.route.dev).copied())
    }
}

impl Change for DelRoute {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(Ok(vec![self.request(at.ix)]))
    }
    fn stage(&self) -> Stage {
        stage(&self.place)
    }
    fn mark(&self) -> char {
        '-'
    }
    fn object(&self) -> String {
        object(&self.place)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        let r = &self.route;
        (
            "route",
            json!({"namespace": self.place.ns(), "destination": dest(r), "interface": r.dev,
                   "old": r.via.map(|v| v.to_string()), "new": null}),
        )
    }
}

impl fmt::Display for DelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "- route {}: {}", at(&self.place), self.route)
    }
}
