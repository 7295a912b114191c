//! Typed errors: every message names the op and the offending shapes,
//! dtypes or devices, so a user can fix the call without a debugger.

use crate::{DType, Device};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Shapes that do not fit the op (the message says how).
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    #[error("{op}: dtype mismatch: {lhs:?} vs {rhs:?}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },

    #[error("{op}: device mismatch: {lhs:?} vs {rhs:?}")]
    DeviceMismatch { op: &'static str, lhs: Device, rhs: Device },

    #[error("{op}: dtype {dtype:?} is not supported on {device:?}")]
    UnsupportedDType { op: &'static str, dtype: DType, device: Device },

    #[error("{op}: invalid argument: {msg}")]
    Argument { op: &'static str, msg: String },

    #[error("device {device:?} is not available: {reason}")]
    DeviceUnavailable { device: Device, reason: String },

    /// A backend failure: shader compilation, device loss, out of memory.
    #[error("{device:?}: {msg}")]
    Backend { device: Device, msg: String },

    #[error("autograd: {0}")]
    Autograd(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for the common `Error::Shape` with a formatted message.
pub(crate) fn shape_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Shape { op, msg: msg.into() }
}

pub(crate) fn arg_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Argument { op, msg: msg.into() }
}
