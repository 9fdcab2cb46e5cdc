//! Kernel expressions, one description each: the struct of an expression's fields and, per
//! field, its NFTNL_EXPR_* attribute and type. The [`exprs!`] macro derives from that single
//! description the conversion to a libnftnl `nftnl_expr` (encoding), the conversion back from
//! one parsed out of a kernel message (decoding), and a readable form for rules nsfw cannot
//! read back. The attributes are `ffi`'s typed ones: a field whose type is not the one
//! libnftnl keeps the attribute in does not compile. Nothing here knows what a rule means;
//! [`super::lower`] and [`super::raise`] do.

use anyhow::{Result, anyhow};

use crate::ffi::{self, Data, ExprK, Str};

/// A field type that libnftnl sets on and gets from an expression, through the attribute of
/// its type (`Kind`: the number itself, [`Str`] or [`Data`]).
pub(crate) trait Attr: Sized {
    type Kind;
    fn put(&self, e: &mut ffi::Expr, attr: ffi::Attr<ExprK, Self::Kind>) -> Result<()>;
    fn take(e: &ffi::Expr, attr: ffi::Attr<ExprK, Self::Kind>) -> Option<Self>;
    fn show(&self) -> String;
}

macro_rules! int_attr {
    ($t:ty, $set:ident, $get:ident) => {
        impl Attr for $t {
            type Kind = $t;
            fn put(&self, e: &mut ffi::Expr, attr: ffi::Attr<ExprK, $t>) -> Result<()> {
                e.$set(attr, *self)
            }
            fn take(e: &ffi::Expr, attr: ffi::Attr<ExprK, $t>) -> Option<Self> {
                e.$get(attr)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    };
}

int_attr!(u8, set_u8, u8);
int_attr!(u16, set_u16, u16);
int_attr!(u32, set_u32, u32);
int_attr!(u64, set_u64, u64);

impl Attr for String {
    type Kind = Str;
    /// A name with a NUL byte cannot be sent; it is cut there.
    fn put(&self, e: &mut ffi::Expr, attr: ffi::Attr<ExprK, Str>) -> Result<()> {
        e.set_str(attr, self)
    }
    fn take(e: &ffi::Expr, attr: ffi::Attr<ExprK, Str>) -> Option<Self> {
        e.str(attr)
    }
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Attr for Vec<u8> {
    type Kind = Data;
    fn put(&self, e: &mut ffi::Expr, attr: ffi::Attr<ExprK, Data>) -> Result<()> {
        e.set_data(attr, self)
    }
    fn take(e: &ffi::Expr, attr: ffi::Attr<ExprK, Data>) -> Option<Self> {
        e.data(attr)
    }
    fn show(&self) -> String {
        let hex: String = self.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }
}

/// Declares the expressions: `Type = "kernel name" { field: type = NFTNL_EXPR_ATTR, ... }`.
macro_rules! exprs {
    ($(
        $(#[$doc:meta])*
        $ty:ident = $name:literal { $( $field:ident : $fty:ty = $attr:ident ),* $(,)? }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Debug, Default, PartialEq, Eq)]
            pub struct $ty { $( pub $field: Option<$fty>, )* }
        )*

        /// One kernel expression.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Raw {
            $( $ty($ty), )*
            /// An expression nsfw has no description of, by its kernel name.
            Unknown(String),
        }

        impl Raw {
            /// The kernel's name of the expression.
            pub fn name(&self) -> &str {
                match self {
                    $( Raw::$ty(_) => $name, )*
                    Raw::Unknown(n) => n,
                }
            }

            /// Sets every present field on a fresh `nftnl_expr` of the right kind.
            fn put_fields(&self, e: &mut ffi::Expr) -> Result<()> {
                match self {
                    $( Raw::$ty(_x) => {
                        $( if let Some(v) = &_x.$field {
                            v.put(e, ffi::$attr)?;
                        } )*
                    } )*
                    Raw::Unknown(_) => {}
                }
                Ok(())
            }

            /// Reads an expression parsed by libnftnl (the attributes it holds).
            pub(crate) fn from_nftnl(e: &ffi::Expr) -> Raw {
                match e.name() {
                    $( $name => Raw::$ty($ty { $(
                        $field: <$fty as Attr>::take(e, ffi::$attr),
                    )* }), )*
                    name => Raw::Unknown(name.to_string()),
                }
            }

            /// `payload dreg=1 base=1 offset=12 len=4`: the fields as the description names
            /// them, for rules nsfw cannot read back.
            pub fn describe(&self) -> String {
                let mut s = self.name().to_string();
                match self {
                    $( Raw::$ty(_x) => {
                        $( if let Some(v) = &_x.$field {
                            s.push_str(&format!(" {}={}", stringify!($field), v.show()));
                        } )*
                    } )*
                    Raw::Unknown(_) => s.push_str(" (unknown to nsfw)"),
                }
                s
            }
        }
    };
}

exprs! {
    /// Loads header bytes into a register (dreg), or writes a register into the header (sreg).
    Payload = "payload" {
        dreg: u32 = NFTNL_EXPR_PAYLOAD_DREG,
        base: u32 = NFTNL_EXPR_PAYLOAD_BASE,
        offset: u32 = NFTNL_EXPR_PAYLOAD_OFFSET,
        len: u32 = NFTNL_EXPR_PAYLOAD_LEN,
        sreg: u32 = NFTNL_EXPR_PAYLOAD_SREG,
        csum_type: u32 = NFTNL_EXPR_PAYLOAD_CSUM_TYPE,
        csum_offset: u32 = NFTNL_EXPR_PAYLOAD_CSUM_OFFSET,
        flags: u32 = NFTNL_EXPR_PAYLOAD_FLAGS,
    }
    /// Loads packet metadata (dreg) or sets it (sreg).
    Meta = "meta" {
        key: u32 = NFTNL_EXPR_META_KEY,
        dreg: u32 = NFTNL_EXPR_META_DREG,
        sreg: u32 = NFTNL_EXPR_META_SREG,
    }
    /// Compares a register with data; the rule stops when it does not hold.
    Cmp = "cmp" {
        sreg: u32 = NFTNL_EXPR_CMP_SREG,
        op: u32 = NFTNL_EXPR_CMP_OP,
        data: Vec<u8> = NFTNL_EXPR_CMP_DATA,
    }
    /// dreg = (sreg & mask) ^ xor, or a shift by data.
    Bitwise = "bitwise" {
        sreg: u32 = NFTNL_EXPR_BITWISE_SREG,
        dreg: u32 = NFTNL_EXPR_BITWISE_DREG,
        len: u32 = NFTNL_EXPR_BITWISE_LEN,
        mask: Vec<u8> = NFTNL_EXPR_BITWISE_MASK,
        xor: Vec<u8> = NFTNL_EXPR_BITWISE_XOR,
        op: u32 = NFTNL_EXPR_BITWISE_OP,
        data: Vec<u8> = NFTNL_EXPR_BITWISE_DATA,
    }
    /// Converts a register between host and network byte order.
    Byteorder = "byteorder" {
        sreg: u32 = NFTNL_EXPR_BYTEORDER_SREG,
        dreg: u32 = NFTNL_EXPR_BYTEORDER_DREG,
        op: u32 = NFTNL_EXPR_BYTEORDER_OP,
        len: u32 = NFTNL_EXPR_BYTEORDER_LEN,
        size: u32 = NFTNL_EXPR_BYTEORDER_SIZE,
    }
    /// Loads conntrack data (dreg) or sets it (sreg).
    Ct = "ct" {
        key: u32 = NFTNL_EXPR_CT_KEY,
        dreg: u32 = NFTNL_EXPR_CT_DREG,
        dir: u8 = NFTNL_EXPR_CT_DIR,
        sreg: u32 = NFTNL_EXPR_CT_SREG,
    }
    /// Puts data into a register, or a verdict into the verdict register (dreg 0).
    Immediate = "immediate" {
        dreg: u32 = NFTNL_EXPR_IMM_DREG,
        data: Vec<u8> = NFTNL_EXPR_IMM_DATA,
        verdict: u32 = NFTNL_EXPR_IMM_VERDICT,
        chain: String = NFTNL_EXPR_IMM_CHAIN,
    }
    /// Looks a register up in a set; with dreg, writes the mapped data (or verdict).
    Lookup = "lookup" {
        sreg: u32 = NFTNL_EXPR_LOOKUP_SREG,
        dreg: u32 = NFTNL_EXPR_LOOKUP_DREG,
        set: String = NFTNL_EXPR_LOOKUP_SET,
        set_id: u32 = NFTNL_EXPR_LOOKUP_SET_ID,
        flags: u32 = NFTNL_EXPR_LOOKUP_FLAGS,
    }
    /// from <= sreg <= to (or not).
    Range = "range" {
        sreg: u32 = NFTNL_EXPR_RANGE_SREG,
        op: u32 = NFTNL_EXPR_RANGE_OP,
        from: Vec<u8> = NFTNL_EXPR_RANGE_FROM_DATA,
        to: Vec<u8> = NFTNL_EXPR_RANGE_TO_DATA,
    }
    /// snat/dnat to the addresses and ports in the named registers.
    Nat = "nat" {
        kind: u32 = NFTNL_EXPR_NAT_TYPE,
        family: u32 = NFTNL_EXPR_NAT_FAMILY,
        addr_min: u32 = NFTNL_EXPR_NAT_REG_ADDR_MIN,
        addr_max: u32 = NFTNL_EXPR_NAT_REG_ADDR_MAX,
        proto_min: u32 = NFTNL_EXPR_NAT_REG_PROTO_MIN,
        proto_max: u32 = NFTNL_EXPR_NAT_REG_PROTO_MAX,
        flags: u32 = NFTNL_EXPR_NAT_FLAGS,
    }
    /// Source NAT to the address of the outgoing interface.
    Masq = "masq" {
        flags: u32 = NFTNL_EXPR_MASQ_FLAGS,
        proto_min: u32 = NFTNL_EXPR_MASQ_REG_PROTO_MIN,
        proto_max: u32 = NFTNL_EXPR_MASQ_REG_PROTO_MAX,
    }
    /// Destination NAT to the host itself.
    Redir = "redir" {
        proto_min: u32 = NFTNL_EXPR_REDIR_REG_PROTO_MIN,
        proto_max: u32 = NFTNL_EXPR_REDIR_REG_PROTO_MAX,
        flags: u32 = NFTNL_EXPR_REDIR_FLAGS,
    }
    Counter = "counter" {
        packets: u64 = NFTNL_EXPR_CTR_PACKETS,
        bytes: u64 = NFTNL_EXPR_CTR_BYTES,
    }
    Log = "log" {
        prefix: String = NFTNL_EXPR_LOG_PREFIX,
        group: u16 = NFTNL_EXPR_LOG_GROUP,
        snaplen: u32 = NFTNL_EXPR_LOG_SNAPLEN,
        qthreshold: u16 = NFTNL_EXPR_LOG_QTHRESHOLD,
        level: u32 = NFTNL_EXPR_LOG_LEVEL,
        flags: u32 = NFTNL_EXPR_LOG_FLAGS,
    }
    Limit = "limit" {
        rate: u64 = NFTNL_EXPR_LIMIT_RATE,
        unit: u64 = NFTNL_EXPR_LIMIT_UNIT,
        burst: u32 = NFTNL_EXPR_LIMIT_BURST,
        kind: u32 = NFTNL_EXPR_LIMIT_TYPE,
        flags: u32 = NFTNL_EXPR_LIMIT_FLAGS,
    }
    Reject = "reject" {
        kind: u32 = NFTNL_EXPR_REJECT_TYPE,
        code: u8 = NFTNL_EXPR_REJECT_CODE,
    }
    /// A route lookup; the result goes to dreg.
    Fib = "fib" {
        dreg: u32 = NFTNL_EXPR_FIB_DREG,
        result: u32 = NFTNL_EXPR_FIB_RESULT,
        flags: u32 = NFTNL_EXPR_FIB_FLAGS,
    }
    /// Exempts the packet from connection tracking.
    Notrack = "notrack" {}
    /// An xtables match inside an nftables rule (iptables-nft writes `-m comment` as one after
    /// an iptables-restore): its name, revision and the match's own data.
    Xt = "match" {
        name: String = NFTNL_EXPR_MT_NAME,
        rev: u32 = NFTNL_EXPR_MT_REV,
        info: Vec<u8> = NFTNL_EXPR_MT_INFO,
    }
    /// An xtables target inside an nftables rule: iptables-nft writes `-j REJECT` (and every
    /// target other than a verdict) as one. Read so that `doctor` can tell a reject.
    XtTarget = "target" {
        name: String = NFTNL_EXPR_TG_NAME,
        rev: u32 = NFTNL_EXPR_TG_REV,
        info: Vec<u8> = NFTNL_EXPR_TG_INFO,
    }
}

/// Verdict codes in the verdict register (NF_* and NFT_*).
pub mod verdict {
    pub const DROP: u32 = 0;
    pub const ACCEPT: u32 = 1;
    pub const CONTINUE: u32 = -1i32 as u32;
    pub const JUMP: u32 = -3i32 as u32;
    pub const GOTO: u32 = -4i32 as u32;
    pub const RETURN: u32 = -5i32 as u32;
}

/// cmp operators (enum nft_cmp_ops).
pub mod cmp {
    pub const EQ: u32 = 0;
    pub const NEQ: u32 = 1;
    pub const LT: u32 = 2;
    pub const LTE: u32 = 3;
    pub const GT: u32 = 4;
    pub const GTE: u32 = 5;
}

impl Raw {
    /// Builds the libnftnl expression: made by name, one setter per present field.
    pub(crate) fn to_nftnl(&self) -> Result<ffi::Expr> {
        if let Raw::Unknown(n) = self {
            return Err(anyhow!("cannot encode the unknown expression {n:?}"));
        }
        let mut e = ffi::Expr::new(self.name())?;
        self.put_fields(&mut e)?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_gives_the_same_fields() {
        let exprs = [
            Raw::Payload(Payload {
                dreg: Some(1),
                base: Some(1),
                offset: Some(12),
                len: Some(4),
                ..Default::default()
            }),
            Raw::Cmp(Cmp {
                sreg: Some(1),
                op: Some(cmp::NEQ),
                data: Some(vec![10, 10, 0, 0]),
            }),
            Raw::Immediate(Immediate {
                dreg: Some(0),
                verdict: Some(verdict::JUMP),
                chain: Some("to_br0".into()),
                ..Default::default()
            }),
            Raw::Ct(Ct {
                key: Some(0),
                dreg: Some(1),
                dir: Some(1),
                ..Default::default()
            }),
            Raw::Log(Log {
                prefix: Some("x ".into()),
                group: Some(2),
                ..Default::default()
            }),
            Raw::Limit(Limit {
                rate: Some(10),
                unit: Some(1),
                burst: Some(5),
                kind: Some(0),
                flags: Some(1),
            }),
            Raw::Notrack(Notrack {}),
        ];
        for r in exprs {
            let e = r.to_nftnl().expect("encode");
            let back = Raw::from_nftnl(&e);
            assert_eq!(back, r);
        }
        assert!(
            Raw::Cmp(Cmp {
                sreg: Some(1),
                op: Some(0),
                data: Some(vec![6])
            })
            .describe()
            .contains("data=0x06")
        );
    }

    #[test]
    fn xtables_info_is_given_to_libnftnl_as_its_own_copy() {
        // libnftnl keeps an xtables match's info and frees it with the expression: encoding
        // one, reading it back and dropping it must neither leak into nor free our bytes.
        let r = Raw::Xt(Xt {
            name: Some("comment".into()),
            rev: Some(0),
            info: Some(b"a comment\0".to_vec()),
        });
        let e = r.to_nftnl().expect("encode");
        assert_eq!(Raw::from_nftnl(&e), r);
        drop(e);
        let t = Raw::XtTarget(XtTarget {
            name: Some("REJECT".into()),
            rev: Some(0),
            info: Some(vec![1, 0, 0, 0]),
        });
        assert_eq!(Raw::from_nftnl(&t.to_nftnl().expect("encode")), t);
    }

    #[test]
    fn a_register_longer_than_64_bytes_is_refused() {
        let r = Raw::Cmp(Cmp {
            sreg: Some(1),
            op: Some(cmp::EQ),
            data: Some(vec![0; 65]),
        });
        assert!(r.to_nftnl().is_err());
    }
}
