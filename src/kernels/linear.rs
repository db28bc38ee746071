//! A fully connected layer with its ReLU and dropout, `relu(x W + b) * mask`, as one flex
//! operation with a hand-written backward pass, reached through a burn backend extension.
//!
//! Why: on flex an MLP epoch ran no faster on two threads than on one. Each of burn's steps
//! (the product, the bias, the ReLU, the dropout mask, each of their gradients) is its own pass,
//! most on one thread, and the products share out work through gemm's own thread calls, which
//! wake the other thread again for every one. Here the forward pass hands each compute thread
//! a block of the layer's outputs (its product, bias, ReLU and mask at once), and the backward
//! pass a block of its inputs (their share of the weight's gradient and the input's gradient):
//! one hand-over per pass, no elementwise passes of their own. Same numbers as burn's layers up
//! to the order of summation (tests below compare values and all three gradients).

use super::autodiff::{LayerBackward, LayerGradients, LayerKernel};
use super::flex::{flex_tensor, values};
use super::gemm::{Block, Operand, column_blocks, matmul_into, split};
use super::im2col::filled;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Multiply-adds below which a product stays on one thread: handing half of it over costs
/// more than it saves.
const SHARED_FROM: usize = 1 << 18;

/// What follows a layer's product and bias.
#[derive(Clone, Debug)]
pub enum Activation {
    /// Nothing: the logits of an output layer.
    Identity,
    /// A ReLU, then, when training with dropout, each value times its factor in `mask` (`0` or
    /// `scale`, one per output value).
    Relu {
        /// The dropout factors, row-major like the output.
        mask: Option<Vec<f32>>,
        /// The factor of a kept value: `1 / (1 - p)`, 1 without dropout.
        scale: f32,
    },
}

/// `activation(x W + b)` as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait LinearOp: Backend {
    /// `x` `[batch, inputs]`, `weight` `[inputs, outputs]` (burn's `Linear` layout), `bias`
    /// `[outputs]`. Returns `[batch, outputs]`.
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self>;
}

/// The two halves of [`LinearOp`] when training.
pub trait LinearKernels: Backend {
    /// The output, and what the backward pass needs.
    fn fused_linear_saving(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Activation,
    ) -> (FloatTensor<Self>, LinearSaved<Self>);

    /// Gradients of the input (when `input_grad`), the weight and the bias from the output's.
    fn fused_linear_backward(
        grad: FloatTensor<Self>,
        saved: LinearSaved<Self>,
        input_grad: bool,
    ) -> LayerGradients<Self>;
}

/// What [`LinearKernels::fused_linear_saving`] keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct LinearSaved<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    /// With a ReLU, the output (positive exactly where the gradient passes) and the dropout
    /// scale.
    relu: Option<(FloatTensor<B>, f32)>,
}

/// The sizes of one layer's product.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch: usize,
    inputs: usize,
    outputs: usize,
}

impl Sizes {
    /// How many compute threads share a product of these sizes.
    fn pieces(&self) -> usize {
        if self.batch * self.inputs * self.outputs >= SHARED_FROM {
            rayon::current_num_threads()
        } else {
            1
        }
    }
}

fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    activation: &Activation,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, weight, bias) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        bias.to_contiguous(),
    );
    let (x_dims, weight_dims) = (
        x.layout().shape().to_vec(),
        weight.layout().shape().to_vec(),
    );
    assert!(
        x_dims.len() == 2 && weight_dims.len() == 2 && x_dims[1] == weight_dims[0],
        "fused_linear of [batch, inputs] by [inputs, outputs], not {x_dims:?} by {weight_dims:?}"
    );
    let sizes = Sizes {
        batch: x_dims[0],
        inputs: x_dims[1],
        outputs: weight_dims[1],
    };
    let (x_values, weight_values, bias_values) = (values(&x), values(&weight), values(&bias));
    assert_eq!(
        bias_values.len(),
        sizes.outputs,
        "fused_linear: one bias per output"
    );
    if let Activation::Relu {
        mask: Some(mask), ..
    } = activation
    {
        assert_eq!(
            mask.len(),
            sizes.batch * sizes.outputs,
            "one dropout factor per output"
        );
    }
    let ranges = split(sizes.outputs, sizes.pieces());
    let output = filled(sizes.batch * sizes.outputs, |output| {
        column_blocks(output, sizes.outputs, &ranges)
            .into_par_iter()
            .zip(ranges.par_iter())
            .for_each(|(mut block, columns)| {
                matmul_into(
                    sizes.inputs,
                    Operand::rows(x_values, sizes.inputs),
                    Operand::rows(&weight_values[columns.start..], sizes.outputs),
                    &mut block,
                );
                let bias = &bias_values[columns.clone()];
                finish_outputs(&mut block, columns.start, sizes, bias, activation);
            });
    });
    (
        flex_tensor(output, vec![sizes.batch, sizes.outputs]),
        x,
        weight,
    )
}

