//! Training-mode batch norm over `[batch, channels, height, width]` as one flex operation with
//! a hand-written backward pass, reached through a burn backend extension.
//!
//! Why: burn's generic `batch_norm_train` lays the activations out channel-first with copies,
//! reduces, broadcasts and does the same again backwards, and flex's max pool spends integer
//! divisions on every output and scatters its gradient with bounds checks: together they made a
//! CNN with batch norm train at half the speed of one without. Here each channel's statistics
//! are two passes over its planes, the (pooled) output one, and the backward pass three more.

use super::autodiff::{LayerBackward, LayerGradients, LayerKernel};
use super::flex::{Unzeroed, balanced, flex_tensor, lane_sum, values};
use super::pool::max_pool_row;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// What the operation reads and returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormLayout {
    /// `[batch, channels, height, width]` in, the same out.
    Plain,
    /// `[batch, channels, height, width]` in, 2x2 max-pooled out.
    Pooled,
}

/// Batch norm with the batch's own statistics, optionally followed by a 2x2 max pool.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormOp: Backend {
    /// `x` as `layout` says, `gamma` and `beta` `[channels]`; pooling needs an even height and
    /// width; `relu` (with [`NormLayout::Plain`] only): through a ReLU too. Returns the
    /// normalised output and `[2, channels]`: the batch mean and biased variance per channel
    /// (constants, for the running statistics).
    fn batch_norm_2d(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        layout: NormLayout,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// The two halves of [`BatchNormOp`] when training.
pub trait BatchNormKernels: Backend {
    /// The output, the statistics, and what the backward pass needs.
    fn batch_norm_2d_saving(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        layout: NormLayout,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, NormSaved);

    /// Gradients of the input (when `input_grad`), gamma and beta from the output's.
    fn batch_norm_2d_backward(
        grad: FloatTensor<Self>,
        saved: NormSaved,
        input_grad: bool,
    ) -> LayerGradients<Self>;
}

/// What the backward pass needs: the input, its statistics, gamma, where each pooled
/// output's maximum was in its plane, and with a ReLU each channel's shift (the ReLU's gradient
/// is recomputed from the input: no mask kept).
#[derive(Clone, Debug)]
pub struct NormSaved {
    x: FlexTensor,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    argmax: Option<Vec<u32>>,
    planes: Planes,
    relu_shift: Option<Vec<f32>>,
}

/// The ReLU after batch norm, keeping NaN (a diverging trial must show it, and `f32::max`
/// would turn it into 0).
#[inline(always)]
fn rectify(value: f32) -> f32 {
    if value < 0.0 { 0.0 } else { value }
}

/// The layout of the activations: `batch` images of `channels` planes of `height x width`,
/// stored image by image (`[batch, channels, h, w]`).
#[derive(Clone, Copy, Debug)]
pub struct Planes {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl Planes {
    fn of(shape: &[usize]) -> Planes {
        Planes {
            batch: shape[0],
            channels: shape[1],
            height: shape[2],
            width: shape[3],
        }
    }

    fn size(&self) -> usize {
        self.height * self.width
    }

    fn count(&self) -> usize {
        self.batch * self.channels
    }

    /// The values of plane `(image, channel)`.
    fn range(&self, image: usize, channel: usize) -> std::ops::Range<usize> {
        let index = image * self.channels + channel;
        index * self.size()..(index + 1) * self.size()
    }

    /// `(image, channel)` of the `index`th stored plane.
    fn plane(&self, index: usize) -> (usize, usize) {
        (index / self.channels, index % self.channels)
    }

    /// The stored shape.
    fn shape(&self) -> Vec<usize> {
        vec![self.batch, self.channels, self.height, self.width]
    }
}

/// Per channel, the sum of `term(image, channel)` over every image, in f64.
fn channel_sums(planes: Planes, term: impl Fn(usize, usize) -> f32 + Sync) -> Vec<f64> {
    balanced((0..planes.channels).into_par_iter())
        .map(|channel| {
            (0..planes.batch)
                .map(|image| term(image, channel) as f64)
                .sum()
        })
        .collect()
}

/// Values laid out as `planes`, every plane computed in parallel by `fill(image, channel,
/// plane)`.
fn per_plane(planes: Planes, fill: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut output = Unzeroed::new(planes.count() * planes.size());
    balanced(output.chunks(planes.size(), 0).enumerate()).for_each(|(index, out)| {
        let (image, channel) = planes.plane(index);
        fill(image, channel, out)
    });
    output.into_vec()
}

fn run(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
    layout: NormLayout,
    relu: bool,
) -> (FlexTensor, FlexTensor, NormSaved) {
    let x = x.to_contiguous();
    let planes = Planes::of(x.layout().shape());
    let pool = layout != NormLayout::Plain;
    assert!(
        !(pool && relu),
        "batch norm's ReLU is fused only without a pool"
    );
    let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
    let (gamma, beta) = (values(&gamma).to_vec(), values(&beta));
    let input = values(&x);
    let count = (planes.batch * planes.size()) as f64;
    let mean: Vec<f64> = channel_sums(planes, |image, c| {
        let r = planes.range(image, c);
        lane_sum(&input[r.clone()], &input[r], |x, _| x)
    })
    .into_iter()
    .map(|sum| sum / count)
    .collect();
    // Two passes, the second over deviations, for the precision of a variance.
    let variance: Vec<f64> = channel_sums(planes, |image, c| {
        let (m, r) = (mean[c] as f32, planes.range(image, c));
        lane_sum(&input[r.clone()], &input[r], |x, _| (x - m) * (x - m))
    })
    .into_iter()
    .map(|sum| sum / count)
    .collect();
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|v| (1.0 / (v + epsilon).sqrt()) as f32)
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    // y = x * scale + shift, per channel.
    let scale: Vec<f32> = (0..planes.channels)
        .map(|c| gamma[c] * inv_std[c])
        .collect();
    let shift: Vec<f32> = (0..planes.channels)
        .map(|c| beta[c] - mean32[c] * scale[c])
        .collect();
    let (output, argmax, out_shape) = if pool {
        let width = planes.width;
        let pooled = Planes {
            height: planes.height / 2,
            width: planes.width / 2,
            ..planes
        };
        let mut argmax = Unzeroed::new(pooled.count() * pooled.size());
        let mut output = Unzeroed::new(pooled.count() * pooled.size());
        balanced(
            output
                .chunks(pooled.size(), 0)
                .zip(argmax.chunks(pooled.size(), 0))
                .enumerate(),
        )
        .for_each(|(index, (out, arg))| {
            let (image, c) = pooled.plane(index);
            let (scale, shift) = (scale[c], shift[c]);
            let source = &input[planes.range(image, c)];
            for (py, (out, arg)) in out
                .chunks_exact_mut(pooled.width)
                .zip(arg.chunks_exact_mut(pooled.width))
                .enumerate()
            {
                max_pool_row(
                    &source[2 * py * width..][..2 * width],
                    Some((scale, shift)),
                    0.0,
                    out,
                    arg,
                    (2 * py * width) as u32,
                );
            }
        });
        (output.into_vec(), Some(argmax.into_vec()), pooled.shape())
    } else {
        let output = per_plane(planes, |image, c, out| {
            let source = &input[planes.range(image, c)];
            let (scale, shift) = (scale[c], shift[c]);
            if relu {
                for (o, &v) in out.iter_mut().zip(source) {
                    *o = rectify(v * scale + shift);
                }
            } else {
                for (o, &v) in out.iter_mut().zip(source) {
                    *o = v * scale + shift;
                }
            }
        });
        (output, None, planes.shape())
    };
    let stats: Vec<f32> = mean.iter().chain(&variance).map(|&v| v as f32).collect();
    let saved = NormSaved {
        x,
        mean: mean32,
        inv_std,
        gamma,
        argmax,
        planes,
        relu_shift: relu.then_some(shift),
    };
    (
        flex_tensor(output, out_shape),
        flex_tensor(stats, vec![2, planes.channels]),
        saved,
    )
}

impl BatchNormOp for Flex {
    fn batch_norm_2d(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        layout: NormLayout,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (output, stats, _) = run(x, gamma, beta, epsilon, layout, relu);
        (output, stats)
    }
}

impl BatchNormKernels for Flex {
    fn batch_norm_2d_saving(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        layout: NormLayout,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, NormSaved) {
        run(x, gamma, beta, epsilon, layout, relu)
    }

    fn batch_norm_2d_backward(
        grad: FloatTensor<Self>,
        saved: NormSaved,
        input_grad: bool,
    ) -> LayerGradients<Self> {
        let NormSaved {
            x,
            mean,
            inv_std,
            gamma,
            argmax,
            planes,
            relu_shift,
        } = saved;
        let grad = grad.to_contiguous();
        let input = values(&x);
        // Behind a pool only each window's maximum has a gradient: the sums read those (a
        // quarter of the values) and the input's gradient adds them at their positions, never
        // laying out the mostly-zero unpooled gradient.
        let pooled_size = values(&grad).len() / planes.count();
        let window = |image: usize, c: usize| {
            let index = image * planes.channels + c;
            index * pooled_size..(index + 1) * pooled_size
        };
        // Through the ReLU (never behind a pool): the output's gradient where the normalised
        // value was positive.
        let rectified = relu_shift.map(|shift| {
            let grad = values(&grad);
            per_plane(planes, |image, c, out| {
                let (scale, shift) = (gamma[c] * inv_std[c], shift[c]);
                let (g, x) = (&grad[window(image, c)], &input[planes.range(image, c)]);
                for ((o, &g), &x) in out.iter_mut().zip(g).zip(x) {
                    *o = if x * scale + shift > 0.0 { g } else { 0.0 };
                }
            })
        });
        let grad = rectified.as_deref().unwrap_or(values(&grad));
        let beta_grad = channel_sums(planes, |image, c| {
            let r = window(image, c);
            lane_sum(&grad[r.clone()], &grad[r], |g, _| g)
        });
        let grad_times_input = channel_sums(planes, |image, c| {
            let (r, x) = (window(image, c), &input[planes.range(image, c)]);
            match &argmax {
                Some(argmax) => (grad[r.clone()].iter().zip(&argmax[r]))
                    .map(|(&g, &at)| g * x[at as usize])
                    .sum(),
                None => lane_sum(&grad[r], x, |g, x| g * x),
            }
        });
        // sum(g * x_hat) = (sum(g * x) - mean * sum(g)) / std.
        let gamma_grad: Vec<f64> = grad_times_input
            .into_iter()
            .enumerate()
            .map(|(c, gx)| (gx - mean[c] as f64 * beta_grad[c]) * inv_std[c] as f64)
            .collect();
        let channels = planes.channels;
        let x_grad = input_grad.then(|| {
            // dx = gamma / std * (g - mean(g) - x_hat * mean(g * x_hat)), per channel.
            let count = (planes.batch * planes.size()) as f64;
            let x_grad = per_plane(planes, |image, c, out| {
                let scale = gamma[c] * inv_std[c];
                let mean_grad = (beta_grad[c] / count) as f32;
                let mean_projection = (gamma_grad[c] / count) as f32;
                let (m, s) = (mean[c], inv_std[c]);
                let (r, x) = (window(image, c), &input[planes.range(image, c)]);
                match &argmax {
                    Some(argmax) => {
                        for (o, &x) in out.iter_mut().zip(x) {
                            *o = -scale * (mean_grad + (x - m) * s * mean_projection);
                        }
                        for (&g, &at) in grad[r.clone()].iter().zip(&argmax[r]) {
                            out[at as usize] += scale * g;
                        }
                    }
                    None => {
                        for ((o, &g), &x) in out.iter_mut().zip(&grad[r]).zip(x) {
                            *o = scale * (g - mean_grad - (x - m) * s * mean_projection);
                        }
                    }
                }
            });
            flex_tensor(x_grad, planes.shape())
        });
        let to_f32 = |sums: Vec<f64>| sums.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        (
            x_grad,
            flex_tensor(to_f32(gamma_grad), vec![channels]),
            flex_tensor(to_f32(beta_grad), vec![channels]),
        )
    }
}

impl<B: Backend + BatchNormOp + BatchNormKernels, C: CheckpointStrategy> BatchNormOp
    for Autodiff<B, C>
{
    fn batch_norm_2d(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        layout: NormLayout,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node(), beta.node()];
        match LayerBackward::<BatchNormBackward>::new()
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, stats, saved) = B::batch_norm_2d_saving(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    layout,
                    relu,
                );
                (prep.finish(saved, output), Self::from_inner(stats))
            }
            OpsKind::UnTracked(prep) => {
                let (output, stats) = B::batch_norm_2d(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    layout,
                    relu,
                );
                (prep.finish(output), Self::from_inner(stats))
            }
        }
    }
}

/// The backward kernel of [`BatchNormOp`].
struct BatchNormBackward;

impl<B: Backend + BatchNormKernels> LayerKernel<B> for BatchNormBackward {
    type Saved = NormSaved;

    fn gradients(grad: FloatTensor<B>, saved: NormSaved, input_grad: bool) -> LayerGradients<B> {
        B::batch_norm_2d_backward(grad, saved, input_grad)
    }
}
