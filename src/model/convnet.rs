//! Seeds 000 and 004's small CNN: two conv3x3 -> ReLU -> pool blocks, dropout, one linear layer.

use super::layers::two_conv_blocks;
use super::norm::BatchNorm2d;
use super::{Dropout, OUTPUTS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

/// Two conv layers and one linear layer.
#[derive(Module, Debug)]
pub struct Convnet {
    conv1: Conv2d,
    conv2: Conv2d,
    norm1: Option<BatchNorm2d>,
    norm2: Option<BatchNorm2d>,
    pool: MaxPool2d,
    fc: Linear,
    #[module(skip)]
    dropout: f64,
}

impl Convnet {
    /// `channels` of the two conv layers, batch norm after each when `batch_norm`.
    pub fn new(channels: [usize; 2], dropout: f64, batch_norm: bool, device: &Device) -> Self {
        let same = PaddingConfig2d::Explicit(1, 1, 1, 1);
        let norm = |channels| batch_norm.then(|| BatchNorm2d::new(channels, device));
        Convnet {
            norm1: norm(channels[0]),
            norm2: norm(channels[1]),
            // Batch norm subtracts the mean, so a bias before it would do nothing.
            conv1: Conv2dConfig::new([1, channels[0]], [3, 3])
                .with_padding(same.clone())
                .with_bias(!batch_norm)
                .init(device),
            conv2: Conv2dConfig::new([channels[0], channels[1]], [3, 3])
                .with_padding(same)
                .with_bias(!batch_norm)
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc: LinearConfig::new(channels[1] * 7 * 7, OUTPUTS).init(device),
            dropout,
        }
    }

    /// Logits for a batch of images.
    pub fn forward(&self, images: Tensor<4>, dropout: &mut Dropout) -> Tensor<2> {
        let x = two_conv_blocks(
            [&self.conv1, &self.conv2],
            [self.norm1.as_ref(), self.norm2.as_ref()],
            &self.pool,
            images,
            dropout.is_training(),
        );
        self.fc
            .forward(dropout.apply(x.flatten(1, 3), self.dropout))
    }
}
