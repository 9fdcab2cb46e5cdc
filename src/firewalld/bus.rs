//! firewalld's D-Bus API (`org.fedoraproject.FirewallD1` on the system bus, through zbus): the
//! runtime zone of an interface, and binding or unbinding one. Never `firewall-cmd`, never
//! firewalld's nft table.
//!
//! nsfw runs as root with its caller's environment, so `DBUS_SYSTEM_BUS_ADDRESS` is honoured
//! only as a `unix:path=` address (`unixexec:` would make root start a program); the socket
//! is connected here, not by zbus, so that a symlink is never followed and the whole
//! handshake has a deadline (zbus's has none: a bus that accepts and never answers would hold
//! the run, and its lock, forever).

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_io::{Async, Timer};
use zbus::blocking::Connection;

use super::{Change, Firewalld, ZONE};

const NAME: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE: &str = "org.fedoraproject.FirewallD1.zone";
/// firewalld answers a zone change once its rules are rewritten (tens of ms); a firewalld
/// busy reloading may take seconds. Longer than that, the run says so rather than hang.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The bus daemon answers the handshake (auth, `Hello`) in milliseconds; one that has not in
/// this long is wedged.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SYSTEM_SOCKET: &str = "/run/dbus/system_bus_socket";
const ADDRESS_VAR: &str = "DBUS_SYSTEM_BUS_ADDRESS";

/// The socket of the system bus address `addr` (`DBUS_SYSTEM_BUS_ADDRESS`): one
/// `unix:path=…` address (a `guid=` beside it is allowed), its value unescaped. `Err` says why
/// it is not taken.
pub(super) fn socket_of(addr: &str) -> Result<PathBuf, String> {
    let entries: Vec<&str> = addr.split(';').filter(|e| !e.is_empty()).collect();
    let [entry] = entries[..] else {
        return Err("not one address".into());
    };
    let keys = entry
        .strip_prefix("unix:")
        .ok_or("only a unix:path= address is used")?;
    let mut path = None;
    for kv in keys.split(',') {
        match kv.split_once('=') {
            Some(("path", v)) if path.is_none() => path = Some(unescape(v)?),
            Some(("guid", _)) => {}
            _ => return Err(format!("`{kv}`: only a unix:path= address is used")),
        }
    }
    let path = PathBuf::from(path.ok_or("no path=")?);
    if !path.is_absolute() {
        return Err("the path is not absolute".into());
    }
    Ok(path)
}

/// A D-Bus address value's `%XX` escapes.
fn unescape(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v.get(i + 1..i + 3).ok_or("a bad % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad % escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a path that is not UTF-8".into())
}

/// The system bus's socket: `DBUS_SYSTEM_BUS_ADDRESS` when it is a `unix:path=` address, else
/// (with a warning when it is set to something else) the standard one.
fn system_socket() -> PathBuf {
    let Some(v) = std::env::var_os(ADDRESS_VAR) else {
        return PathBuf::from(SYSTEM_SOCKET);
    };
    match v
        .to_str()
        .ok_or_else(|| "not UTF-8".to_string())
        .and_then(socket_of)
    {
        Ok(p) => p,
        Err(why) => {
            crate::warning!(
                "{ADDRESS_VAR}={} ignored ({why}): firewalld is asked on {SYSTEM_SOCKET}",
                v.to_string_lossy()
            );
            PathBuf::from(SYSTEM_SOCKET)
        }
    }
}

/// A connection to the system bus, handshake done, within `CONNECT_TIMEOUT`.
fn connect() -> Result<Connection> {
    let path = system_socket();
    // lstat: the socket itself, never what a symlink points at; a FIFO or file is refused
    // before anything opens it.
    let meta = std::fs::symlink_metadata(&path)
        .with_context(|| format!("cannot connect to the system bus at {}", path.display()))?;
    if !meta.file_type().is_socket() {
        bail!(
            "cannot connect to the system bus: {} is not a socket",
            path.display()
        );
    }
    let handshake = async {
        // Non-blocking connect: a listener with a full backlog cannot hold it either.
        let s = Async::<UnixStream>::connect(&path).await?.into_inner()?;
        #[allow(deprecated)] // `unix_stream` is the async-io form here (no tokio feature).
        let b = zbus::connection::Builder::unix_stream(s);
        Ok::<_, anyhow::Error>(b.method_timeout(TIMEOUT).build().await?)
    };
    let deadline = async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err(anyhow!(
            "the system bus at {} did not answer within {} s",
            path.display(),
            CONNECT_TIMEOUT.as_secs()
        ))
    };
    let c: zbus::Connection = async_io::block_on(futures_lite::future::or(handshake, deadline))
        .context("cannot connect to the system bus")?;
    Ok(c.into())
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
