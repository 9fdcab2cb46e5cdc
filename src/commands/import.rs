//! `nsfw import`: the topology file of what this host holds, on standard output; what could
//! not be translated is in the file as comments and said on standard error.

use crate::import::{self, Options};
use crate::{output, warning};

use super::{ERR, Fail, OK, read_error};

pub fn import(name: Option<&str>, subnets: &[String], json: bool) -> Result<u8, Fail> {
    if let Some(name) = name
        && let Err(why) = crate::topology::check_topology_name(name)
    {
        crate::error!("--name {name:?}: a topology name {why}");
        return Err(Fail(ERR));
    }
    let mut nets = Vec::new();
    for s in subnets {
        match s.parse::<ipnetwork::IpNetwork>() {
            Ok(n) => nets.push(n),
            Err(e) => {
                crate::error!("--subnet {s:?}: not a CIDR ({e})");
                return Err(Fail(ERR));
            }
        }
    }
    let o = Options {
        name: name.map(str::to_string),
        subnets: nets,
    };
    let got = import::import(&o).map_err(|e| read_error("import", &e))?;
    for (t, objs) in &got.lab.held {
        warning!(
            "not imported: {} (nsfw topology {t}'s already; the file it was applied from describes them)",
            objs.join(", ")
        );
    }
    for n in &got.lab.notes {
        warning!("not translated: {n}");
    }
    // The file must be one nsfw reads: if it is not, say why rather than hand it over.
    let valid = crate::topology::parse(&got.toml, std::path::Path::new("(imported)"));
    if json {
        output::data(format_args!("{}\n", got.to_json()));
    } else {
        output::data(format_args!("{}", got.toml));
    }
    // Printed all the same (to be edited), but `import > f && apply --adopt f` stops here.
    if let Err(e) = valid {
        crate::error!("the imported file does not validate (edit it before use): {e:#}");
        return Err(Fail(ERR));
    }
    Ok(OK)
}
