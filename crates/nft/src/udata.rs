//! Userdata: the TLV blobs (libnftnl's nftnl_udata: type byte, length byte, value) the kernel
//! stores for nft without reading them. Tables, chains, rules and elements keep their comment
//! there; sets keep the byte order of their key and data and nft's description of their type.

/// NFTNL_UDATA_{TABLE,CHAIN,RULE,SET_ELEM}_COMMENT
pub const COMMENT: u8 = 0;

/// NFTNL_UDATA_SET_*
pub mod set {
    pub const KEYBYTEORDER: u8 = 0;
    pub const DATABYTEORDER: u8 = 1;
    pub const KEY_TYPEOF: u8 = 3;
    pub const DATA_TYPEOF: u8 = 4;
    pub const DATA_INTERVAL: u8 = 6;
    pub const COMMENT: u8 = 7;
    /// NFTNL_UDATA_SET_TYPEOF_EXPR / _DATA inside a typeof nest.
    pub const TYPEOF_EXPR: u8 = 0;
    pub const TYPEOF_DATA: u8 = 1;
    /// nft's EXPR_CONCAT: what nft writes as the typeof of a `type a . b` declaration.
    pub const EXPR_CONCAT: u32 = 13;
}

/// A userdata blob being built.
#[derive(Default)]
pub struct Builder(Vec<u8>);

impl Builder {
    pub fn put(&mut self, ty: u8, val: &[u8]) -> &mut Builder {
        let len = val.len().min(255);
        self.0.push(ty);
        self.0.push(len as u8);
        self.0.extend_from_slice(&val[..len]);
        self
    }
    pub fn u32(&mut self, ty: u8, v: u32) -> &mut Builder {
        self.put(ty, &v.to_ne_bytes())
    }
    /// A string with its NUL, as nftnl_udata_put_strz writes it.
    pub fn strz(&mut self, ty: u8, s: &str) -> &mut Builder {
        let mut b = s.as_bytes()[..s.len().min(254)].to_vec();
        b.push(0);
        self.put(ty, &b)
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Userdata holding one comment, as nft writes it for tables, chains, rules and elements.
pub fn comment(c: &str) -> Vec<u8> {
    let mut b = Builder::default();
    b.strz(COMMENT, c);
    b.0
}

/// The value of the first TLV of type `ty`.
pub fn find(udata: &[u8], ty: u8) -> Option<&[u8]> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (t, len) = (rest[0], usize::from(rest[1]));
        let val = rest.get(2..2 + len)?;
        if t == ty {
            return Some(val);
        }
        rest = &rest[2 + len..];
    }
    None
}

/// A string TLV, without its NUL.
pub fn find_str(udata: &[u8], ty: u8) -> Option<String> {
    let v = find(udata, ty)?;
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    Some(String::from_utf8_lossy(v).into_owned())
}

/// The userdata nft 1.0.6 writes for a named set declared with `type`: key (and data) byte
/// order, for concatenations an (empty) typeof description, and the comment.
pub fn set_udata(
    key_order: u32,
    data_order: Option<u32>,
    key_concat: bool,
    data_concat: bool,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut concat_nest = Builder::default();
    concat_nest
        .u32(set::TYPEOF_EXPR, set::EXPR_CONCAT)
        .put(set::TYPEOF_DATA, &[]);
    let mut b = Builder::default();
    b.u32(set::KEYBYTEORDER, key_order);
    if let Some(d) = data_order {
        b.u32(set::DATABYTEORDER, d);
    }
    if key_concat {
        b.put(set::KEY_TYPEOF, concat_nest.bytes());
    }
    if data_order.is_some() {
        if data_concat {
            b.put(set::DATA_TYPEOF, concat_nest.bytes());
        }
        b.u32(set::DATA_INTERVAL, 0);
    }
    if let Some(c) = comment {
        b.strz(set::COMMENT, c);
    }
    b.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_udata_is_what_nft_writes() {
        // map pub4 { type inet_proto . inet_service : ipv4_addr . inet_service }, as strace
        // shows nft 1.0.6 sending it.
        assert_eq!(
            set_udata(0, Some(0), true, true, None),
            b"\x00\x04\x00\x00\x00\x00\x01\x04\x00\x00\x00\x00\x03\x08\x00\x04\x0d\x00\x00\x00\x01\x00\x04\x08\x00\x04\x0d\x00\x00\x00\x01\x00\x06\x04\x00\x00\x00\x00"
        );
        // set m { type mark; flags interval; comment "hi"; }
        assert_eq!(
            set_udata(1, None, false, false, Some("hi")),
            b"\x00\x04\x01\x00\x00\x00\x07\x03\x68\x69\x00"
        );
        assert_eq!(
            find_str(&comment("nsfw:lab"), COMMENT).as_deref(),
            Some("nsfw:lab")
        );
    }
}
