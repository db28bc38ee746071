//! The CNNs' layers on flex as operations of our own where that beats burn's kernels (`cargo
//! bench --bench layers` measures both): each convolution + 2x2 max pool pair, resnet's
//! convolutions and the residual `relu(a + b)`. On other backends they are burn's layers.

use super::norm::BatchNorm2d;
use crate::kernels::{AddRelu, ConvPool, is_flex};
use burn::backend::Dispatch;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

/// `pool.forward(conv.forward(x))`: on flex, for a square convolution with symmetric padding
/// and stride followed by a 2x2 max pool, one operation with its own backward pass
/// ([`crate::kernels::ConvPool`]; a first layer's, whose input is the images, computed directly
/// and without an input gradient); elsewhere burn's layers.
pub fn conv2d_max_pool(conv: &Conv2d, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match fused(conv, Some(pool), &x) {
        Some(bias) => fused_conv2d(conv, bias, x, true),
        None => pool.forward(conv.forward(x)),
    }
}

/// `conv.forward(x)`: the same operation as [`conv2d_max_pool`] without the pool, for a square convolution with symmetric padding and stride on flex (resnet's strided
/// and 1x1 shortcut convolutions too: burn's took more than twice PyTorch's time, `cargo bench
/// --bench layers`).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match fused(conv, None, &x) {
        Some(bias) => fused_conv2d(conv, bias, x, false),
        None => conv.forward(x),
    }
}

/// The bias to hand the fused operation (zeros for a convolution without one) when it applies
/// to `conv` followed by `pool` on `x`.
fn fused(conv: &Conv2d, pool: Option<&MaxPool2d>, x: &Tensor<4>) -> Option<Tensor<1>> {
    let [filters, _, kernel_h, kernel_w] = conv.weight.dims();
    let symmetric = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            top == left && left == bottom && bottom == right
        }
        PaddingConfig2d::Valid => true,
        PaddingConfig2d::Same => false,
    };
    let [_, _, height, width] = x.dims();
    let stride = conv.stride[0];
    let output = |size: usize| {
        (size + 2 * padding_of(conv))
            .checked_sub(kernel_h)
            .map(|n| n / stride.max(1) + 1)
    };
    let even = |size| output(size).is_some_and(|n| n >= 2 && n % 2 == 0);
    let pool_fits = pool.is_none_or(|pool| is_2x2_pool(pool) && even(height) && even(width));
    let applies = symmetric
        && output(height).is_some()
        && output(width).is_some()
        && stride >= 1
        && pool_fits
        && conv.stride[0] == conv.stride[1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && kernel_h == kernel_w
        && x.dtype() == burn::tensor::DType::F32
        && is_flex(&x.device());
    applies.then(|| match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([filters], &x.device()),
    })
}

/// The padding on each side of a symmetrically padded convolution.
fn padding_of(conv: &Conv2d) -> usize {
    match conv.padding {
        PaddingConfig2d::Explicit(top, ..) => top,
        _ => 0,
    }
}

fn fused_conv2d(conv: &Conv2d, bias: Tensor<1>, x: Tensor<4>, pool: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ConvPool>::fused_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
        padding_of(conv),
        conv.stride[0],
        pool,
    ))
}

/// A CNN block: convolution, batch norm when `norm` is given, ReLU and a 2x2 max pool.
///
/// ReLU and max pooling commute (both are monotone), and pooling first leaves the ReLU a
/// quarter of the values: the same function and gradients for less work. Without batch norm the
/// convolution and pool are one operation ([`conv2d_max_pool`]), and so they are when
/// evaluating with batch norm, folded into the convolution; training statistics need the whole
/// convolution output, so then they are separate.
pub fn conv_block(
    conv: &Conv2d,
    norm: Option<&BatchNorm2d>,
    pool: &MaxPool2d,
    x: Tensor<4>,
    training: bool,
) -> Tensor<4> {
    if let Some(norm) = norm.filter(|_| !training) {
        return conv_block(&norm.folded_into(conv), None, pool, x, false);
    }
    let pooled = match norm {
        None => conv2d_max_pool(conv, pool, x),
        Some(norm) => norm.forward_pooled(conv2d(conv, x), training, pool),
    };
    relu(pooled)
}

/// The CNNs' features: two [`conv_block`]s sharing `pool`, the first on the images.
pub fn two_conv_blocks(
    convs: [&Conv2d; 2],
    norms: [Option<&BatchNorm2d>; 2],
    pool: &MaxPool2d,
    images: Tensor<4>,
    training: bool,
) -> Tensor<4> {
    let x = conv_block(convs[0], norms[0], pool, images, training);
    conv_block(convs[1], norms[1], pool, x, training)
}

/// `relu(a + b)` (a residual block's output): on flex one operation of ours
/// ([`crate::kernels::AddRelu`]), elsewhere burn's.
pub fn add_relu(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let f32s = a.dtype() == burn::tensor::DType::F32 && b.dtype() == burn::tensor::DType::F32;
    if f32s && a.dims() == b.dims() && is_flex(&a.device()) {
        Tensor::from_dispatch(<Dispatch as AddRelu>::add_relu(
            a.into_dispatch(),
            b.into_dispatch(),
        ))
    } else {
        relu(a + b)
    }
}

/// Whether `pool` is a 2x2 max pool with stride 2 and no padding.
pub(super) fn is_2x2_pool(pool: &MaxPool2d) -> bool {
    pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && matches!(pool.padding, PaddingConfig2d::Valid)
}
