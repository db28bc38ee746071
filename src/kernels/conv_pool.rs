//! A convolution (any stride), its bias and optionally a 2x2 max pool as one flex operation with
//! a hand-written backward pass, reached through a burn backend extension.
//!
//! Why: on flex, burn's kernels for a CNN's inner convolution and pool were most of a training
//! step -- the weight gradient is a convolution over swapped axes, the input gradient a
//! transposed convolution, and the pool spends integer divisions on every output (`cargo bench
//! --bench layers` has the per-layer figures). Here the layer is three matrix products over the
//! unfolded input (im2col): the forward product, the weight gradient and the columns' gradient,
//! which col2im sums back into the input's gradient. The pool keeps the position of each
//! window's maximum, so its backward is a scatter. The work goes in blocks of a few images whose
//! columns fit in a core's cache; the backward pass unfolds each block again rather than keep
//! every block's columns (measured: as fast, and less memory). Same numbers as burn's layers up
//! to the order of summation (tests below compare values and all three gradients).
//!
//! A layer with few filters or few values per output ([`Geometry::direct`]: a first layer,
//! LeNet-5's inner layers, resnet's first stages and the strided entry to its second) skips the
//! columns: its convolution and gradients are computed directly, image by image
//! ([`super::direct`]).

use super::autodiff::{LayerBackward, LayerGradients, LayerKernel};
use super::direct;
use super::flex::{Unzeroed, balanced, flex_tensor, lane_sum, values};
use super::gemm::{Operand, matmul};
use super::im2col::{Geometry, fold_into, unfold};
use super::pool::{arrange_into, disarrange, max_pool_into, unpool};
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// `max_pool2d(conv2d(x, weight, bias), 2x2, stride 2)` (or the convolution alone) as one
/// operation.
#[backend_extension(Flex, Autodiff)]
pub trait ConvPool: Backend {
    /// `x` `[batch, channels, height, width]`, `weight` `[filters, channels, k, k]`, `bias`
    /// `[filters]`, `padding` zeros on every side, `stride` in both directions; an even
    /// convolution output when `pool`. Returns `[batch, filters, out_height / 2, out_width / 2]` when `pool`, the
    /// convolution's `[batch, filters, out_height, out_width]` otherwise.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        stride: usize,
        pool: bool,
    ) -> FloatTensor<Self>;
}

/// The two halves of [`ConvPool`] when training: a forward pass that keeps what the backward
/// pass needs (the input and where each window's maximum was), and that backward pass.
pub trait ConvPoolKernels: Backend {
    /// The pooled output, and for the backward pass the input, the weight, the position of
    /// each output's maximum in its filter's row of the convolution (for a direct layer, in
    /// its filter's outputs of one image as `direct.rs` lays them out), and the sizes.
    fn fused_conv2d_saving(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        stride: usize,
        pool: bool,
    ) -> (FloatTensor<Self>, Saved<Self>);

    /// Gradients of the input (when `input_grad`), the weight and the bias from the output's.
    fn fused_conv2d_backward(
        grad: FloatTensor<Self>,
        saved: Saved<Self>,
        input_grad: bool,
    ) -> LayerGradients<Self>;
}

/// What [`ConvPoolKernels::fused_conv2d_saving`] keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Saved<B: Backend> {
    x: FloatTensor<B>,
    argmax: IntTensor<B>,
    weight: FloatTensor<B>,
    geometry: Geometry,
}

/// The flex forward pass, in plain values.
struct Forward {
    output: Vec<f32>,
    argmax: Vec<u32>,
    x: FlexTensor,
    weight: FlexTensor,
    geometry: Geometry,
}

impl Forward {
    /// Directly where [`Geometry::direct`] says so, over unfolded columns otherwise.
    fn run(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: usize,
        stride: usize,
        pool: bool,
    ) -> Forward {
        let (x, weight, bias) = (
            x.to_contiguous(),
            weight.to_contiguous(),
            bias.to_contiguous(),
        );
        let dims = x.layout().shape().to_vec();
        let weight_dims = weight.layout().shape().to_vec();
        let geometry = Geometry {
            batch: dims[0],
            channels: dims[1],
            height: dims[2],
            width: dims[3],
            filters: weight_dims[0],
            kernel: weight_dims[2],
            padding,
            stride,
            pool,
        };
        let g = &geometry;
        let (weight_rows, bias_values) = (values(&weight), values(&bias));
        let (output, argmax) = if g.direct() {
            direct::forward(values(&x), weight_rows, bias_values, g)
        } else {
            unfolded_forward(values(&x), weight_rows, bias_values, g)
        };
        Forward {
            output,
            argmax,
            x,
            weight,
            geometry,
        }
    }

