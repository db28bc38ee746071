//! The autodiff glue the layer operations share: burn's backward step for an operation of three
//! inputs (the layer's input, weight and bias) whose backward kernel returns all three gradients
//! at once, registering each gradient with the input that asked for one.

use burn::backend::Backend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use std::fmt;
use std::marker::PhantomData;

/// Gradients of a layer's input (when asked for), weight and bias.
pub type LayerGradients<B> = (Option<FloatTensor<B>>, FloatTensor<B>, FloatTensor<B>);

/// A layer operation's backward kernel on backend `B`.
pub(super) trait LayerKernel<B: Backend>: 'static {
    /// What the forward pass keeps for the backward pass.
    type Saved: Clone + Send + fmt::Debug + 'static;

    /// The gradients of the input (when `input_grad`), the weight and the bias, from the
    /// output's gradient `grad`.
    fn gradients(grad: FloatTensor<B>, saved: Self::Saved, input_grad: bool) -> LayerGradients<B>;
}

/// burn's backward step for the layer operation whose kernel is `K`.
pub(super) struct LayerBackward<K>(PhantomData<fn() -> K>);

impl<K> LayerBackward<K> {
    /// The step, to `prepare` with the operation's three input nodes.
    pub(super) fn new() -> Self {
        LayerBackward(PhantomData)
    }
}

impl<K> fmt::Debug for LayerBackward<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayerBackward<{}>", std::any::type_name::<K>())
    }
}

impl<B: Backend, K: LayerKernel<B>> Backward<B, 3> for LayerBackward<K> {
    type State = K::Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_grad, weight_grad, bias_grad) = K::gradients(grad, ops.state, x_node.is_some());
        if let (Some(node), Some(x_grad)) = (x_node, x_grad) {
            grads.register::<B>(node.id, x_grad);
        }
        if let Some(node) = weight_node {
            grads.register::<B>(node.id, weight_grad);
        }
        if let Some(node) = bias_node {
            grads.register::<B>(node.id, bias_grad);
        }
    }
}
