//! LeNet-5 (seed 004): conv5x5(6, padded) -> pool, conv5x5(16) -> pool, 120 -> 84 -> 10 with
//! dropout after the first two linear layers. ReLU and max pooling, as the seed's PyTorch port.
//! It has the [`Cnn`]'s shape, so it is a `Cnn` with LeNet's layer sizes.

use super::Cnn;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;

/// Builds LeNet-5, with batch norm after each convolution when `batch_norm`.
pub fn lenet5(dropout: f64, batch_norm: bool, device: &Device) -> Cnn {
    Cnn::from_layers(
        Conv2dConfig::new([1, 6], [5, 5]).with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)),
        Conv2dConfig::new([6, 16], [5, 5]),
        [16 * 5 * 5, 120, 84],
        dropout,
        batch_norm,
        device,
    )
}