    fn output(output: Vec<f32>, g: &Geometry) -> FlexTensor {
        let (height, width) = g.output_size();
        flex_tensor(output, vec![g.batch, g.filters, height, width])
    }
}

/// The forward pass over unfolded columns, block by block of images (see
/// [`Geometry::blocks`]): unfold, multiply, pool (or add the bias and lay out), each block
/// writing its own part of the output.
fn unfolded_forward(
    x: &[f32],
    weight_rows: &[f32],
    bias: &[f32],
    g: &Geometry,
) -> (Vec<f32>, Vec<u32>) {
    let (height, width) = g.output_size();
    let block_outputs = g.block_images() * g.filters * height * width;
    let outputs = g.batch * g.filters * height * width;
    let mut output = Unzeroed::new(outputs);
    let mut argmax = Unzeroed::new(if g.pool { outputs } else { 0 });
    let blocks = g.batch.div_ceil(g.block_images());
    g.blocks(x, g.input_size())
        .zip(output.chunks(block_outputs, blocks))
        .zip(argmax.chunks(block_outputs, blocks))
        .for_each(|(((_, block, x), output), argmax)| {
            let columns = unfold(x, &block);
            let conv = matmul(
                block.filters,
                block.rows(),
                block.pixels(),
                Operand::rows(weight_rows, block.rows()),
                Operand::rows(&columns, block.pixels()),
            );
            if block.pool {
                max_pool_into(&conv, bias, &block, output, argmax);
            } else {
                arrange_into(&conv, bias, &block, output);
            }
        });
    (output.into_vec(), argmax.into_vec())
}

impl ConvPool for Flex {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        stride: usize,
        pool: bool,
    ) -> FloatTensor<Self> {
        let forward = Forward::run(x, weight, bias, padding, stride, pool);
        Forward::output(forward.output, &forward.geometry)
    }
}

impl ConvPoolKernels for Flex {
    fn fused_conv2d_saving(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        stride: usize,
        pool: bool,
    ) -> (FloatTensor<Self>, Saved<Self>) {
        let forward = Forward::run(x, weight, bias, padding, stride, pool);
        let g = forward.geometry;
        let count = forward.argmax.len();
        let saved = Saved {
            x: forward.x,
            argmax: flex_tensor(forward.argmax, vec![count]),
            weight: forward.weight,
            geometry: g,
        };
        (Forward::output(forward.output, &g), saved)
    }

    fn fused_conv2d_backward(
        grad: FloatTensor<Self>,
        saved: Saved<Self>,
        input_grad: bool,
    ) -> LayerGradients<Self> {
        let g = &saved.geometry;
        let grad = grad.to_contiguous();
        let grad = values(&grad);
        let argmax = saved.argmax.storage::<u32>();
        let weight_rows = values(&saved.weight);
        let plane = grad.len() / (g.batch * g.filters);
        // Per filter, its planes' sums added image by image.
        let bias_grad: Vec<f32> = balanced((0..g.filters).into_par_iter())
            .map(|filter| {
                (0..g.batch)
                    .map(|image| &grad[(image * g.filters + filter) * plane..][..plane])
                    .fold(0.0, |sum, chunk| sum + lane_sum(chunk, chunk, |v, _| v))
            })
            .collect();
        let (weight_grad, x_grad) = if g.direct() {
            direct::backward(grad, argmax, values(&saved.x), weight_rows, g, input_grad)
        } else {
            unfolded_backward(grad, argmax, values(&saved.x), weight_rows, g, input_grad)
        };
        (
            x_grad.map(|x_grad| flex_tensor(x_grad, vec![g.batch, g.channels, g.height, g.width])),
            flex_tensor(weight_grad, vec![g.filters, g.channels, g.kernel, g.kernel]),
            flex_tensor(bias_grad, vec![g.filters]),
        )
    }
}

