//! The architectures, one file each, and [`Net`], the enum that builds and runs any of them.

mod cnn;

mod convnet;
mod dense;
pub mod fused;
pub mod layers;
mod lenet5;
mod mlp;
pub mod norm;

mod resnet;

pub use cnn::Cnn;
pub use convnet::Convnet;
pub use lenet5::lenet5;
pub use mlp::Mlp;
pub use resnet::Resnet;

use crate::data::NUM_CLASSES;
use crate::experiment::{ArchName, TrialSpec};
use crate::rng::Rng;
use burn::prelude::*;
use std::sync::Mutex;

/// Any of the architectures `sweep` trains.
#[derive(Module, Debug)]
pub enum Net {
    /// Fully connected.
    Mlp(Mlp),
    /// Two conv + two pool + three linear layers.
    Cnn(Cnn),
    /// LeNet-5 (a `Cnn` with LeNet's layer sizes).
    Lenet5(Cnn),
    /// Two conv layers and one linear layer.
    Convnet(Convnet),
    /// A small residual network.
    Resnet(Resnet),
}

// burn's backends draw initial weights from one process-wide generator; holding this lock while
// seeding and materialising a model keeps each trial's initial weights a function of its seed
// alone, however many trials start at once.
static INIT_LOCK: Mutex<()> = Mutex::new(());

impl Net {
    /// Builds the trial's architecture on `device` with weights drawn from `seed`.
    pub fn new(trial: &TrialSpec, device: &Device, seed: u64) -> Net {
        let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        let hidden = trial.hidden.clone().unwrap_or_default();
        let channels = trial.channels.as_deref().unwrap_or_default();
        let two = |default: [usize; 2]| match channels {
            &[first, second] => [first, second],
            _ => default,
        };
        let (dropout, batch_norm) = (trial.dropout, trial.batch_norm);
        let net = match trial.arch {
            ArchName::Mlp => Net::Mlp(Mlp::new(&hidden, dropout, device)),
            ArchName::Cnn => Net::Cnn(Cnn::new(
                two([32, 64]),
                [
                    hidden.first().copied().unwrap_or(256),
                    hidden.get(1).copied().unwrap_or(128),
                ],
                dropout,
                batch_norm,
                device,
            )),
            ArchName::Lenet5 => Net::Lenet5(lenet5(dropout, batch_norm, device)),
            ArchName::Convnet => {
                Net::Convnet(Convnet::new(two([16, 32]), dropout, batch_norm, device))
            }
            ArchName::Resnet => Net::Resnet(Resnet::new(
                if channels.is_empty() {
                    &[16, 32, 64]
                } else {
                    channels
                },
                trial.blocks.unwrap_or(2),
                dropout,
                device,
            )),
        };
        // Parameters initialise lazily, on first use: use them all now, under the lock.
        let probe = Tensor::<4>::zeros([1, 1, 28, 28], device);
        let _ = net.forward(probe, None);
        net
    }

    /// Logits `[batch, 10]` for images `[batch, 1, 28, 28]`. With `dropout` given (training),
    /// dropout masks are drawn from it; without, dropout is off (evaluation).
    pub fn forward(&self, images: Tensor<4>, dropout: Option<&mut Rng>) -> Tensor<2> {
        let mut dropout = Dropout(dropout);
        match self {
            Net::Mlp(m) => m.forward(images, &mut dropout),
            Net::Cnn(m) => m.forward(images, &mut dropout),
            Net::Lenet5(m) => m.forward(images, &mut dropout),
            Net::Convnet(m) => m.forward(images, &mut dropout),
            Net::Resnet(m) => m.forward(images, &mut dropout),
        }
    }
}

/// Dropout with masks from the trial's own generator (burn's `Dropout` draws from the backend's
/// shared generator, which parallel trials would interleave).
pub struct Dropout<'a>(Option<&'a mut Rng>);

impl Dropout<'_> {
    /// Whether the model is training (masks drawn, batch statistics used) or evaluating.
    pub fn is_training(&self) -> bool {
        self.0.is_some()
    }

    /// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)`; the
    /// identity when evaluating or when `p` is 0.
    pub fn apply<const D: usize>(&mut self, x: Tensor<D>, p: f64) -> Tensor<D> {
        let dims = x.dims();
        match self.factors(dims.iter().product(), p) {
            Some((mask, _)) => {
                let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device());
                x * mask
            }
            None => x,
        }
    }

    /// The factors [`Dropout::apply`] multiplies `count` values by (each `0` or `1 / (1 - p)`)
    /// and that scale, drawn as it draws them; `None` where it leaves the values as they are.
    fn factors(&mut self, count: usize, p: f64) -> Option<(Vec<f32>, f32)> {
        let rng = self.0.as_deref_mut().filter(|_| p > 0.0)?;
        let keep = 1.0 - p as f32;
        let scale = 1.0 / keep;
        let mut mask = vec![0.0; count];
        rng.fill_dropout_mask(&mut mask, keep, scale);
        Some((mask, scale))
    }
}

/// The output width of every model.
pub const OUTPUTS: usize = NUM_CLASSES;

#[cfg(test)]
mod tests {
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;
    use burn::tensor::activation::relu;

    /// The CNNs pool before their ReLU; that is only sound if burn's kernels give the same values
    /// and gradients both ways, ties and zeros included.
    #[test]
    fn relu_and_max_pool_commute_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        // Values on a coarse grid around zero, so windows hold ties, zeros and all-negative sets.
        let values: Vec<f32> = (0..2 * 3 * 8 * 8)
            .map(|i| ((i * 7919 % 11) as f32 - 5.0) / 2.0)
            .collect();
        let input = Tensor::<4>::from_data(TensorData::new(values, [2, 3, 8, 8]), &device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let run = |pool_first: bool| {
            let x = input.clone().require_grad();
            let y = if pool_first {
                relu(pool.forward(x.clone()))
            } else {
                pool.forward(relu(x.clone()))
            };
            let count = y.dims().iter().product::<usize>();
            let weights: Vec<f32> = (0..count).map(|i| i as f32 + 1.0).collect();
            let weights = Tensor::<4>::from_data(TensorData::new(weights, y.dims()), &device);
            let grads = (y.clone() * weights).sum().backward();
            (y.inner().into_data(), x.grad(&grads).unwrap().into_data())
        };
        let (values_before, grads_before) = run(false);
        let (values_after, grads_after) = run(true);
        assert_eq!(values_before, values_after);
        assert_eq!(grads_before, grads_after);
        let nonzero = grads_after.iter::<f32>().filter(|g| *g != 0.0).count();
        assert!(
            nonzero > 10,
            "the gradient reaches the input ({nonzero} nonzero)"
        );
    }
}
