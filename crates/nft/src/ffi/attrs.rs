//! The attributes nsfw sets and reads, each with the type libnftnl keeps it in: its setters
//! copy that many bytes (a number), `strlen + 1` (a [`Str`]), or the bytes as [`Taken`] says
//! ([`Data`]). The names are libnftnl's; the constants are typed versions of its numbers.

use nftnl::nftnl_sys as sys;

use super::kind::{ChainK, GenK, NamedObjK, RuleK, SetElemK, SetK, TableK};
use super::{Attr, Data, Str, Taken};

/// The kind of expression attributes (each also names its expression).
pub(crate) enum ExprK {}

macro_rules! attrs {
    (@taken) => { Taken::Copied };
    (@taken $t:ident) => { Taken::$t };
    ($kind:ident $expr:literal { $( $name:ident: $t:ident $(= $taken:ident)? ),* $(,)? }) => {
        $(
            pub(crate) const $name: Attr<$kind, $t> =
                Attr::new(sys::$name as u32, attrs!(@taken $($taken)?), $expr);
        )*
    };
}

attrs!(TableK "" {
    NFTNL_TABLE_NAME: Str,
    NFTNL_TABLE_FAMILY: u32,
    NFTNL_TABLE_FLAGS: u32,
    NFTNL_TABLE_HANDLE: u64,
    NFTNL_TABLE_USERDATA: Data,
});

attrs!(ChainK "" {
    NFTNL_CHAIN_NAME: Str,
    NFTNL_CHAIN_FAMILY: u32,
    NFTNL_CHAIN_TABLE: Str,
    NFTNL_CHAIN_DEV: Str,
    NFTNL_CHAIN_HOOKNUM: u32,
    NFTNL_CHAIN_PRIO: i32,
    NFTNL_CHAIN_POLICY: u32,
    NFTNL_CHAIN_TYPE: Str,
    NFTNL_CHAIN_HANDLE: u64,
    NFTNL_CHAIN_USERDATA: Data,
});

attrs!(RuleK "" {
    NFTNL_RULE_TABLE: Str,
    NFTNL_RULE_CHAIN: Str,
    NFTNL_RULE_HANDLE: u64,
    NFTNL_RULE_USERDATA: Data,
});

attrs!(SetK "" {
    NFTNL_SET_TABLE: Str,
    NFTNL_SET_NAME: Str,
    NFTNL_SET_FLAGS: u32,
    NFTNL_SET_KEY_TYPE: u32,
    NFTNL_SET_KEY_LEN: u32,
    NFTNL_SET_DATA_TYPE: u32,
    NFTNL_SET_DATA_LEN: u32,
    NFTNL_SET_ID: u32,
    NFTNL_SET_TIMEOUT: u64,
    NFTNL_SET_DESC_SIZE: u32,
    NFTNL_SET_DESC_CONCAT: Data = Lengths,
    NFTNL_SET_USERDATA: Data,
});

attrs!(SetElemK "" {
    NFTNL_SET_ELEM_FLAGS: u32,
    NFTNL_SET_ELEM_KEY: Data = Register,
    NFTNL_SET_ELEM_KEY_END: Data = Register,
    NFTNL_SET_ELEM_DATA: Data = Register,
    NFTNL_SET_ELEM_VERDICT: u32,
    NFTNL_SET_ELEM_CHAIN: Str,
    NFTNL_SET_ELEM_TIMEOUT: u64,
    NFTNL_SET_ELEM_USERDATA: Data,
});

attrs!(NamedObjK "" {
    NFTNL_OBJ_TABLE: Str,
    NFTNL_OBJ_NAME: Str,
    NFTNL_OBJ_TYPE: u32,
});

attrs!(GenK "" {
    NFTNL_GEN_ID: u32,
});

// Expressions: each attribute belongs to one expression (by its kernel name); the numbers
// start again in each.

attrs!(ExprK "" { NFTNL_EXPR_NAME: Str });

attrs!(ExprK "payload" {
    NFTNL_EXPR_PAYLOAD_DREG: u32,
    NFTNL_EXPR_PAYLOAD_BASE: u32,
    NFTNL_EXPR_PAYLOAD_OFFSET: u32,
    NFTNL_EXPR_PAYLOAD_LEN: u32,
    NFTNL_EXPR_PAYLOAD_SREG: u32,
    NFTNL_EXPR_PAYLOAD_CSUM_TYPE: u32,
    NFTNL_EXPR_PAYLOAD_CSUM_OFFSET: u32,
    NFTNL_EXPR_PAYLOAD_FLAGS: u32,
});

attrs!(ExprK "meta" {
    NFTNL_EXPR_META_KEY: u32,
    NFTNL_EXPR_META_DREG: u32,
    NFTNL_EXPR_META_SREG: u32,
});

attrs!(ExprK "cmp" {
    NFTNL_EXPR_CMP_SREG: u32,
    NFTNL_EXPR_CMP_OP: u32,
    NFTNL_EXPR_CMP_DATA: Data = Register,
});

