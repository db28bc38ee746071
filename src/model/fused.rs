//! Several trials of one architecture advanced as one model: each layer's weights are stacked on
//! a leading trial axis for the step (linear layers become one batched matrix product,
//! convolutions one grouped convolution), so a batch of K small models costs the operations of
//! one. The stacking is part of the autodiff graph, so the backward pass hands every trial's own
//! parameters their own gradients: each trial keeps its own model, optimizer, learning rate and
//! checkpoints, and only the arithmetic is shared.

use super::{Cnn, Mlp, Net, layers};
use crate::experiment::{ArchName, TrialSpec};
use crate::rng::Rng;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

/// Why trials of `spec` cannot be fused, if they cannot.
pub fn unfusable(spec: &TrialSpec) -> Option<String> {
    match spec.arch {
        ArchName::Mlp => None,
        ArchName::Cnn | ArchName::Lenet5 if !spec.batch_norm => None,
        ArchName::Cnn | ArchName::Lenet5 => Some(format!(
            "{} with batch_norm keeps running statistics per trial, which fusing does not stack",
            spec.arch.as_str()
        )),
        ArchName::Convnet | ArchName::Resnet => Some(format!(
            "{} has no fused form (mlp, cnn and lenet5 have)",
            spec.arch.as_str()
        )),
    }
}

/// Trials with equal keys can train as one model: the same layers, and the same number of
/// batches of the same size per epoch. `None` when the trial cannot be fused at all.
pub fn fuse_key(spec: &TrialSpec) -> Option<String> {
    if unfusable(spec).is_some() {
        return None;
    }
    Some(format!(
        "{}|{:?}|{:?}|{}|{:?}|{}",
        spec.arch.as_str(),
        spec.hidden,
        spec.channels,
        spec.batch_size,
        spec.limit,
        spec.split
    ))
}

/// Logits `[trials, batch, 10]` of `nets` (all built from specs with one [`fuse_key`]) for
/// their own batches of images (`[batch, 1, 28, 28]` each, equal sizes), drawing each trial's
/// dropout masks from its own generator exactly as [`Net::forward`] would.
pub fn forward(nets: &[&Net], images: Vec<Tensor<4>>, dropouts: &mut [&mut Rng]) -> Tensor<3> {
    let mlps: Option<Vec<&Mlp>> = nets
        .iter()
        .map(|net| match net {
            Net::Mlp(m) => Some(m),
            _ => None,
        })
        .collect();
    if let Some(mlps) = mlps {
        return mlp(&mlps, images, dropouts);
    }
    let cnns: Option<Vec<&Cnn>> = nets
        .iter()
        .map(|net| match net {
            Net::Cnn(m) | Net::Lenet5(m) => Some(m),
            _ => None,
        })
        .collect();
    match cnns {
        Some(cnns) => cnn(&cnns, images, dropouts),
        None => panic!("fused trials share an architecture that fuses (see fuse_key)"),
    }
}

fn mlp(mlps: &[&Mlp], images: Vec<Tensor<4>>, dropouts: &mut [&mut Rng]) -> Tensor<3> {
    let mut x = Tensor::<2>::stack::<3>(images.into_iter().map(|i| i.flatten(1, 3)).collect(), 0);
    let rates: Vec<f64> = mlps.iter().map(|m| m.dropout).collect();
    for layer in 0..mlps[0].hidden.len() {
        let layers: Vec<&Linear> = mlps.iter().map(|m| &m.hidden[layer]).collect();
        x = dropout(relu(linear(&layers, x)), &rates, dropouts);
    }
    let outputs: Vec<&Linear> = mlps.iter().map(|m| &m.output).collect();
    linear(&outputs, x)
}

fn cnn(cnns: &[&Cnn], images: Vec<Tensor<4>>, dropouts: &mut [&mut Rng]) -> Tensor<3> {
    let x = if crate::kernels::is_flex(&images[0].device()) {
        // Flex's grouped convolution is several times slower than the unfolded, pool-fused
        // convolutions each trial's model runs alone (`cargo bench --bench layers`), so on flex
        // only the linear layers are fused; the trials' own blocks run on the slot's threads side
        // by side.
        let features = cnns.par_iter().zip(images).map(|(cnn, images)| {
            layers::two_conv_blocks(
                [&cnn.conv1, &cnn.conv2],
                [None, None],
                &cnn.pool,
                images,
                true,
            )
            .flatten::<2>(1, 3)
        });
        Tensor::stack::<3>(features.collect(), 0)
    } else {
        grouped_conv_blocks(cnns, images)
    };
    let rates: Vec<f64> = cnns.iter().map(|c| c.dropout).collect();
    let fc = |pick: fn(&Cnn) -> &Linear| cnns.iter().map(|c| pick(c)).collect::<Vec<_>>();
    let x = dropout(relu(linear(&fc(|c| &c.fc1), x)), &rates, dropouts);
    let x = dropout(relu(linear(&fc(|c| &c.fc2), x)), &rates, dropouts);
    linear(&fc(|c| &c.fc3), x)
}

/// Both conv blocks of every trial as grouped convolutions over the trials' images side by
/// side: `[trials, batch, features]`, each trial's features flattened as its own model does.
fn grouped_conv_blocks(cnns: &[&Cnn], images: Vec<Tensor<4>>) -> Tensor<3> {
    let trials = cnns.len();
    // Trial k's channels are k*C..(k+1)*C of one image batch: a grouped convolution keeps them
    // apart, and ReLU and max pooling act on each channel alone.
    let x = Tensor::cat(images, 1);
    let block =
        |x: Tensor<4>, convs: Vec<&Conv2d>| cnns[0].pool.forward(relu(grouped_conv2d(&convs, x)));
    let x = block(x, cnns.iter().map(|c| &c.conv1).collect());
    let x = block(x, cnns.iter().map(|c| &c.conv2).collect());
    let [batch, channels, height, width] = x.dims();
    x.reshape([batch, trials, channels / trials * height * width])
        .swap_dims(0, 1)
}

