//! Seed 002's CNN: conv3x3 -> ReLU -> pool, conv3x3 -> ReLU -> pool, then three linear layers
//! with dropout after the first two. LeNet-5 shares the shape with other layer sizes.

use super::layers::{conv2d_max_pool, first_conv2d_max_pool};
use super::{Dropout, OUTPUTS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Two conv + two pool + three linear layers.
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    #[module(skip)]
    dropout: f64,
}

impl Cnn {
    /// `channels` of the two conv layers, `hidden` widths of the first two linear layers.
    pub fn new(channels: [usize; 2], hidden: [usize; 2], dropout: f64, device: &Device) -> Self {
        let same = PaddingConfig2d::Explicit(1, 1, 1, 1);
        Cnn::from_layers(
            Conv2dConfig::new([1, channels[0]], [3, 3]).with_padding(same.clone()),
            Conv2dConfig::new([channels[0], channels[1]], [3, 3]).with_padding(same),
            [channels[1] * 7 * 7, hidden[0], hidden[1]],
            dropout,
            device,
        )
    }

    /// Two conv blocks (conv, ReLU, 2x2 max-pool) then three linear layers of input widths
    /// `linear` (the last one outputs the classes); LeNet-5 is this shape too.
    pub(super) fn from_layers(
        conv1: Conv2dConfig,
        conv2: Conv2dConfig,
        linear: [usize; 3],
        dropout: f64,
        device: &Device,
    ) -> Self {
        Cnn {
            conv1: conv1.init(device),
            conv2: conv2.init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(linear[0], linear[1]).init(device),
            fc2: LinearConfig::new(linear[1], linear[2]).init(device),
            fc3: LinearConfig::new(linear[2], OUTPUTS).init(device),
            dropout,
        }
    }

    /// Logits for a batch of images.
    pub fn forward(&self, images: Tensor<4>, dropout: &mut Dropout) -> Tensor<2> {
        // ReLU and max pooling commute (both are monotone), and pooling first leaves the ReLU a
        // quarter of the values: the same function and gradients for less work.
        let x = relu(first_conv2d_max_pool(&self.conv1, &self.pool, images));
        let x = relu(conv2d_max_pool(&self.conv2, &self.pool, x));
        let x = dropout.apply(relu(self.fc1.forward(x.flatten(1, 3))), self.dropout);
        let x = dropout.apply(relu(self.fc2.forward(x)), self.dropout);
        self.fc3.forward(x)
    }
}