/// The weight's and (when `input_grad`) the input's gradients over unfolded columns.
fn unfolded_backward(
    grad: &[f32],
    argmax: &[u32],
    x: &[f32],
    weight_rows: &[f32],
    g: &Geometry,
    input_grad: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let plane = grad.len() / (g.batch * g.filters);
    // Per block: the columns again (cheaper than keeping them: they are in cache now), the
    // convolution's gradient, this block's share of the weight's gradient, and its images'
    // gradient.
    let output_size = g.filters * plane;
    let mut x_grad = Unzeroed::new(if input_grad { x.len() } else { 0 });
    let block_inputs = g.block_images() * g.input_size();
    let blocks = g.batch.div_ceil(g.block_images());
    let weight_grads: Vec<Vec<f32>> = g
        .blocks(x, g.input_size())
        .zip(x_grad.chunks(block_inputs, blocks))
        .map(|((first_image, block, x), x_grad)| {
            let outputs = first_image * output_size..(first_image + block.batch) * output_size;
            let columns = unfold(x, &block);
            let conv_grad = if block.pool {
                unpool(&grad[outputs.clone()], &argmax[outputs], &block)
            } else {
                disarrange(&grad[outputs], &block)
            };
            let weight_grad = matmul(
                block.filters,
                block.pixels(),
                block.rows(),
                Operand::rows(&conv_grad, block.pixels()),
                Operand::transposed(&columns, block.pixels()),
            );
            if input_grad {
                let columns_grad = matmul(
                    block.rows(),
                    block.filters,
                    block.pixels(),
                    Operand::transposed(weight_rows, block.rows()),
                    Operand::rows(&conv_grad, block.pixels()),
                );
                fold_into(&columns_grad, &block, x_grad);
            }
            weight_grad
        })
        .collect();
    let mut weight_grad = vec![0.0f32; g.filters * g.rows()];
    for block_weight_grad in weight_grads {
        for (sum, value) in weight_grad.iter_mut().zip(block_weight_grad) {
            *sum += value;
        }
    }
    (weight_grad, input_grad.then(|| x_grad.into_vec()))
}

impl<B: Backend + ConvPool + ConvPoolKernels, C: CheckpointStrategy> ConvPool for Autodiff<B, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        stride: usize,
        pool: bool,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        match LayerBackward::<ConvPoolBackward>::new()
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) = B::fused_conv2d_saving(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    padding,
                    stride,
                    pool,
                );
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                padding,
                stride,
                pool,
            )),
        }
    }
}

/// The backward kernel of [`ConvPool`].
struct ConvPoolBackward;

impl<B: Backend + ConvPoolKernels> LayerKernel<B> for ConvPoolBackward {
    type Saved = Saved<B>;