/// `layers[k].forward(x[k])` for every trial k, as one batched matrix product.
fn linear(layers: &[&Linear], x: Tensor<3>) -> Tensor<3> {
    let weight = Tensor::<2>::stack::<3>(layers.iter().map(|l| l.weight.val()).collect(), 0);
    let y = x.matmul(weight);
    let biases: Option<Vec<Tensor<1>>> = layers
        .iter()
        .map(|l| l.bias.as_ref().map(|b| b.val()))
        .collect();
    match biases {
        Some(biases) => y + Tensor::<1>::stack::<2>(biases, 0).unsqueeze_dim::<3>(1),
        None => y,
    }
}

/// Every trial's convolution over its own channels of `x`, as one grouped convolution.
fn grouped_conv2d(convs: &[&Conv2d], x: Tensor<4>) -> Tensor<4> {
    let first = convs[0];
    let [_, _, height, width] = x.dims();
    // Pairs as burn's `Conv2d::forward` computes them (its helper is private to burn).
    let same = |size: usize, axis: usize| {
        let (kernel, stride) = (first.kernel_size[axis], first.stride[axis]);
        let total = ((size.div_ceil(stride) - 1) * stride + kernel).saturating_sub(size);
        (total / 2, total - total / 2)
    };
    let padding = match first.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same(height, 0), same(width, 1)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    };
    let weight = Tensor::cat(convs.iter().map(|c| c.weight.val()).collect(), 0);
    let biases: Option<Vec<Tensor<1>>> = convs
        .iter()
        .map(|c| c.bias.as_ref().map(|b| b.val()))
        .collect();
    let options = ConvOptions::new_with_padding(
        first.stride,
        padding,
        first.dilation,
        convs.len() * first.groups,
    );
    conv2d(x, weight, biases.map(|b| Tensor::cat(b, 0)), options)
}

/// Each trial's dropout on its own slice of `x` (`[trials, batch, width]`), with masks drawn
/// from its own generator in the order [`super::Dropout::apply`] draws them.
fn dropout(x: Tensor<3>, rates: &[f64], rngs: &mut [&mut Rng]) -> Tensor<3> {
    if rates.iter().all(|&p| p <= 0.0) {
        return x;
    }
    let dims = x.dims();
    let per_trial = dims[1] * dims[2];
    let mut mask = vec![1.0f32; dims[0] * per_trial];
    // Each trial's mask comes from its own generator, so the slot's threads draw them side by side.
    mask.par_chunks_mut(per_trial)
        .zip(rates.par_iter().zip(rngs.par_iter_mut()))
        .filter(|(_, (p, _))| **p > 0.0)
        .for_each(|(mask, (&p, rng))| {
            let keep = 1.0 - p as f32;
            let scale = 1.0 / keep;
            rng.fill_dropout_mask(mask, keep, scale);
        });
    let mask = Tensor::<3>::from_data(TensorData::new(mask, dims), &x.device());
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lenet5;

    /// Off flex the CNNs' conv blocks run as grouped convolutions: they must give every trial
    /// the values and gradients its own blocks give (run here on flex, where training takes the
    /// other path).
    #[test]
    fn grouped_conv_blocks_match_each_trials_own() {
        let device = Device::flex().autodiff();
        for build in [
            |d: &Device| Cnn::new([4, 8], [16, 16], 0.0, false, d),
            |d: &Device| lenet5(0.0, false, d),
        ] {
            let cnns: Vec<Cnn> = (0..3)
                .map(|seed| {
                    device.seed(seed);
                    build(&device)
                })
                .collect();
            let refs: Vec<&Cnn> = cnns.iter().collect();
            let images: Vec<Tensor<4>> = (0..3)
                .map(|_| {
                    Tensor::random([5, 1, 28, 28], burn::tensor::Distribution::Default, &device)
                })
                .collect();
            let grouped = grouped_conv_blocks(&refs, images.clone());
            let alone: Vec<Tensor<2>> = cnns
                .iter()
                .zip(images)
                .map(|(cnn, images)| {
                    let pooled = cnn.pool.forward(relu(cnn.conv1.forward(images)));
                    cnn.pool
                        .forward(relu(cnn.conv2.forward(pooled)))
                        .flatten::<2>(1, 3)
                })
                .collect();
            let alone = Tensor::stack::<3>(alone, 0);
            let weights =
                Tensor::<3>::random(grouped.dims(), burn::tensor::Distribution::Default, &device);
            let grads_grouped = (grouped.clone() * weights.clone()).sum().backward();
            let grads_alone = (alone.clone() * weights).sum().backward();
            grouped
                .inner()
                .into_data()
                .assert_approx_eq::<f32>(&alone.inner().into_data(), Default::default());
            for cnn in &cnns {
                for conv in [&cnn.conv1, &cnn.conv2] {
                    let weight = conv.weight.val();
                    weight
                        .grad(&grads_grouped)
                        .unwrap()
                        .into_data()
                        .assert_approx_eq::<f32>(
                            &weight.grad(&grads_alone).unwrap().into_data(),
                            Default::default(),
                        );
                }
            }
        }
    }
}
