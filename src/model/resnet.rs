//! A small residual network for 28x28 images (He et al.'s CIFAR ResNets, scaled down): a 3x3
//! stem, stages of basic blocks (two 3x3 convolutions with batch norm and a shortcut), every
//! stage after the first halving the image, then global average pooling, dropout and one
//! linear layer. Convolutions followed by batch norm have no bias, as in torchvision.

use super::layers::{add_relu, conv2d};
use super::norm::BatchNorm2d;
use super::{Dropout, OUTPUTS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

/// The residual network.
#[derive(Module, Debug)]
pub struct Resnet {
    stem: Conv2d,
    stem_norm: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    fc: Linear,
    #[module(skip)]
    dropout: f64,
}

/// Two 3x3 convolutions with batch norm, added to the block's input (through a 1x1 strided
/// convolution and batch norm when the block changes the width or the image size).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    norm1: BatchNorm2d,
    conv2: Conv2d,
    norm2: BatchNorm2d,
    shortcut: Option<Projection>,
}

/// The shortcut of a block that changes shape.
#[derive(Module, Debug)]
pub struct Projection {
    conv: Conv2d,
    norm: BatchNorm2d,
}

fn conv3x3(inputs: usize, outputs: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([inputs, outputs], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

impl Resnet {
    /// Stages of `channels[i]` channels with `blocks` basic blocks each.
    pub fn new(channels: &[usize], blocks: usize, dropout: f64, device: &Device) -> Self {
        let mut inputs = channels[0];
        let mut layers = Vec::with_capacity(channels.len() * blocks);
        for (stage, &width) in channels.iter().enumerate() {
            for block in 0..blocks {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                layers.push(BasicBlock::new(inputs, width, stride, device));
                inputs = width;
            }
        }
        Resnet {
            stem: conv3x3(1, channels[0], 1, device),
            stem_norm: BatchNorm2d::new(channels[0], device),
            blocks: layers,
            fc: LinearConfig::new(inputs, OUTPUTS).init(device),
            dropout,
        }
    }

    /// Logits for a batch of images.
    pub fn forward(&self, images: Tensor<4>, dropout: &mut Dropout) -> Tensor<2> {
        let training = dropout.is_training();
        let mut x = self
            .stem_norm
            .forward_relu(conv2d(&self.stem, images), training);
        for block in &self.blocks {
            x = block.forward(x, training);
        }
        let [batch, channels, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.fc.forward(dropout.apply(pooled, self.dropout))
    }
}

impl BasicBlock {
    fn new(inputs: usize, outputs: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || inputs != outputs).then(|| Projection {
            conv: Conv2dConfig::new([inputs, outputs], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            norm: BatchNorm2d::new(outputs, device),
        });
        BasicBlock {
            conv1: conv3x3(inputs, outputs, stride, device),
            norm1: BatchNorm2d::new(outputs, device),
            conv2: conv3x3(outputs, outputs, 1, device),
            norm2: BatchNorm2d::new(outputs, device),
            shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>, training: bool) -> Tensor<4> {
        let out = self
            .norm1
            .forward_relu(conv2d(&self.conv1, x.clone()), training);
        let out = self.norm2.forward(conv2d(&self.conv2, out), training);
        let shortcut = match &self.shortcut {
            Some(p) => p.norm.forward(conv2d(&p.conv, x), training),
            None => x,
        };
        add_relu(out, shortcut)
    }
}
