//! Layers written with burn tensor operations where that beats burn's own kernel on flex
//! (`cargo bench --bench layers` measures both).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::PadMode;

/// `conv.forward(images)` for a network's first layer, whose input needs no gradient.
///
/// When training on flex it unfolds the images into columns (one shifted view per kernel position, outside
/// the autodiff graph) and multiplies them by the reshaped weight: the backward pass is then one
/// matrix product for the weight instead of flex's convolution weight-gradient kernel, 2-3 times
/// faster for the CNNs' first layers. Without autodiff (evaluation) flex's own forward kernel is
/// the faster one; so there, on libtorch, and for strided, dilated, grouped or `Same`-padded
/// convolutions it is `conv.forward`.
pub fn first_conv2d(conv: &Conv2d, images: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (left, right, top, bottom),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Same => return conv.forward(images),
    };
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    let device = images.device();
    if !plain || !device.is_autodiff() || !is_flex(&device) {
        return conv.forward(images);
    }
    let weight = conv.weight.val();
    let [out_channels, in_channels, kernel_h, kernel_w] = weight.dims();
    let images = images.detach().pad(padding, PadMode::Constant(0.0));
    let [batch, _, height, width] = images.dims();
    let (out_h, out_w) = (height - kernel_h + 1, width - kernel_w + 1);
    let patches: Vec<Tensor<5>> = (0..kernel_h)
        .flat_map(|i| (0..kernel_w).map(move |j| (i, j)))
        .map(|(i, j)| {
            images
                .clone()
                .slice([0..batch, 0..in_channels, i..i + out_h, j..j + out_w])
                .unsqueeze_dim(2)
        })
        .collect();
    // [batch, channel x kernel position, pixel]: the order of the weight's [in, h, w] axes.
    let positions = in_channels * kernel_h * kernel_w;
    let columns = Tensor::cat(patches, 2).reshape([batch, positions, out_h * out_w]);
    let mut out = weight.reshape([1, out_channels, positions]).matmul(columns);
    if let Some(bias) = &conv.bias {
        out = out + bias.val().reshape([1, out_channels, 1]);
    }
    out.reshape([batch, out_channels, out_h, out_w])
}

/// Whether `device` is burn's flex CPU backend, with or without autodiff.
fn is_flex(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;

    /// Outputs and weight and bias gradients equal burn's convolution, for the CNN's (3x3,
    /// padded) and LeNet-5's (5x5, padded) first layers, and the flex path is the one taken.
    #[test]
    fn first_conv2d_matches_burn_conv2d() {
        let device = Device::flex().autodiff();
        assert!(is_flex(&device) && is_flex(&Device::flex()));
        device.seed(5);
        for (channels, kernel, pad) in [(32, 3, 1), (6, 5, 2), (4, 3, 0)] {
            let conv = Conv2dConfig::new([1, channels], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(&device);
            let images = Tensor::<4>::random(
                [3, 1, 28, 28],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &device,
            );
            let run = |unfolded: bool| {
                let y = if unfolded {
                    first_conv2d(&conv, images.clone())
                } else {
                    conv.forward(images.clone())
                };
                let grads = (y.clone() * y.clone()).sum().backward();
                let weight = conv.weight.val().grad(&grads).unwrap();
                let bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                (y.inner(), weight, bias)
            };
            let (y0, w0, b0) = run(false);
            let (y1, w1, b1) = run(true);
            assert_eq!(y0.dims(), y1.dims());
            let close = |a: Tensor<4>, b: Tensor<4>| {
                let scale = a.clone().abs().max().into_scalar::<f32>().max(1.0);
                (a - b).abs().max().into_scalar::<f32>() / scale
            };
            assert!(close(y0, y1) < 1e-5, "outputs, {channels} channels");
            assert!(
                close(w0, w1) < 1e-5,
                "weight gradients, {channels} channels"
            );
            let bias_scale = b0.clone().abs().max().into_scalar::<f32>().max(1.0);
            let bias_diff = (b0 - b1).abs().max().into_scalar::<f32>() / bias_scale;
            assert!(
                bias_diff < 1e-5,
                "bias gradients, {channels} channels: {bias_diff}"
            );
        }
    }
}
