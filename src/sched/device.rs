//! Turning `[sweep] devices` into burn devices, with every check done before a trial starts.

use crate::error::{Error, Result};
use crate::experiment::DeviceName;
use burn::prelude::Device;

/// Whether this binary was built with the libtorch backend (`--features tch`).
pub const HAS_TCH: bool = cfg!(feature = "tch");

/// Checks that every named device can be used by this binary on this machine.
pub fn check(devices: &[DeviceName]) -> Result<()> {
    for &name in devices {
        if name == DeviceName::Cpu {
            continue;
        }
        if !HAS_TCH {
            return Err(Error::Usage(format!(
                "device {name} needs libtorch, and this sweep binary was built without it: \
                 rebuild with `cargo build --release --features tch` (see docs/devices.md, \
                 \"libtorch and GPUs\"), or use --devices cpu"
            )));
        }
        if let DeviceName::Cuda(index) = name {
            let found = cuda_device_count();
            if index >= found {
                let choice = match found {
                    0 => "this machine has no usable CUDA GPU (libtorch sees none); use \
                          --devices cpu or tch-cpu"
                        .to_string(),
                    1 => "this machine has 1 CUDA GPU: cuda:0".to_string(),
                    n => format!("this machine has {n} CUDA GPUs: cuda:0 to cuda:{}", n - 1),
                };
                return Err(Error::Usage(format!("device {name}: {choice}")));
            }
        }
    }
    Ok(())
}

/// The burn device for a checked device name, with autodiff off (training switches it on).
#[allow(deprecated)] // burn marks its libtorch constructors deprecated; they are our GPU path
pub fn open(name: DeviceName) -> Device {
    match name {
        DeviceName::Cpu => Device::flex(),
        #[cfg(feature = "tch")]
        DeviceName::TchCpu => Device::libtorch(),
        #[cfg(feature = "tch")]
        DeviceName::Cuda(index) => Device::libtorch_cuda(index),
        #[cfg(not(feature = "tch"))]
        other => unreachable!("{other} is refused by check() in builds without tch"),
    }
}

/// Sets libtorch's CPU thread count (one pool per process, so the largest per-trial budget).
pub fn set_libtorch_threads(threads: usize) {
    #[cfg(feature = "tch")]
    tch::set_num_threads(threads as i32);
    #[cfg(not(feature = "tch"))]
    let _ = threads;
}

fn cuda_device_count() -> usize {
    #[cfg(feature = "tch")]
    return tch::Cuda::device_count().max(0) as usize;
    #[cfg(not(feature = "tch"))]
    0
}
