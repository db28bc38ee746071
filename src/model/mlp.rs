//! Fully connected network (seeds 001 and 003): 784 -> hidden... -> 10, ReLU, dropout after each
//! hidden layer.

use super::{Dropout, OUTPUTS, dense};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Multi-layer perceptron.
#[derive(Module, Debug)]
pub struct Mlp {
    pub(super) hidden: Vec<Linear>,
    pub(super) output: Linear,
    #[module(skip)]
    pub(super) dropout: f64,
}

impl Mlp {
    /// Layers of the given hidden widths.
    pub fn new(widths: &[usize], dropout: f64, device: &Device) -> Self {
        let mut inputs = 28 * 28;
        let hidden = widths
            .iter()
            .map(|&width| {
                let layer = LinearConfig::new(inputs, width).init(device);
                inputs = width;
                layer
            })
            .collect();
        Mlp {
            hidden,
            output: LinearConfig::new(inputs, OUTPUTS).init(device),
            dropout,
        }
    }

    /// Logits for a batch of images.
    pub fn forward(&self, images: Tensor<4>, dropout: &mut Dropout) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        for layer in &self.hidden {
            x = dense::linear_relu_dropout(layer, x, self.dropout, dropout);
        }
        dense::linear(&self.output, x)
    }
}
