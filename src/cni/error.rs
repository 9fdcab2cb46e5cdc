//! The CNI error result: `{"cniVersion", "code", "msg", "details"}` on stdout and a non-zero
//! exit. Codes 0-99 are the spec's well-known ones; 100+ are nsfw's own (docs/cni.md).

use serde_json::{Value, json};

/// The spec's reserved codes (SPEC.md, "Error") and nsfw's own.
pub(crate) mod code {
    pub(crate) const INCOMPATIBLE_VERSION: u32 = 1;
    pub(crate) const UNSUPPORTED_FIELD: u32 = 2;
    pub(crate) const INVALID_ENV: u32 = 4;
    pub(crate) const IO_FAILURE: u32 = 5;
    pub(crate) const DECODING: u32 = 6;
    pub(crate) const INVALID_CONFIG: u32 = 7;
    pub(crate) const TRY_AGAIN: u32 = 11;
    pub(crate) const NOT_AVAILABLE: u32 = 50;
    /// nsfw: the attachment (or a port, an address) is taken already.
    pub(crate) const CONFLICT: u32 = 100;
    /// nsfw: CHECK found the kernel different from what ADD made.
    pub(crate) const DRIFT: u32 = 101;
    /// nsfw: the IPAM plugin failed (its own error follows in `details`).
    pub(crate) const IPAM: u32 = 102;
    /// What libcni calls ErrInternal: the kernel refused a change, and the like.
    pub(crate) const INTERNAL: u32 = 999;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub(crate) fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub(crate) fn with_details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }

    pub(crate) fn config(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_CONFIG, msg)
    }

    pub(crate) fn env(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_ENV, msg)
    }

    /// A kernel or system error, with its chain of causes.
    pub(crate) fn internal(e: &anyhow::Error) -> CniError {
        CniError::new(code::INTERNAL, format!("{e:#}"))
    }

    pub(crate) fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl From<anyhow::Error> for CniError {
    fn from(e: anyhow::Error) -> CniError {
        CniError::internal(&e)
    }
}

pub(crate) type CniResult<T> = Result<T, CniError>;
