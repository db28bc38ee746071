//! Fully connected layers: on flex each is one operation of ours with its ReLU and dropout
//! ([`crate::kernels::LinearOp`]), elsewhere burn's `Linear`, `relu` and the model's dropout.

use super::Dropout;
use crate::kernels::{Activation, LinearOp, is_flex};
use burn::backend::Dispatch;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::relu;

/// `dropout.apply(relu(linear.forward(x)), p)`, a hidden layer: on flex one operation of ours,
/// its mask drawn as `apply` draws it; elsewhere burn's.
pub(super) fn linear_relu_dropout(
    linear: &Linear,
    x: Tensor<2>,
    p: f64,
    dropout: &mut Dropout,
) -> Tensor<2> {
    match fusable(linear, &x) {
        Some(parameters) => {
            let outputs = x.dims()[0] * parameters.1.dims()[0];
            let (mask, scale) = match dropout.factors(outputs, p) {
                Some((mask, scale)) => (Some(mask), scale),
                None => (None, 1.0),
            };
            fused_linear(parameters, x, Activation::Relu { mask, scale })
        }
        None => dropout.apply(relu(linear.forward(x)), p),
    }
}

/// `linear.forward(x)`, an output layer: on flex the operation of [`linear_relu_dropout`]
/// without the ReLU; elsewhere burn's.
pub(super) fn linear(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    match fusable(linear, &x) {
        Some(parameters) => fused_linear(parameters, x, Activation::Identity),
        None => linear.forward(x),
    }
}

/// The weight and bias of `linear` when the fused operation applies to it on `x`: on flex, in
/// `f32`, with a bias.
fn fusable(linear: &Linear, x: &Tensor<2>) -> Option<(Tensor<2>, Tensor<1>)> {
    let applies = x.dtype() == burn::tensor::DType::F32 && is_flex(&x.device());
    let bias = linear.bias.as_ref().filter(|_| applies)?;
    // The weight first, as `Linear::forward` takes them: parameters initialise lazily, on first
    // use, from the device's generator, so the order decides their initial values.
    let weight = linear.weight.val();
    Some((weight, bias.val()))
}

fn fused_linear(
    (weight, bias): (Tensor<2>, Tensor<1>),
    x: Tensor<2>,
    activation: Activation,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as LinearOp>::fused_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        activation,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::relative_difference;
    use crate::rng::Rng;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    /// A hidden layer (ReLU, dropout) then an output layer, fused, give burn's outputs and
    /// gradients of the input and of both layers' weights and biases, with the same dropout
    /// masks, on one compute thread and shared by two (sizes that split unevenly); without
    /// autodiff (evaluation) the same outputs.
    #[test]
    fn fused_linear_layers_match_burn_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let hidden = LinearConfig::new(300, 40).init(&device);
        let output = LinearConfig::new(40, 10).init(&device);
        let input = Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 1.0), &device);
        let weights: Vec<f32> = (0..640).map(|i| (i % 7) as f32 - 3.0).collect();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [64, 10]), &device);
        for p in [0.0, 0.3] {
            let run = |fused: bool| {
                let x = input.clone().require_grad();
                let mut rng = Rng::new(9);
                let mut dropout = Dropout(Some(&mut rng));
                let y = if fused {
                    let h = linear_relu_dropout(&hidden, x.clone(), p, &mut dropout);
                    linear(&output, h)
                } else {
                    let h = dropout.apply(relu(hidden.forward(x.clone())), p);
                    output.forward(h)
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                let grad = |t: Tensor<2>| t.grad(&grads).expect("a gradient");
                let bias_grad = |l: &Linear| {
                    let bias = l.bias.as_ref().expect("a bias").val();
                    bias.grad(&grads).expect("a gradient")
                };
                (
                    [
                        y.inner(),
                        grad(x),
                        grad(hidden.weight.val()),
                        grad(output.weight.val()),
                    ],
                    [bias_grad(&hidden), bias_grad(&output)],
                )
            };
            let (expected, expected_biases) = run(false);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a pool");
                let (got, got_biases) = pool.install(|| run(true));
                let names = [
                    "output",
                    "input grad",
                    "hidden weight grad",
                    "output weight grad",
                ];
                for (name, (a, b)) in names.iter().zip(expected.iter().cloned().zip(got)) {
                    let difference = relative_difference(a, b);
                    assert!(
                        difference < 1e-5,
                        "{name}, p {p}, {threads} threads: {difference}"
                    );
                }
                for (a, b) in expected_biases.iter().cloned().zip(got_biases) {
                    let difference = relative_difference(a, b);
                    assert!(difference < 1e-5, "bias grad, p {p}, {threads} threads");
                }
            }
        }
        let device = Device::flex();
        let hidden = LinearConfig::new(300, 40).init(&device);
        let output = LinearConfig::new(40, 10).init(&device);
        let x = Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 1.0), &device);
        let mut evaluating = Dropout(None);
        let h = linear_relu_dropout(&hidden, x.clone(), 0.3, &mut evaluating);
        let fused = linear(&output, h);
        let plain = output.forward(relu(hidden.forward(x)));
        assert!(relative_difference(plain, fused) < 1e-5, "evaluation");
    }
}
