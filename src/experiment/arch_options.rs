//! `[arch.*]`: the layer sizes of each architecture.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// `[arch.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ArchOptions {
    /// `[arch.mlp]`.
    pub mlp: MlpOptions,
    /// `[arch.cnn]`.
    pub cnn: CnnOptions,
    /// `[arch.resnet]`.
    pub resnet: ResnetOptions,
    /// `[arch.convnet]`.
    pub convnet: ConvnetOptions,
    /// `[arch.lenet5]` has no options; the table may still be present.
    pub lenet5: NoOptions,
}

/// `[arch.mlp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpOptions {
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
}

impl Default for MlpOptions {
    fn default() -> Self {
        MlpOptions {
            hidden: vec![256, 128, 64],
        }
    }
}

/// `[arch.cnn]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnOptions {
    /// Output channels of the two conv layers.
    pub channels: [usize; 2],
    /// Widths of the two hidden linear layers.
    pub hidden: [usize; 2],
}

impl Default for CnnOptions {
    fn default() -> Self {
        CnnOptions {
            channels: [32, 64],
            hidden: [256, 128],
        }
    }
}

/// `[arch.convnet]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvnetOptions {
    /// Output channels of the two conv layers.
    pub channels: [usize; 2],
}

impl Default for ConvnetOptions {
    fn default() -> Self {
        ConvnetOptions { channels: [16, 32] }
    }
}

/// `[arch.resnet]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResnetOptions {
    /// Channels of each stage; every stage after the first halves the image size.
    pub channels: Vec<usize>,
    /// Basic blocks (two 3x3 convolutions and a shortcut) per stage.
    pub blocks: usize,
}

impl Default for ResnetOptions {
    fn default() -> Self {
        ResnetOptions {
            channels: vec![16, 32, 64],
            blocks: 2,
        }
    }
}

/// An options table that takes no keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

impl ArchOptions {
    /// Checks that every width and count can build a network.
    pub(super) fn validate(&self, problems: &mut Problems) {
        let (resnet, cnn) = (&self.resnet, &self.cnn);
        problems.check(
            (1..=4).contains(&resnet.channels.len()) && resnet.channels.iter().all(|&c| c > 0),
            "arch.resnet.channels",
            format!("{:?}", resnet.channels),
            "give 1 to 4 stage widths, each at least 1 (e.g. [16, 32, 64])",
        );
        problems.check(
            (1..=8).contains(&resnet.blocks),
            "arch.resnet.blocks",
            resnet.blocks.to_string(),
            "must be 1 to 8 basic blocks per stage (2 is the default)",
        );
        problems.check(
            !self.mlp.hidden.is_empty() && self.mlp.hidden.iter().all(|&h| h > 0),
            "arch.mlp.hidden",
            format!("{:?}", self.mlp.hidden),
            "give one or more layer widths, each at least 1",
        );
        problems.check(
            cnn.channels.iter().chain(&cnn.hidden).all(|&c| c > 0),
            "arch.cnn",
            format!("channels {:?}, hidden {:?}", cnn.channels, cnn.hidden),
            "every width must be at least 1",
        );
        problems.check(
            self.convnet.channels.iter().all(|&c| c > 0),
            "arch.convnet.channels",
            format!("{:?}", self.convnet.channels),
            "every width must be at least 1",
        );
    }
}
