//! The CNNs' convolution + 2x2 max pool pairs, formulated as matrix products over unfolded
//! inputs where that beats burn's own kernels on flex (`cargo bench --bench layers` measures
//! both): the first layer here, from burn tensor operations, the inner one through the flex
//! operation of [`crate::kernels::ConvPool`]. On other backends they are burn's layers.

use super::norm::BatchNorm2d;
use crate::kernels::{AddRelu, ConvPool, is_flex};
use burn::backend::Dispatch;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

/// `conv.forward(images)` for a network's first layer, whose input needs no gradient.
///
/// When training on flex the images are unfolded into columns (copied out in plain Rust: they
/// are constants, outside the autodiff graph) and multiplied by the reshaped weight, so the
/// backward pass is one matrix product for the weight instead of flex's convolution
/// weight-gradient kernel, 2-3 times faster for the CNNs' first layers. Without autodiff
/// (evaluation) flex's own forward kernel is the faster one; so there, on libtorch, and for
/// strided, dilated, grouped or `Same`-padded convolutions it is `conv.forward`.
pub fn first_conv2d(conv: &Conv2d, images: Tensor<4>) -> Tensor<4> {
    match first_conv2d_channel_major(conv, &images) {
        Some(output) => output.swap_dims(0, 1),
        None => conv.forward(images),
    }
}

/// [`first_conv2d`]'s output as the matrix product leaves it, `[channels, images, height,
/// width]`, when it takes the unfolded form (training on flex).
fn first_conv2d_channel_major(conv: &Conv2d, images: &Tensor<4>) -> Option<Tensor<4>> {
    let training = images.device().is_autodiff();
    let padded = Padded::for_unfolding(conv, images).filter(|_| training)?;
    let size = padded.output_size(conv);
    let columns = padded.columns(conv, (0, 0), size, 1);
    Some(padded.channel_major(conv, weight_rows(conv).matmul(columns), size))
}

/// `pool.forward(first_conv2d(conv, images))` for a 2x2, stride-2 max pool, fused: on flex the
/// images are unfolded once per pooling-window corner, each corner's outputs are one
/// matrix product, and the pool is the elementwise maximum of the four, with the bias added
/// after it (a maximum commutes with adding a per-channel constant). This skips flex's pooling
/// kernel, which spends integer divisions on every output and was a quarter of a CNN's training
/// time on one thread; evaluation too gets faster (the CNN's test pass by 40%). Falls back to the
/// separate layers on libtorch, for convolutions [`first_conv2d`] leaves to burn, and for other
/// pools or odd output sizes.
pub fn first_conv2d_max_pool(conv: &Conv2d, pool: &MaxPool2d, images: Tensor<4>) -> Tensor<4> {
    let padded = Padded::for_unfolding(conv, &images)
        .filter(|p| is_2x2_pool(pool) && p.output_size(conv).iter().all(|n| n % 2 == 0));
    let Some(padded) = padded else {
        return pool.forward(first_conv2d(conv, images));
    };
    let [height, width] = padded.output_size(conv);
    let half = [height / 2, width / 2];
    let weight = weight_rows(conv);
    let corner = |offset| weight.clone().matmul(padded.columns(conv, offset, half, 2));
    // Pairs in window order, so ties go to the first corner as in burn's and PyTorch's pools.
    let top = max_first(corner((0, 0)), corner((0, 1)));
    let bottom = max_first(corner((1, 0)), corner((1, 1)));
    padded.outputs(conv, max_first(top, bottom), half)
}

/// `pool.forward(conv.forward(x))` for an inner layer, whose input needs a gradient: on flex,
/// for a square convolution with symmetric padding and stride followed by a 2x2 max pool, it is
/// one operation with its own backward pass ([`crate::kernels::ConvPool`]); elsewhere burn's layers.
pub fn conv2d_max_pool(conv: &Conv2d, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match fused(conv, Some(pool), &x) {
        Some(bias) => fused_conv2d(conv, bias, x, true),
        None => pool.forward(conv.forward(x)),
    }
}

/// `conv.forward(x)` for an inner layer: the same operation as [`conv2d_max_pool`] without the
/// pool, for a square convolution with symmetric padding and stride on flex (resnet's strided
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

/// Where a conv block sits: the first layer's input (images) needs no gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockInput {
    /// The network's images.
    Images,
    /// An earlier layer's activations.
    Activations,
}

