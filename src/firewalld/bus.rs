//! firewalld's D-Bus API (`org.fedoraproject.FirewallD1` on the system bus; zbus's blocking
//! connection, which honours `DBUS_SYSTEM_BUS_ADDRESS`): the runtime zone of an interface,
//! and binding or unbinding one. Never `firewall-cmd`, never firewalld's nft table.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use zbus::blocking::Connection;

use super::{Change, Firewalld, ZONE};

const NAME: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE: &str = "org.fedoraproject.FirewallD1.zone";
/// firewalld answers a zone change once its rules are rewritten (tens of ms); a firewalld
/// busy reloading may take seconds. Longer than that, the run says so rather than hang.
const TIMEOUT: Duration = Duration::from_secs(10);

fn connect() -> Result<Connection> {
    zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(TIMEOUT).build())
        .context("cannot connect to the system bus")
}

/// Whether firewalld holds its name on the bus.
fn running(c: &Connection) -> Result<bool> {
    let r = c.call_method(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus"),
        "NameHasOwner",
        &(NAME,),
    )?;
    Ok(r.body().deserialize()?)
}

fn zone_call(c: &Connection, method: &str, args: &(&str, &str)) -> zbus::Result<()> {
    c.call_method(Some(NAME), PATH, Some(ZONE_IFACE), method, args)
        .map(|_| ())
}

fn zone_of(c: &Connection, iface: &str) -> Result<String> {
    let r = c
        .call_method(
            Some(NAME),
            PATH,
            Some(ZONE_IFACE),
            "getZoneOfInterface",
            &(iface,),
        )
        .with_context(|| format!("firewalld's getZoneOfInterface({iface})"))?;
    Ok(r.body().deserialize()?)
}

/// The runtime zone of each of `ifaces`, when `table` says firewalld runs; nothing touches
/// D-Bus otherwise.
pub(crate) fn observe(table: bool, ifaces: &[String]) -> Firewalld {
    if !table {
        return Firewalld::Absent;
    }
    let asked = || -> Result<BTreeMap<String, String>> {
        let c = connect()?;
        if !running(&c)? {
            return Err(anyhow!("{NAME} is not on the system bus"));
        }
        ifaces
            .iter()
            .map(|i| Ok((i.clone(), zone_of(&c, i)?)))
            .collect()
    };
    match asked() {
        Ok(z) => Firewalld::Running(z),
        Err(e) => Firewalld::Unreachable(format!("{e:#}")),
    }
}

/// firewalld's error name for a method's failure: `ZONE_ALREADY_SET` of
/// `org.fedoraproject.FirewallD1.Exception: ZONE_ALREADY_SET: 'br0' already bound to 'trusted'`.
fn code(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(_, Some(msg), _) => msg.split(':').next(),
        _ => None,
    }
}

/// Carries the changes out. A binding already made (by a run killed after it, or by firewalld
/// reloading in between) or already gone is what was wanted, not an error.
pub(crate) fn apply(changes: &[Change]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let c = connect()?;
    for ch in changes {
        let (method, fine) = if ch.add {
            ("addInterface", "ZONE_ALREADY_SET")
        } else {
            ("removeInterface", "UNKNOWN_INTERFACE")
        };
        match zone_call(&c, method, &(ZONE, &ch.iface)) {
            Ok(()) => {}
            Err(e) if code(&e) == Some(fine) => {}
            Err(e) => {
                return Err(anyhow!("firewalld: {method}({ZONE}, {}): {e}", ch.iface));
            }
        }
    }
    Ok(())
}