    fn gradients(grad: FloatTensor<B>, saved: Saved<B>, input_grad: bool) -> LayerGradients<B> {
        B::fused_conv2d_backward(grad, saved, input_grad)
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::testing::relative_difference;
    use crate::model::layers::{conv2d, conv2d_max_pool};
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// Output and input, weight and bias gradients equal burn's conv + pool for the CNN's and
    /// LeNet-5's inner layers, one of several blocks of filters and of channels taken directly,
    /// and a small padded one, and for first layers taken directly
    /// (the CNN's, LeNet-5's, and two channels unpadded); on integer-valued inputs too, where
    /// windows hold equal maxima and the gradient must go to the same (first) one. 20 images
    /// make several blocks or tasks, the last one partial.
    #[test]
    fn fused_layer_matches_burn_in_values_and_all_gradients() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let shapes = [
            (32, 64, 3, 1, 14),
            (6, 16, 5, 0, 14),
            (12, 20, 3, 1, 10),
            (3, 4, 3, 2, 6),
            (1, 32, 3, 1, 28),
            (1, 6, 5, 2, 12),
            (2, 4, 3, 0, 8),
        ];
        for (inputs, filters, kernel, pad, size) in shapes {
            for integers in [false, true] {
                let mut conv = Conv2dConfig::new([inputs, filters], [kernel, kernel])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(&device);
                let mut x = Tensor::<4>::random(
                    [20, inputs, size, size + 2],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                if integers {
                    x = x.round().clamp(-1.0, 1.0).detach();
                    conv.weight = Param::from_tensor(conv.weight.val().sign().detach());
                }
                let run = |fused: bool| {
                    let x = x.clone().require_grad();
                    let y = if fused {
                        conv2d_max_pool(&conv, &pool, x.clone())
                    } else {
                        pool.forward(conv.forward(x.clone()))
                    };
                    let grads = (y.clone() * y.clone()).sum().backward();
                    let weight = conv.weight.val().grad(&grads).unwrap();
                    let bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                    (y.inner(), x.grad(&grads).unwrap(), weight, bias)
                };
                let (y0, x0, w0, b0) = run(false);
                let (y1, x1, w1, b1) = run(true);
                let case = format!("{inputs}->{filters} k{kernel} p{pad}, integers {integers}");
                assert!(relative_difference(y0, y1) < 1e-5, "output, {case}");
                assert!(relative_difference(x0, x1) < 1e-5, "input grad, {case}");
                assert!(relative_difference(w0, w1) < 1e-5, "weight grad, {case}");
                assert!(relative_difference(b0, b1) < 1e-5, "bias grad, {case}");
            }
        }
    }

    /// Without autodiff (evaluation), and with an input that needs no gradient (a first layer:
    /// the weight's and bias's gradients), the fused layer still agrees with burn's.
    #[test]
    fn fused_layer_matches_burn_when_evaluating_and_for_constant_inputs() {
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let device = Device::flex();
        device.seed(11);
        let conv = Conv2dConfig::new([2, 8], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([3, 2, 10, 12], Distribution::Normal(0.0, 1.0), &device);
        let expected = pool.forward(conv.forward(x.clone()));
        let got = conv2d_max_pool(&conv, &pool, x.clone());
        assert!(relative_difference(expected, got) < 1e-5);
        // A NaN input (a diverging trial) reaches the output instead of losing to the maximum.
        let poisoned = x.slice_assign(
            [0..1, 0..1, 4..5, 4..5],
            Tensor::full([1, 1, 1, 1], f32::NAN, &device),
        );
        let nans = conv2d_max_pool(&conv, &pool, poisoned).is_nan().int().sum();
        assert_eq!(
            nans.into_scalar::<i64>(),
            8 * 4,
            "3x3 NaN neighbourhood, 2x2 outputs, 8 filters"
        );

        // First layers (the images need no gradient): LeNet-5's 5x5 and the CNN's 3x3.
        let device = Device::flex().autodiff();
        for (filters, kernel, size) in [(8, 5, 12), (32, 3, 28)] {
            let pad = kernel / 2;
            let conv = Conv2dConfig::new([1, filters], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(&device);
            let x =
                Tensor::<4>::random([3, 1, size, size], Distribution::Uniform(0.0, 1.0), &device);
            let gradients = |fused: bool| {
                let y = if fused {
                    conv2d_max_pool(&conv, &pool, x.clone())
                } else {
                    pool.forward(conv.forward(x.clone()))
                };
                let grads = (y.clone() * y).sum().backward();
                let bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                (conv.weight.val().grad(&grads).unwrap(), bias)
            };
            let ((w0, b0), (w1, b1)) = (gradients(false), gradients(true));
            assert!(
                relative_difference(w0, w1) < 1e-5,
                "weight grad, {kernel}x{kernel}"
            );
            assert!(
                relative_difference(b0, b1) < 1e-5,
                "bias grad, {kernel}x{kernel}"
            );
        }
    }

    /// Without the pool the operation is burn's convolution, with a bias and without one (as
    /// before batch norm), in the output and all gradients; strided too, as resnet's first
    /// convolution of a stage and its 1x1 shortcut, on odd sizes where the last kernel position
    /// leaves input rows and columns unread; and strided followed by the pool. Each with four
    /// input channels and with one, which takes the cases with a kernel at least as wide as the
    /// stride directly; and a stride-2 layer with several blocks of channels and of filters.
    #[test]
    fn unpooled_and_strided_layers_match_burn_with_and_without_bias() {
        let device = Device::flex().autodiff();
        device.seed(8);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        // (bias, padding, kernel, stride, pooled, [height, width])
        let cases = [
            (true, 1, 3, 1, false, [7, 9]),
            (false, 1, 3, 1, false, [7, 9]),
            (false, 0, 3, 1, false, [7, 9]),
            (false, 1, 3, 2, false, [7, 9]),
            (true, 1, 3, 2, false, [8, 10]),
            (false, 0, 1, 2, false, [7, 9]),
            (false, 0, 1, 2, false, [8, 8]),
            (true, 2, 5, 3, false, [11, 10]),
            (true, 1, 3, 2, true, [7, 11]),
        ];
        let blocks = ((true, 1, 3, 2, false, [14, 15]), 12, 20);
        for ((bias, pad, kernel, stride, pooled, [height, width]), inputs, filters) in cases
            .into_iter()
            .flat_map(|case| [(case, 4, 6), (case, 1, 6)])
            .chain([blocks])
        {
            let conv = Conv2dConfig::new([inputs, filters], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_stride([stride, stride])
                .with_bias(bias)
                .init(&device);
            let x = Tensor::<4>::random(
                [9, inputs, height, width],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |fused: bool| {
                let x = x.clone().require_grad();
                let y = match (fused, pooled) {
                    (true, true) => conv2d_max_pool(&conv, &pool, x.clone()),
                    (true, false) => conv2d(&conv, x.clone()),
                    (false, true) => pool.forward(conv.forward(x.clone())),
                    (false, false) => conv.forward(x.clone()),
                };
                let grads = (y.clone() * y.clone()).sum().backward();
                let weight = conv.weight.val().grad(&grads).unwrap();
                (y.inner(), x.grad(&grads).unwrap(), weight)
            };
            let (y0, x0, w0) = run(false);
            let (y1, x1, w1) = run(true);
            let case = format!(
                "{inputs}->{filters}, bias {bias}, k{kernel} p{pad} s{stride}, pooled {pooled}"
            );
            assert_eq!(y0.dims(), y1.dims(), "output shape, {case}");
            assert!(relative_difference(y0, y1) < 1e-5, "output, {case}");
            assert!(relative_difference(x0, x1) < 1e-5, "input grad, {case}");
            assert!(relative_difference(w0, w1) < 1e-5, "weight grad, {case}");
        }
    }
}
