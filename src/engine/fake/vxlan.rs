//! VXLAN links and their peers in the in-memory kernel: made as the kernel makes them
//! (down, then marked and up by their requests: here at once), the peers as all-zeros FDB
//! entries keyed by the link's index.

use anyhow::{Result, anyhow, bail};

use super::net::Net;
use crate::kinds::{AddFdb, CreateVxlan, DelFdb};
use crate::plumbing::{Fdb, Link, Via, VxlanObs};

impl Net {
    pub(super) fn create_vxlan(&mut self, v: &CreateVxlan, mark: &str) -> Result<()> {
        if self.o.host.link(&v.name).is_some() {
            bail!("{}: File exists", v.name);
        }
        let l = Link {
            name: v.name.clone(),
            kind: Some("vxlan".into()),
            mtu: v.mtu,
            mac: Some(v.mac),
            alias: Some(mark.into()),
            qdisc: Some("noqueue".into()),
            vxlan: Some(VxlanObs::new(v.id, Some(v.local), v.port)),
            ..Link::bare(self.new_index(), true, false)
        };
        self.o.host.links.push(l);
        Ok(())
    }

    fn vxlan_index(&self, name: &str) -> Result<u32> {
        self.o
            .host
            .link(name)
            .filter(|l| l.vxlan.is_some())
            .map(|l| l.index)
            .ok_or_else(|| anyhow!("{name}: no such VXLAN device"))
    }

    pub(super) fn add_fdb(&mut self, f: &AddFdb) -> Result<()> {
        let e = Fdb {
            index: self.vxlan_index(&f.link)?,
            dst: f.dst,
            via: Via::default(),
        };
        if !self.o.host.fdb.contains(&e) {
            self.o.host.fdb.push(e);
        }
        Ok(())
    }

    pub(super) fn del_fdb(&mut self, f: &DelFdb) -> Result<()> {
        let e = Fdb {
            index: f.index,
            dst: f.dst,
            via: f.via,
        };
        self.o.host.fdb.retain(|x| *x != e);
        Ok(())
    }
}