attrs!(ExprK "bitwise" {
    NFTNL_EXPR_BITWISE_SREG: u32,
    NFTNL_EXPR_BITWISE_DREG: u32,
    NFTNL_EXPR_BITWISE_LEN: u32,
    NFTNL_EXPR_BITWISE_MASK: Data = Register,
    NFTNL_EXPR_BITWISE_XOR: Data = Register,
    NFTNL_EXPR_BITWISE_OP: u32,
    NFTNL_EXPR_BITWISE_DATA: Data = Register,
});

attrs!(ExprK "byteorder" {
    NFTNL_EXPR_BYTEORDER_SREG: u32,
    NFTNL_EXPR_BYTEORDER_DREG: u32,
    NFTNL_EXPR_BYTEORDER_OP: u32,
    NFTNL_EXPR_BYTEORDER_LEN: u32,
    NFTNL_EXPR_BYTEORDER_SIZE: u32,
});

attrs!(ExprK "ct" {
    NFTNL_EXPR_CT_KEY: u32,
    NFTNL_EXPR_CT_DREG: u32,
    NFTNL_EXPR_CT_DIR: u8,
    NFTNL_EXPR_CT_SREG: u32,
});

attrs!(ExprK "immediate" {
    NFTNL_EXPR_IMM_DREG: u32,
    NFTNL_EXPR_IMM_DATA: Data = Register,
    NFTNL_EXPR_IMM_VERDICT: u32,
    NFTNL_EXPR_IMM_CHAIN: Str,
});

attrs!(ExprK "lookup" {
    NFTNL_EXPR_LOOKUP_SREG: u32,
    NFTNL_EXPR_LOOKUP_DREG: u32,
    NFTNL_EXPR_LOOKUP_SET: Str,
    NFTNL_EXPR_LOOKUP_SET_ID: u32,
    NFTNL_EXPR_LOOKUP_FLAGS: u32,
});

attrs!(ExprK "range" {
    NFTNL_EXPR_RANGE_SREG: u32,
    NFTNL_EXPR_RANGE_OP: u32,
    NFTNL_EXPR_RANGE_FROM_DATA: Data = Register,
    NFTNL_EXPR_RANGE_TO_DATA: Data = Register,
});

attrs!(ExprK "nat" {
    NFTNL_EXPR_NAT_TYPE: u32,
    NFTNL_EXPR_NAT_FAMILY: u32,
    NFTNL_EXPR_NAT_REG_ADDR_MIN: u32,
    NFTNL_EXPR_NAT_REG_ADDR_MAX: u32,
    NFTNL_EXPR_NAT_REG_PROTO_MIN: u32,
    NFTNL_EXPR_NAT_REG_PROTO_MAX: u32,
    NFTNL_EXPR_NAT_FLAGS: u32,
});

attrs!(ExprK "masq" {
    NFTNL_EXPR_MASQ_FLAGS: u32,
    NFTNL_EXPR_MASQ_REG_PROTO_MIN: u32,
    NFTNL_EXPR_MASQ_REG_PROTO_MAX: u32,
});

attrs!(ExprK "redir" {
    NFTNL_EXPR_REDIR_REG_PROTO_MIN: u32,
    NFTNL_EXPR_REDIR_REG_PROTO_MAX: u32,
    NFTNL_EXPR_REDIR_FLAGS: u32,
});

attrs!(ExprK "counter" {
    NFTNL_EXPR_CTR_PACKETS: u64,
    NFTNL_EXPR_CTR_BYTES: u64,
});

attrs!(ExprK "log" {
    NFTNL_EXPR_LOG_PREFIX: Str,
    NFTNL_EXPR_LOG_GROUP: u16,
    NFTNL_EXPR_LOG_SNAPLEN: u32,
    NFTNL_EXPR_LOG_QTHRESHOLD: u16,
    NFTNL_EXPR_LOG_LEVEL: u32,
    NFTNL_EXPR_LOG_FLAGS: u32,
});

attrs!(ExprK "limit" {
    NFTNL_EXPR_LIMIT_RATE: u64,
    NFTNL_EXPR_LIMIT_UNIT: u64,
    NFTNL_EXPR_LIMIT_BURST: u32,
    NFTNL_EXPR_LIMIT_TYPE: u32,
    NFTNL_EXPR_LIMIT_FLAGS: u32,
});

attrs!(ExprK "reject" {
    NFTNL_EXPR_REJECT_TYPE: u32,
    NFTNL_EXPR_REJECT_CODE: u8,
});

attrs!(ExprK "fib" {
    NFTNL_EXPR_FIB_DREG: u32,
    NFTNL_EXPR_FIB_RESULT: u32,
    NFTNL_EXPR_FIB_FLAGS: u32,
});

attrs!(ExprK "match" {
    NFTNL_EXPR_MT_NAME: Str,
    NFTNL_EXPR_MT_REV: u32,
    NFTNL_EXPR_MT_INFO: Data = Given,
});

attrs!(ExprK "target" {
    NFTNL_EXPR_TG_NAME: Str,
    NFTNL_EXPR_TG_REV: u32,
    NFTNL_EXPR_TG_INFO: Data = Given,
});
