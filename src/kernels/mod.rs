//! The hand-written flex operations and their backward passes, reached through burn backend
//! extensions. Each computes what burn's own operations compute (tests compare values and
//! gradients) in fewer passes over memory; on other backends the models use burn's.
//!
//! Parts: [`im2col`] unfolds images into columns and back, [`gemm`] multiplies them, [`pool`]
//! pools a convolution's output, [`conv_pool`] makes these one layer ([`direct`] computes a stride-1
//! convolution with few filters without columns), [`batch_norm`] is training-mode batch norm, [`add_relu`]
//! a residual block's `relu(a + b)`, [`linear`] a fully connected layer with its ReLU and
//! dropout, [`adam`] one Adam or AdamW step; [`autodiff`] is the backward glue they share and
//! [`flex`] how they read and make flex tensors; [`denormals`] keeps subnormal floats off the
//! compute threads.

mod adam;
mod add_relu;
mod autodiff;
mod batch_norm;
mod conv_pool;
mod denormals;
mod direct;
mod flex;
mod gemm;
mod im2col;
mod linear;
mod pool;

pub use adam::{AdamKernel, AdamRule, Scalars};
pub use add_relu::{AddRelu, AddReluKernels};
pub use autodiff::LayerGradients;
pub use batch_norm::{BatchNormKernels, BatchNormOp, NormLayout, NormSaved, Planes};
pub use conv_pool::{ConvPool, ConvPoolKernels, Saved};
pub use denormals::flush_denormals;
pub use linear::{Activation, LinearKernels, LinearOp, LinearSaved};

use burn::prelude::Device;

/// Whether `device` is burn's flex CPU backend, with or without autodiff: where these
/// operations apply.
pub fn is_flex(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the kernels' and the layers' tests share.

    use burn::prelude::*;

    /// Largest difference between `a` and `b` relative to `a`'s largest magnitude.
    pub(crate) fn relative_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let scale = a.clone().abs().max().into_scalar::<f32>().max(1.0);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }
}
