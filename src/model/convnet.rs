//! Seeds 000 and 004's small CNN: two conv3x3 -> ReLU -> pool blocks, dropout, one linear layer.

use super::layers::{conv2d_max_pool, first_conv2d_max_pool};
use super::{Dropout, OUTPUTS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Two conv layers and one linear layer.
#[derive(Module, Debug)]
pub struct Convnet {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc: Linear,
    #[module(skip)]
    dropout: f64,
}

impl Convnet {
    /// `channels` of the two conv layers.
    pub fn new(channels: [usize; 2], dropout: f64, device: &Device) -> Self {
        let same = PaddingConfig2d::Explicit(1, 1, 1, 1);
        Convnet {
            conv1: Conv2dConfig::new([1, channels[0]], [3, 3])
                .with_padding(same.clone())
                .init(device),
            conv2: Conv2dConfig::new([channels[0], channels[1]], [3, 3])
                .with_padding(same)
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc: LinearConfig::new(channels[1] * 7 * 7, OUTPUTS).init(device),
            dropout,
        }
    }

    /// Logits for a batch of images.
    pub fn forward(&self, images: Tensor<4>, dropout: &mut Dropout) -> Tensor<2> {
        // ReLU and max pooling commute (both are monotone), and pooling first leaves the ReLU a
        // quarter of the values: the same function and gradients for less work.
        let x = relu(first_conv2d_max_pool(&self.conv1, &self.pool, images));
        let x = relu(conv2d_max_pool(&self.conv2, &self.pool, x));
        self.fc
            .forward(dropout.apply(x.flatten(1, 3), self.dropout))
    }
}