/// A CNN block: convolution, batch norm when `norm` is given, ReLU and a 2x2 max pool.
///
/// ReLU and max pooling commute (both are monotone), and pooling first leaves the ReLU a
/// quarter of the values: the same function and gradients for less work. Without batch norm the
/// convolution and pool are fused ([`first_conv2d_max_pool`], [`conv2d_max_pool`]), and so
/// they are when evaluating with batch norm, folded into the convolution; training statistics
/// need the whole convolution output, so then they are separate.
pub fn conv_block(
    conv: &Conv2d,
    norm: Option<&BatchNorm2d>,
    pool: &MaxPool2d,
    x: Tensor<4>,
    input: BlockInput,
    training: bool,
) -> Tensor<4> {
    if let Some(norm) = norm.filter(|_| !training) {
        return conv_block(&norm.folded_into(conv), None, pool, x, input, false);
    }
    let pooled = match (norm, input) {
        (None, BlockInput::Images) => first_conv2d_max_pool(conv, pool, x),
        (None, BlockInput::Activations) => conv2d_max_pool(conv, pool, x),
        (Some(norm), BlockInput::Images) => match first_conv2d_channel_major(conv, &x) {
            Some(channel_major) => norm.forward_pooled_channel_major(channel_major, training, pool),
            None => norm.forward_pooled(conv.forward(x), training, pool),
        },
        (Some(norm), BlockInput::Activations) => {
            norm.forward_pooled(conv2d(conv, x), training, pool)
        }
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
    let x = conv_block(
        convs[0],
        norms[0],
        pool,
        images,
        BlockInput::Images,
        training,
    );
    conv_block(
        convs[1],
        norms[1],
        pool,
        x,
        BlockInput::Activations,
        training,
    )
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

/// Whether `conv` has stride 1, no dilation and one group.
fn is_plain(conv: &Conv2d) -> bool {
    conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1
}

/// The elementwise maximum of `a` and `b` as `a + relu(b - a)`, its gradient going to `a` on
/// ties. Flex's `max_pair` selects with `mask_where`, whose slow path took most of the fused
/// layer's time; this is three cheap elementwise operations (the value can differ from the
/// larger input by one rounding of the difference).
fn max_first(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    a.clone() + relu(b - a)
}

/// A batch of images, zero-padded, as plain numbers to copy columns from.
struct Padded {
    values: Vec<f32>,
    /// `[images, channels, height, width]` after padding.
    dims: [usize; 4],
    device: Device,
}

impl Padded {
    /// The images padded as `conv` pads them, when the unfolded form applies: on flex, stride 1,
    /// no dilation, one group, explicit or no padding.
    fn for_unfolding(conv: &Conv2d, images: &Tensor<4>) -> Option<Padded> {
        let (top, left, bottom, right) = match conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
            PaddingConfig2d::Valid => (0, 0, 0, 0),
            PaddingConfig2d::Same => return None,
        };
        let device = images.device();
        if !(is_plain(conv) && is_flex(&device)) {
            return None;
        }
        let [batch, channels, height, width] = images.dims();
        let source = images.clone().into_data().try_into_vec::<f32>().ok()?;
        let dims = [batch, channels, height + top + bottom, width + left + right];
        let mut values = vec![0.0; dims.iter().product()];
        for (plane, pixels) in source.chunks_exact(height * width).enumerate() {
            let plane_start = plane * dims[2] * dims[3];
            for (row, line) in pixels.chunks_exact(width).enumerate() {
                let start = plane_start + (row + top) * dims[3] + left;
                values[start..start + width].copy_from_slice(line);
            }
        }
        Some(Padded {
            values,
            dims,
            device,
        })
    }

    /// Height and width of `conv`'s output.
    fn output_size(&self, conv: &Conv2d) -> [usize; 2] {
        let [_, _, kernel_h, kernel_w] = conv.weight.dims();
        [self.dims[2] - kernel_h + 1, self.dims[3] - kernel_w + 1]
    }

    /// Columns `[channel x kernel position, image x output pixel]` for the `size` outputs that
    /// start at `offset` and lie `step` apart: rows in the order of the weight's axes, and every
    /// image's pixels in one row, so that the layer is a single matrix product.
    fn columns(
        &self,
        conv: &Conv2d,
        offset: (usize, usize),
        size: [usize; 2],
        step: usize,
    ) -> Tensor<2> {
        let [batch, channels, height, width] = self.dims;
        let [_, _, kernel_h, kernel_w] = conv.weight.dims();
        let rows = channels * kernel_h * kernel_w;
        let pixels = batch * size[0] * size[1];
        let mut columns = Vec::with_capacity(rows * pixels);
        for channel in 0..channels {
            for i in 0..kernel_h {
                for j in 0..kernel_w {
                    for image in 0..batch {
                        let plane = (image * channels + channel) * height * width;
                        for y in 0..size[0] {
                            let start = plane + (offset.0 + i + step * y) * width + offset.1 + j;
                            columns.extend((0..size[1]).map(|x| self.values[start + step * x]));
                        }
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(columns, [rows, pixels]), &self.device)
    }

    /// The layer's result `[out channels, image x pixel]` plus `conv`'s bias, as the usual
    /// `[image, channel, row, column]`.
    fn outputs(&self, conv: &Conv2d, out: Tensor<2>, size: [usize; 2]) -> Tensor<4> {
        self.channel_major(conv, out, size).swap_dims(0, 1)
    }

    /// The layer's result `[out channels, image x pixel]` plus `conv`'s bias, as `[channel,
    /// image, row, column]`.
    fn channel_major(&self, conv: &Conv2d, out: Tensor<2>, [h, w]: [usize; 2]) -> Tensor<4> {
        let channels = out.dims()[0];
        let out = match &conv.bias {
            Some(bias) => out + bias.val().reshape([channels, 1]),
            None => out,
        };
        out.reshape([channels, self.dims[0], h, w])
    }
}

/// The weight as one row per output channel, `[out, in x kernel positions]`.
fn weight_rows(conv: &Conv2d) -> Tensor<2> {
    let [out_channels, in_channels, kernel_h, kernel_w] = conv.weight.dims();
    conv.weight
        .val()
        .reshape([out_channels, in_channels * kernel_h * kernel_w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;

    /// Outputs and weight and bias gradients of the unfolded forms equal burn's layers, for the
    /// CNN's (3x3, padded), LeNet-5's (5x5, padded) and an unpadded two-channel first layer.
    #[test]
    fn unfolded_first_layers_match_burn_layers() {
        let device = Device::flex().autodiff();
        assert!(is_flex(&device) && is_flex(&Device::flex()));
        device.seed(5);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        for (inputs, channels, kernel, pad) in [(1, 32, 3, 1), (1, 6, 5, 2), (2, 4, 3, 0)] {
            let conv = Conv2dConfig::new([inputs, channels], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(&device);
            let images = Tensor::<4>::random(
                [3, inputs, 28, 28],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &device,
            );
            let layers: [(&str, Layer); 3] = [
                ("burn", &|x| pool.forward(conv.forward(x))),
                ("first_conv2d", &|x| pool.forward(first_conv2d(&conv, x))),
                ("first_conv2d_max_pool", &|x| {
                    first_conv2d_max_pool(&conv, &pool, x)
                }),
            ];
            let results: Vec<_> = layers
                .iter()
                .map(|(name, layer)| {
                    let y = layer(images.clone());
                    let grads = (y.clone() * y.clone()).sum().backward();
                    let weight = conv.weight.val().grad(&grads).unwrap();
                    let bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                    (*name, y.inner(), weight, bias.reshape([1, 1, 1, channels]))
                })
                .collect();
            let (_, y0, w0, b0) = &results[0];
            for (name, y, w, b) in &results[1..] {
                assert_eq!(y0.dims(), y.dims(), "{name}");
                for (what, expected, got) in [
                    ("output", y0, y),
                    ("weight grad", w0, w),
                    ("bias grad", b0, b),
                ] {
                    let scale = expected.clone().abs().max().into_scalar::<f32>().max(1.0);
                    let diff = (expected.clone() - got.clone())
                        .abs()
                        .max()
                        .into_scalar::<f32>();
                    assert!(
                        diff / scale < 1e-5,
                        "{name} {what}, {channels} channels: {diff}"
                    );
                }
            }
        }
    }

    /// Evaluation (no autodiff) takes the fused path too, with burn's values.
    #[test]
    fn fused_first_layer_matches_burn_when_evaluating() {
        let device = Device::flex();
        device.seed(9);
        let conv = Conv2dConfig::new([1, 16], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let images = Tensor::<4>::random(
            [5, 1, 28, 28],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        assert!(Padded::for_unfolding(&conv, &images).is_some());
        let expected = pool.forward(conv.forward(images.clone()));
        let got = first_conv2d_max_pool(&conv, &pool, images);
        let diff = (expected - got).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    type Layer<'a> = &'a dyn Fn(Tensor<4>) -> Tensor<4>;
}
