//! Which device a model computes on: `cpu`, `cuda` (the first GPU) or `cuda:N`.
//!
//! [`DeviceSpec`] is the parsed name and opens nothing, so a command line can be checked before
//! any GPU is touched; [`DeviceSpec::open`] (or [`parse`], both steps at once) gives the
//! `candle_core::Device` to load a model on.
//!
//! ```
//! use petl_models::device::{self, DeviceSpec};
//! assert_eq!("cuda:1".parse::<DeviceSpec>()?, DeviceSpec::Cuda(1));
//! assert!(device::parse("cpu")?.is_cpu());
//! # Ok::<(), petl_models::ModelError>(())
//! ```

use crate::{ModelError, Result};
use candle_core::Device;
use std::fmt;
use std::str::FromStr;

/// A device name, parsed but not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The host CPU (the default).
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let unknown = || ModelError::UnknownDevice { spec: s.to_string() };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let ordinal = other.strip_prefix("cuda:").ok_or_else(unknown)?;
                ordinal.parse().map(Self::Cuda).map_err(|_| unknown())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device.
    ///
    /// # Errors
    /// [`ModelError::CudaNotBuilt`] for a CUDA device when candle was built without CUDA;
    /// [`ModelError::CudaUnavailable`] when the driver cannot open that GPU (none present, bad
    /// ordinal, driver too old for the binary).
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            // Asked of candle rather than of this crate's feature: candle is what runs the kernels,
            // and another crate in the build may have turned its CUDA on.
            Self::Cuda(_) if !candle_core::utils::cuda_is_available() => Err(ModelError::CudaNotBuilt),
            Self::Cuda(ordinal) => Device::new_cuda(ordinal).map_err(|e| ModelError::CudaUnavailable {
                ordinal,
                reason: e.to_string(),
            }),
        }
    }
}

/// Parses and opens a device name: `cpu`, `cuda` or `cuda:N`.
///
/// # Errors
/// [`ModelError::UnknownDevice`] for any other name, and those of [`DeviceSpec::open`].
pub fn parse(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(" CPU ".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        assert_eq!(DeviceSpec::default(), DeviceSpec::Cpu);
        assert!(parse("cpu").unwrap().is_cpu());
    }

    #[test]
    fn garbage_is_named() {
        for bad in ["", "tpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", "metal"] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, ModelError::UnknownDevice { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("cpu, cuda or cuda:N"), "{e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        if candle_core::utils::cuda_is_available() {
            return; // another crate in this test build turned candle's CUDA on
        }
        for name in ["cuda", "cuda:1"] {
            let e = parse(name).unwrap_err();
            assert!(matches!(e, ModelError::CudaNotBuilt), "{e}");
            let msg = e.to_string();
            assert!(msg.contains("built without CUDA"), "{msg}");
            assert!(msg.contains("--features cuda"), "{msg}");
            assert!(msg.contains("scripts/build-cuda.sh"), "{msg}");
        }
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_ordinal_past_the_gpus_is_unavailable() {
        let e = parse("cuda:4096").unwrap_err();
        assert!(
            matches!(e, ModelError::CudaUnavailable { ordinal: 4096, .. }),
            "{e}"
        );
    }
}
