//! The IR as JSON (`nsfw show --json`, docs/json.md): tables, sets with their elements, chains
//! and rules, each statement with its kind, its parts and its `nft` text. Values are given as
//! nft prints them (`10.10.0.2`, `tcp`, `8080`), interface names without quotes.

use serde_json::{Value as J, json};

use super::ir::*;
use super::render::{element, priority};
use super::symbols;

fn value(v: &Value) -> J {
    match v {
        Value::Ifname(n) => n.clone().into(),
        v => symbols::value(v, false).into(),
    }
}

fn values(v: &[Value]) -> J {
    J::Array(v.iter().map(value).collect())
}

fn elem(e: &Element) -> J {
    json!({
        "key": values(&e.key),
        "key_end": e.key_end.as_deref().map(values),
        "data": match &e.data {
            None => J::Null,
            Some(ElemData::Verdict(v)) => v.to_string().into(),
            Some(ElemData::Values(v)) => values(v),
        },
        "timeout_ms": e.timeout,
        "comment": e.comment,
        "text": element(e),
    })
}

fn set(s: &Set) -> J {
    let mut flags = Vec::new();
    if s.flags.constant {
        flags.push("constant");
    }
    if s.flags.interval {
        flags.push("interval");
    }
    if s.flags.timeout {
        flags.push("timeout");
    }
    if s.flags.counter {
        flags.push("counter");
    }
    let types = |t: &[Datatype]| J::Array(t.iter().map(|d| d.name().into()).collect());
    json!({
        "name": s.name,
        "kind": match &s.data {
            None => "set",
            Some(SetData::Verdict) => "vmap",
            Some(SetData::Values(_)) => "map",
        },
        "key": types(&s.key),
        "data": match &s.data {
            None => J::Null,
            Some(SetData::Verdict) => "verdict".into(),
            Some(SetData::Values(v)) => types(v),
        },
        "flags": flags,
        "timeout_ms": s.timeout,
        "comment": s.comment,
        "elements": s.elements.iter().map(elem).collect::<Vec<_>>(),
    })
}

fn op(o: Op) -> &'static str {
    match o {
        Op::Eq => "==",
        Op::Neq => "!=",
        Op::Lt => "<",
        Op::Gt => ">",
        Op::Lte => "<=",
        Op::Gte => ">=",
        Op::Flags => "flags",
    }
}

fn rhs(r: &Rhs) -> J {
    match r {
        Rhs::Value(v) => json!({"value": value(v)}),
        Rhs::Prefix(v, plen) => json!({"prefix": value(v), "length": plen}),
        Rhs::Range(a, b) => json!({"range": [value(a), value(b)]}),
        Rhs::Set(SetRef::Named(n)) => json!({"set": n}),
        Rhs::Set(SetRef::Anon(els)) => {
            json!({"elements": els.iter().map(elem).collect::<Vec<_>>()})
        }
    }
}

fn verdict(v: &Verdict) -> J {
    let (word, chain) = match v {
        Verdict::Accept => ("accept", None),
        Verdict::Drop => ("drop", None),
        Verdict::Continue => ("continue", None),
        Verdict::Return => ("return", None),
        Verdict::Jump(c) => ("jump", Some(c)),
        Verdict::Goto(c) => ("goto", Some(c)),
    };
    json!({"verdict": word, "chain": chain})
}

/// One statement: `kind`, `text`, and the parts of the kinds a reader would take apart.
fn stmt(s: &Stmt) -> J {
    let mut j = match s {
        Stmt::Match(m) => json!({
            "kind": "match",
            "left": m.left.to_string(),
            "op": op(m.op),
            "right": rhs(&m.right),
        }),
        Stmt::Counter(c) => json!({"kind": "counter", "packets": c.packets, "bytes": c.bytes}),
        Stmt::Log(l) => json!({"kind": "log", "prefix": l.prefix, "group": l.group}),
        Stmt::Limit(_) => json!({"kind": "limit"}),
        Stmt::Reject(_) => json!({"kind": "reject"}),
        Stmt::MetaSet(..) | Stmt::CtSet(..) => json!({"kind": "set"}),
        Stmt::Notrack => json!({"kind": "notrack"}),
        Stmt::Nat(n) => json!({"kind": match n.kind {
            NatKind::Snat => "snat",
            NatKind::Dnat => "dnat",
        }}),
        Stmt::Masquerade(_) => json!({"kind": "masquerade"}),
        Stmt::Redirect(_) => json!({"kind": "redirect"}),
        Stmt::Verdict(v) => {
            let mut j = verdict(v);
            j["kind"] = "verdict".into();
            j
        }
        Stmt::Vmap(k, m) => json!({"kind": "vmap", "key": k.to_string(), "map": m.to_string()}),
        Stmt::Unreadable(_) => json!({"kind": "unreadable"}),
    };
    j["text"] = s.to_string().into();
    j
}

fn rule(r: &Rule) -> J {
    json!({
        "text": r.to_string(),
        "comment": r.comment,
        "statements": r.stmts.iter().map(stmt).collect::<Vec<_>>(),
    })
}

fn chain(c: &Chain, family: Family) -> J {
    json!({
        "name": c.name,
        "comment": c.comment,
        "base": c.base.map(|b| json!({
            "type": b.ty.as_str(),
            "hook": b.hook.as_str(),
            "priority": b.priority,
            "priority_name": priority(family, b.hook, b.priority),
            "policy": match b.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            },
        })),
        "rules": c.rules.iter().map(rule).collect::<Vec<_>>(),
    })
}

/// A table as JSON.
pub fn table(t: &Table) -> J {
    json!({
        "family": t.family.as_str(),
        "name": t.name,
        "comment": t.comment,
        "dormant": t.dormant,
        "sets": t.sets.iter().map(set).collect::<Vec<_>>(),
        "chains": t.chains.iter().map(|c| chain(c, t.family)).collect::<Vec<_>>(),
    })
}
