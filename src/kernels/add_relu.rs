//! `relu(a + b)`, a residual block's output, as one flex operation with a hand-written backward
//! pass, reached through a burn backend extension.
//!
//! Why: burn-flex runs the sum and the ReLU as two passes forward and more backward (the ReLU's
//! mask, then the gradient through it, handed to both inputs by the sum); resnet ends each of
//! its six blocks with them. Here the forward pass is one loop, and the backward pass one loop
//! that masks the output's gradient by the saved output, the same gradient for both inputs.

use super::flex::{Unzeroed, flex_tensor, values};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use rayon::prelude::*;

/// Values per piece of work spread over the compute threads.
const CHUNK: usize = 1 << 14;

/// `relu(a + b)` of two tensors of one shape.
#[backend_extension(Flex, Autodiff)]
pub trait AddRelu: Backend {
    /// `relu(a + b)`, NaN kept (a diverging trial must show it).
    fn add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward half of [`AddRelu`].
pub trait AddReluKernels: Backend {
    /// The output's gradient where the output is positive, zero elsewhere: the gradient of
    /// both inputs.
    fn add_relu_backward(grad: FloatTensor<Self>, output: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl AddRelu for Flex {
    fn add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a, b) = (a.to_contiguous(), b.to_contiguous());
        let shape = a.layout().shape().to_vec();
        assert_eq!(shape, b.layout().shape().to_vec(), "add_relu of two shapes");
        let output = elementwise(values(&a), values(&b), |a, b| {
            let sum = a + b;
            if sum < 0.0 { 0.0 } else { sum }
        });
        flex_tensor(output, shape)
    }
}

impl AddReluKernels for Flex {
    fn add_relu_backward(grad: FloatTensor<Self>, output: FloatTensor<Self>) -> FloatTensor<Self> {
        let grad = grad.to_contiguous();
        let shape = grad.layout().shape().to_vec();
        let masked = elementwise(values(&grad), values(&output), |g, y| {
            if y > 0.0 { g } else { 0.0 }
        });
        flex_tensor(masked, shape)
    }
}

/// `f(a[i], b[i])` for every `i`, spread over the compute threads.
fn elementwise(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut output = Unzeroed::new(a.len());
    output
        .chunks(CHUNK, 0)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    output.into_vec()
}

impl<B: Backend + AddRelu + AddReluKernels, C: CheckpointStrategy> AddRelu for Autodiff<B, C> {
    fn add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [a.node(), b.node()];
        match AddReluBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::add_relu(a.into_primitive(), b.into_primitive());
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::add_relu(a.into_primitive(), b.into_primitive()))
            }
        }
    }
}

/// burn's backward step of [`AddRelu`]: the masked gradient to each input that asked for one.
#[derive(Debug)]
struct AddReluBackward;

impl<B: Backend + AddReluKernels> Backward<B, 2> for AddReluBackward {
    /// The output (contiguous, as the forward pass made it).
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [a_node, b_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let masked = B::add_relu_backward(grad, ops.state);
        match (a_node, b_node) {
            (Some(a), Some(b)) => {
                grads.register::<B>(a.id, masked.clone());
                grads.register::<B>(b.id, masked);
            }
            (Some(node), None) | (None, Some(node)) => grads.register::<B>(node.id, masked),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::testing::relative_difference;
    use crate::model::layers::add_relu;
    use burn::prelude::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::relu;

    /// The output and both inputs' gradients equal burn's `relu(a + b)`, with both inputs
    /// tracked and with one constant; a NaN reaches the output.
    #[test]
    fn add_relu_matches_burn_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let random = || Tensor::<4>::random([3, 4, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (random(), random());
        for b_tracked in [true, false] {
            let run = |ours: bool| {
                let a = a.clone().require_grad();
                let b = if b_tracked {
                    b.clone().require_grad()
                } else {
                    b.clone()
                };
                let y = if ours {
                    add_relu(a.clone(), b.clone())
                } else {
                    relu(a.clone() + b.clone())
                };
                let count = y.dims().iter().product::<usize>();
                let weights: Vec<f32> = (0..count).map(|i| (i % 5) as f32 - 2.0).collect();
                let weights = Tensor::<4>::from_data(TensorData::new(weights, y.dims()), &device);
                let grads = (y.clone() * weights).sum().backward();
                (y.inner(), a.grad(&grads).unwrap(), b.grad(&grads))
            };
            let (y0, a0, b0) = run(false);
            let (y1, a1, b1) = run(true);
            assert!(
                relative_difference(y0, y1) < 1e-6,
                "output, b tracked {b_tracked}"
            );
            assert!(
                relative_difference(a0, a1) < 1e-6,
                "a grad, b tracked {b_tracked}"
            );
            match (b0, b1) {
                (Some(b0), Some(b1)) => assert!(relative_difference(b0, b1) < 1e-6, "b grad"),
                (None, None) => assert!(!b_tracked),
                _ => panic!("b's gradient present on one side only"),
            }
        }
        let device = Device::flex();
        let nan = Tensor::<4>::full([1, 1, 2, 2], f32::NAN, &device);
        let y = add_relu(nan, Tensor::zeros([1, 1, 2, 2], &device));
        assert_eq!(y.is_nan().int().sum().into_scalar::<i64>(), 4);
    }
}
