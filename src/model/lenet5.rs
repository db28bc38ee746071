//! LeNet-5 (seed 004): conv5x5(6, padded) -> pool, conv5x5(16) -> pool, 120 -> 84 -> 10 with
//! dropout after the first two linear layers. ReLU and max pooling, as the seed's PyTorch port.

use super::{Dropout, OUTPUTS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// LeNet-5.
#[derive(Module, Debug)]
pub struct Lenet5 {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    #[module(skip)]
    dropout: f64,
}

impl Lenet5 {
    /// The classic layer sizes.
    pub fn new(dropout: f64, device: &Device) -> Self {
        Lenet5 {
            conv1: Conv2dConfig::new([1, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(16 * 5 * 5, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            fc3: LinearConfig::new(84, OUTPUTS).init(device),
            dropout,
        }
    }

    /// Logits for a batch of images.
    pub fn forward(&self, images: Tensor<4>, dropout: &mut Dropout) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(images)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = dropout.apply(relu(self.fc1.forward(x.flatten(1, 3))), self.dropout);
        let x = dropout.apply(relu(self.fc2.forward(x)), self.dropout);
        self.fc3.forward(x)
    }
}
