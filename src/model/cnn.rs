//! Seed 002's CNN: conv3x3 -> ReLU -> pool, conv3x3 -> ReLU -> pool, then three linear layers
//! with dropout after the first two. LeNet-5 shares the shape with other layer sizes.

use super::dense::{linear, linear_relu_dropout};
use super::layers::two_conv_blocks;
use super::norm::BatchNorm2d;
use super::{Dropout, OUTPUTS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

/// Two conv + two pool + three linear layers.
#[derive(Module, Debug)]
pub struct Cnn {
    pub(super) conv1: Conv2d,
    pub(super) conv2: Conv2d,
    pub(super) norm1: Option<BatchNorm2d>,
    pub(super) norm2: Option<BatchNorm2d>,
    pub(super) pool: MaxPool2d,
    pub(super) fc1: Linear,
    pub(super) fc2: Linear,
    pub(super) fc3: Linear,
    #[module(skip)]
    pub(super) dropout: f64,
}

impl Cnn {
    /// `channels` of the two conv layers, `hidden` widths of the first two linear layers,
    /// batch norm after each convolution when `batch_norm`.
    pub fn new(
        channels: [usize; 2],
        hidden: [usize; 2],
        dropout: f64,
        batch_norm: bool,
        device: &Device,
    ) -> Self {
        let same = PaddingConfig2d::Explicit(1, 1, 1, 1);
        Cnn::from_layers(
            Conv2dConfig::new([1, channels[0]], [3, 3]).with_padding(same.clone()),
            Conv2dConfig::new([channels[0], channels[1]], [3, 3]).with_padding(same),
            [channels[1] * 7 * 7, hidden[0], hidden[1]],
            dropout,
            batch_norm,
            device,
        )
    }

    /// Two conv blocks (conv, batch norm when `batch_norm`, ReLU, 2x2 max-pool) then three
    /// linear layers of input widths `linear` (the last one outputs the classes); LeNet-5 is
    /// this shape too.
    pub(super) fn from_layers(
        conv1: Conv2dConfig,
        conv2: Conv2dConfig,
        linear: [usize; 3],
        dropout: f64,
        batch_norm: bool,
        device: &Device,
    ) -> Self {
        let norm = |channels| batch_norm.then(|| BatchNorm2d::new(channels, device));
        Cnn {
            norm1: norm(conv1.channels[1]),
            norm2: norm(conv2.channels[1]),
            // Batch norm subtracts the mean, so a bias before it would do nothing (torchvision
            // leaves it out too).
            conv1: conv1.with_bias(!batch_norm).init(device),
            conv2: conv2.with_bias(!batch_norm).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(linear[0], linear[1]).init(device),
            fc2: LinearConfig::new(linear[1], linear[2]).init(device),
            fc3: LinearConfig::new(linear[2], OUTPUTS).init(device),
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
        let x = linear_relu_dropout(&self.fc1, x.flatten(1, 3), self.dropout, dropout);
        let x = linear_relu_dropout(&self.fc2, x, self.dropout, dropout);
        linear(&self.fc3, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Training-mode passes move only the running statistics (no optimizer step), so a model
    /// saved after them differs from a fresh one of the same seed in those alone: loading it
    /// must reproduce its evaluation outputs, and they must differ from the fresh model's (the
    /// statistics matter, and would be lost if the record left them out).
    #[test]
    fn batch_norm_statistics_are_saved_loaded_and_used_by_evaluation() {
        let device = Device::flex().autodiff();
        let build = || {
            device.seed(21);
            Cnn::new([4, 8], [16, 16], 0.0, true, &device)
        };
        let trained = build();
        let shifted = Tensor::<4>::random(
            [8, 1, 28, 28],
            burn::tensor::Distribution::Normal(3.0, 2.0),
            &device,
        );
        let mut rng = Rng::new(1);
        for _ in 0..3 {
            let _ = trained.forward(shifted.clone(), &mut Dropout(Some(&mut rng)));
        }
        let path = std::env::temp_dir().join(format!("sweep-bn-{}.bpk", std::process::id()));
        trained.clone().save_file(&path).unwrap();
        let loaded = build().try_load_file(&path).unwrap();

        let evaluate = |model: &Cnn| {
            let model = model.valid();
            let logits = model.forward(shifted.clone().inner(), &mut Dropout(None));
            logits.into_data().try_to_vec::<f32>().unwrap()
        };
        let (expected, got, fresh) = (evaluate(&trained), evaluate(&loaded), evaluate(&build()));
        // After evaluating: burnpack reads tensors from the file when they are first used.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(expected, got, "the loaded model evaluates as the saved one");
        let largest = expected
            .iter()
            .zip(&fresh)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            largest > 0.1,
            "running statistics change evaluation ({largest})"
        );
    }
}
