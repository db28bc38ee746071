//! Batch normalisation over the channels of `[batch, channels, height, width]` activations,
//! with PyTorch's `BatchNorm2d` semantics: batch statistics when training, running statistics
//! (momentum 0.1, eps 1e-5, the variance's running average unbiased) when evaluating.
//!
//! burn's own `BatchNorm` picks training or evaluation from the device alone and feeds its
//! running variance the biased batch variance; a trial needs the mode it asks for (the model
//! is probed once on the training device when it is built) and PyTorch's running variance, for
//! parity with the seed scripts.

use super::layers::is_2x2_pool;
use crate::kernels::{BatchNormOp, NormLayout, is_flex};
use burn::backend::Dispatch;
use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{batch_norm, batch_norm_train};

/// PyTorch's default momentum of the running statistics.
const MOMENTUM: f64 = 0.1;
/// PyTorch's default epsilon added to the variance.
const EPSILON: f64 = 1e-5;

/// A batch-norm layer: a learnt scale and shift per channel, and running statistics that are
/// part of the model's record (so checkpoints keep them and `predict` uses them).
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    gamma: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
    running_mean: RunningState<Tensor<1>>,
    running_var: RunningState<Tensor<1>>,
}

impl BatchNorm2d {
    /// Scale 1, shift 0, running mean 0 and variance 1, as PyTorch initialises them.
    pub fn new(channels: usize, device: &Device) -> Self {
        BatchNorm2d {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    /// Normalises `x` by its own statistics and updates the running ones when `training`, by
    /// the running statistics otherwise.
    pub fn forward(&self, x: Tensor<4>, training: bool) -> Tensor<4> {
        self.normalize(x, training, NormLayout::Plain, false)
    }

    /// `relu(self.forward(x, training))`, the ReLU inside our operation when training on flex:
    /// burn-flex's ReLU is more passes over the activations forward and backward, and trails
    /// PyTorch's (`cargo bench --bench layers`, `relu` row); resnet has one after most of its
    /// batch norms.
    pub fn forward_relu(&self, x: Tensor<4>, training: bool) -> Tensor<4> {
        if training && fits_op(&x) {
            self.normalize(x, training, NormLayout::Plain, true)
        } else {
            relu(self.forward(x, training))
        }
    }

    /// `pool.forward(self.forward(x, training))`, as one operation when training on flex with
    /// a 2x2 pool and an even image size.
    pub fn forward_pooled(&self, x: Tensor<4>, training: bool, pool: &MaxPool2d) -> Tensor<4> {
        let [_, _, height, width] = x.dims();
        if training && is_2x2_pool(pool) && height % 2 == 0 && width % 2 == 0 && fits_op(&x) {
            self.normalize(x, training, NormLayout::Pooled, false)
        } else {
            pool.forward(self.normalize(x, training, NormLayout::Plain, false))
        }
    }

    /// `conv` followed by this layer in evaluation, as one convolution: each filter's weights
    /// scaled by `gamma / sqrt(running_var + eps)`, its bias moved and shifted to match. The
    /// evaluating CNN then takes the fused convolution + pool paths of a network without batch
    /// norm (the pool after it sees the same values, whatever gamma's sign).
    pub fn folded_into(&self, conv: &Conv2d) -> Conv2d {
        let device = conv.weight.device();
        let running = |state: &RunningState<Tensor<1>>| state.value().to_device(&device);
        let scale = self.gamma.val() / running(&self.running_var).add_scalar(EPSILON).sqrt();
        let shift = self.beta.val() - running(&self.running_mean) * scale.clone();
        let bias = match &conv.bias {
            Some(bias) => bias.val() * scale.clone() + shift,
            None => shift,
        };
        let filters = scale.dims()[0];
        let weight = conv.weight.val() * scale.reshape([filters, 1, 1, 1]);
        // Detached: evaluation needs no gradient, and a parameter must be a leaf (the model is
        // also evaluated once on the autodiff device when it is built).
        Conv2d {
            weight: Param::from_tensor(weight.detach()),
            bias: Some(Param::from_tensor(bias.detach())),
            ..conv.clone()
        }
    }

    /// Normalises `x` laid out as `layout` says (pooling it too when it says so: only when
    /// training on flex, which the caller checked), then through a ReLU when `with_relu`.
    fn normalize(
        &self,
        x: Tensor<4>,
        training: bool,
        layout: NormLayout,
        with_relu: bool,
    ) -> Tensor<4> {
        if !training {
            let device = x.device();
            let output = batch_norm(
                x,
                self.gamma.val(),
                self.beta.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                EPSILON,
            );
            return if with_relu { relu(output) } else { output };
        }
        let channels = x.dims()[1];
        let per_channel = (x.dims().iter().product::<usize>() / channels) as f64;
        let (output, mean, variance) = self.normalize_by_batch(x, layout, channels, with_relu);
        let unbiased = per_channel / (per_channel - 1.0).max(1.0);
        let blend = |running: &RunningState<Tensor<1>>, batch: Tensor<1>| {
            let old = running.value_sync();
            let new = old.mul_scalar(1.0 - MOMENTUM) + batch.detach().mul_scalar(MOMENTUM);
            running.update(new.detach());
            // Folded in now: saving a model reads the committed value, not per-thread updates.
            let _ = running.value_sync();
        };
        blend(&self.running_mean, mean);
        blend(&self.running_var, variance.mul_scalar(unbiased));
        output
    }

    /// The output normalised by the batch's statistics, the batch mean and biased variance:
    /// on flex one operation of our own ([`crate::kernels::BatchNormOp`]), elsewhere burn's.
    fn normalize_by_batch(
        &self,
        x: Tensor<4>,
        layout: NormLayout,
        channels: usize,
        with_relu: bool,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        if !fits_op(&x) {
            let result = batch_norm_train(x, self.gamma.val(), self.beta.val(), EPSILON);
            let output = if with_relu {
                relu(result.output)
            } else {
                result.output
            };
            return (output, result.mean, result.variance);
        }
        let (output, stats) = <Dispatch as BatchNormOp>::batch_norm_2d(
            x.into_dispatch(),
            self.gamma.val().into_dispatch(),
            self.beta.val().into_dispatch(),
            EPSILON,
            layout,
            with_relu,
        );
        let stats = Tensor::<2>::from_dispatch(stats);
        let row = |i: usize| {
            stats
                .clone()
                .slice([i..i + 1, 0..channels])
                .reshape([channels])
        };
        (Tensor::from_dispatch(output), row(0), row(1))
    }
}

/// Whether our batch-norm operation takes `x`: f32 on flex.
fn fits_op(x: &Tensor<4>) -> bool {
    is_flex(&x.device()) && x.dtype() == burn::tensor::DType::F32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Training normalises by the batch and moves the running statistics a tenth of the way
    /// (the variance unbiased); evaluation uses the running statistics.
    #[test]
    fn training_and_evaluation_follow_pytorch() {
        let device = Device::flex();
        let norm = BatchNorm2d::new(2, &device);
        // Channel 0 holds 1, 3 (mean 2, biased var 1, unbiased 2); channel 1 holds 0, 0.
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 3.0, 0.0, 0.0], [1, 2, 1, 2]),
            &device,
        );
        let y = norm.forward(x.clone(), true).into_data();
        let y: Vec<f32> = y.try_to_vec::<f32>().unwrap();
        let expected = [
            -1.0 / (1.0f32 + 1e-5).sqrt(),
            1.0 / (1.0f32 + 1e-5).sqrt(),
            0.0,
            0.0,
        ];
        for (got, want) in y.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{y:?}");
        }
        let mean: Vec<f32> = norm
            .running_mean
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let var: Vec<f32> = norm
            .running_var
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(mean, [0.2, 0.0]);
        assert!((var[0] - (0.9 + 0.2)).abs() < 1e-6 && (var[1] - 0.9).abs() < 1e-6);
        // Evaluation: (x - 0.2) / sqrt(1.1 + eps) for channel 0.
        let y: Vec<f32> = norm
            .forward(x, false)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((y[0] - 0.8 / (1.1f32 + 1e-5).sqrt()).abs() < 1e-5, "{y:?}");
    }

    use crate::kernels::testing::relative_difference;

    /// Our flex operation, in every layout and with the ReLU, against burn's `batch_norm_train`
    /// (and max pool, and ReLU): the output and the gradients of the input, gamma and beta,
    /// with a negative gamma (so the pool's maximum is not the input's) and a loss that weights
    /// outputs differently.
    #[test]
    fn fused_batch_norm_matches_burn_in_values_and_gradients() {
        use burn::nn::pool::MaxPool2dConfig;
        let device = Device::flex().autodiff();
        device.seed(4);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [3]), &device);
        let norm = BatchNorm2d {
            gamma: Param::from_tensor(vector(vec![1.5, -0.5, 0.8])),
            beta: Param::from_tensor(vector(vec![0.1, -0.2, 0.3])),
            ..BatchNorm2d::new(3, &device)
        };
        let x = Tensor::<4>::random(
            [5, 3, 6, 8],
            burn::tensor::Distribution::Normal(2.0, 3.0),
            &device,
        );
        for (pooled, with_relu) in [(false, false), (true, false), (false, true)] {
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = match (ours, pooled) {
                    (false, _) => {
                        let y =
                            batch_norm_train(x.clone(), norm.gamma.val(), norm.beta.val(), EPSILON)
                                .output;
                        let y = if pooled { pool.forward(y) } else { y };
                        if with_relu { relu(y) } else { y }
                    }
                    (true, false) if with_relu => norm.forward_relu(x.clone(), true),
                    (true, false) => norm.forward(x.clone(), true),
                    (true, true) => norm.forward_pooled(x.clone(), true, &pool),
                };
                let count = y.dims().iter().product::<usize>();
                let weights: Vec<f32> = (0..count).map(|i| (i % 7) as f32 - 3.0).collect();
                let weights = Tensor::<4>::from_data(TensorData::new(weights, y.dims()), &device);
                let grads = (y.clone() * weights).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    norm.gamma.val().grad(&grads).unwrap(),
                    norm.beta.val().grad(&grads).unwrap(),
                )
            };
            let (y0, x0, g0, b0) = run(false);
            let (y1, x1, g1, b1) = run(true);
            let case = format!("pooled {pooled}, relu {with_relu}");
            assert!(relative_difference(y0, y1) < 1e-5, "output, {case}");
            assert!(relative_difference(x0, x1) < 1e-4, "input grad, {case}");
            assert!(relative_difference(g0, g1) < 1e-4, "gamma grad, {case}");
            assert!(relative_difference(b0, b1) < 1e-5, "beta grad, {case}");
        }
        // Three updates towards a batch mean near 2 from 0: about 2 * (1 - 0.9^3) = 0.54.
        let mean: Vec<f32> = norm.running_mean.value().into_data().try_to_vec().unwrap();
        assert!(mean.iter().all(|m| (0.42..0.66).contains(m)), "{mean:?}");
    }

    /// Evaluating a conv block with batch norm folds the norm into the convolution: the same
    /// values as the convolution, running-statistics batch norm and pool one after the other,
    /// for a first layer and an inner one, with a negative gamma and moved statistics.
    #[test]
    fn folded_evaluation_matches_separate_layers() {
        use crate::model::layers::conv_block;
        use burn::nn::PaddingConfig2d;
        use burn::nn::conv::Conv2dConfig;
        use burn::nn::pool::MaxPool2dConfig;
        let device = Device::flex();
        device.seed(9);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        for (channels, bias) in [([1, 4], false), ([3, 4], true)] {
            let conv = Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(bias)
                .init(&device);
            let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [4]), &device);
            let norm = BatchNorm2d {
                gamma: Param::from_tensor(vector(vec![1.5, -0.5, 0.8, -2.0])),
                beta: Param::from_tensor(vector(vec![0.1, -0.2, 0.3, 0.0])),
                running_mean: RunningState::new(vector(vec![0.5, -1.0, 0.0, 2.0])),
                running_var: RunningState::new(vector(vec![0.25, 4.0, 1.0, 0.01])),
            };
            let x = Tensor::<4>::random(
                [6, channels[0], 8, 8],
                burn::tensor::Distribution::Normal(0.0, 2.0),
                &device,
            );
            let separate = pool.forward(norm.forward(conv.forward(x.clone()), false));
            let separate = burn::tensor::activation::relu(separate);
            let folded = conv_block(&conv, Some(&norm), &pool, x, false);
            let difference = relative_difference(separate, folded);
            assert!(difference < 1e-5, "{channels:?}: {difference}");
        }
    }
}