/// Adds the bias to a block of products (`first` its first column) and applies the activation,
/// in burn's order: product, plus bias, ReLU (NaN kept), times the dropout factor.
fn finish_outputs(
    block: &mut Block,
    first: usize,
    sizes: Sizes,
    bias: &[f32],
    activation: &Activation,
) {
    for row in 0..sizes.batch {
        let values = block.row_mut(row);
        match activation {
            Activation::Identity => {
                for (v, &b) in values.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            Activation::Relu { mask: None, .. } => {
                for (v, &b) in values.iter_mut().zip(bias) {
                    let z = *v + b;
                    *v = if z < 0.0 { 0.0 } else { z };
                }
            }
            Activation::Relu {
                mask: Some(mask), ..
            } => {
                let factors = &mask[row * sizes.outputs + first..][..values.len()];
                for ((v, &b), &factor) in values.iter_mut().zip(bias).zip(factors) {
                    let z = *v + b;
                    *v = if z < 0.0 { 0.0 } else { z } * factor;
                }
            }
        }
    }
}

impl LinearOp for Flex {
    fn fused_linear(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        activation: Activation,
    ) -> FlexTensor {
        forward(x, weight, bias, &activation).0
    }
}

impl LinearKernels for Flex {
    fn fused_linear_saving(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        activation: Activation,
    ) -> (FlexTensor, LinearSaved<Self>) {
        let (output, x, weight) = forward(x, weight, bias, &activation);
        let relu = match activation {
            Activation::Identity => None,
            Activation::Relu { scale, .. } => Some((output.clone(), scale)),
        };
        (output, LinearSaved { x, weight, relu })
    }

    fn fused_linear_backward(
        grad: FlexTensor,
        saved: LinearSaved<Self>,
        input_grad: bool,
    ) -> LayerGradients<Self> {
        let grad = grad.to_contiguous();
        let (x_values, weight_values) = (values(&saved.x), values(&saved.weight));
        let x_dims = saved.x.layout().shape().to_vec();
        let sizes = Sizes {
            batch: x_dims[0],
            inputs: x_dims[1],
            outputs: saved.weight.layout().shape()[1],
        };
        // The gradient of the product: the output's, through the mask and the ReLU. A kept
        // value is positive exactly where the ReLU passed it and dropout kept it (a dropped
        // one is 0), and then its factor was `scale`.
        let grad: Cow<[f32]> = match &saved.relu {
            None => Cow::Borrowed(values(&grad)),
            Some((output, scale)) => Cow::Owned(
                values(&grad)
                    .iter()
                    .zip(values(output))
                    .map(|(&g, &y)| {
                        // A select by bits, not a branch: which values pass is as good as random.
                        let pass = if y > 0.0 { u32::MAX } else { 0 };
                        f32::from_bits((g * scale).to_bits() & pass)
                    })
                    .collect(),
            ),
        };
        let mut bias_grad = vec![0.0f32; sizes.outputs];
        for row in grad.chunks_exact(sizes.outputs) {
            for (sum, &g) in bias_grad.iter_mut().zip(row) {
                *sum += g;
            }
        }
        // Each thread takes a block of the inputs: its rows of the weight's gradient and its
        // columns of the input's.
        let ranges = split(sizes.inputs, sizes.pieces());
        let mut x_grad = None;
        let weight_grad = filled(sizes.inputs * sizes.outputs, |weight_grad| {
            let weight_rows = split_rows(weight_grad, sizes.outputs, &ranges);
            let task = |(weight_rows, inputs): (&mut [MaybeUninit<f32>], &Range<usize>),
                        x_block: Option<&mut Block>| {
                matmul_into(
                    sizes.batch,
                    Operand::transposed(&x_values[inputs.start..], sizes.inputs),
                    Operand::rows(&grad, sizes.outputs),
                    &mut Block::whole(weight_rows, sizes.outputs),
                );
                if let Some(x_block) = x_block {
                    let weight_t = &weight_values[inputs.start * sizes.outputs..];
                    matmul_into(
                        sizes.outputs,
                        Operand::rows(&grad, sizes.outputs),
                        Operand::transposed(weight_t, sizes.outputs),
                        x_block,
                    );
                }
            };
            let pieces = weight_rows.into_par_iter().zip(ranges.par_iter());
            if input_grad {
                x_grad = Some(filled(sizes.batch * sizes.inputs, |x_grad| {
                    pieces
                        .zip(column_blocks(x_grad, sizes.inputs, &ranges))
                        .for_each(|(piece, mut x_block)| task(piece, Some(&mut x_block)));
                }));
            } else {
                pieces.for_each(|piece| task(piece, None));
            }
        });
        (
            x_grad.map(|x_grad| flex_tensor(x_grad, vec![sizes.batch, sizes.inputs])),
            flex_tensor(weight_grad, vec![sizes.inputs, sizes.outputs]),
            flex_tensor(bias_grad, vec![sizes.outputs]),
        )
    }
}

/// The rows of a row-major matrix (`width` columns) at ascending, adjoining row `ranges` that
/// start at 0.
fn split_rows<'a>(
    matrix: &'a mut [MaybeUninit<f32>],
    width: usize,
    ranges: &[Range<usize>],
) -> Vec<&'a mut [MaybeUninit<f32>]> {
    let mut rest = matrix;
    ranges
        .iter()
        .map(|range| {
            let (rows, tail) = std::mem::take(&mut rest).split_at_mut(range.len() * width);
            rest = tail;
            rows
        })
        .collect()
}

impl<B: Backend + LinearOp + LinearKernels, C: CheckpointStrategy> LinearOp for Autodiff<B, C> {
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        match LayerBackward::<LinearBackward>::new()
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) = B::fused_linear_saving(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    activation,
                );
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                activation,
            )),
        }
    }
}

/// The backward kernel of [`LinearOp`].
struct LinearBackward;

impl<B: Backend + LinearKernels> LayerKernel<B> for LinearBackward {
    type Saved = LinearSaved<B>;

    fn gradients(
        grad: FloatTensor<B>,
        saved: LinearSaved<B>,
        input_grad: bool,
    ) -> LayerGradients<B> {
        B::fused_linear_backward(grad, saved, input_grad)
    }
}
