//! Where the flex backend's time goes: one forward + backward of each layer the CNNs use, at
//! batch 64, timed in burn (flex) and, with `--python`, in PyTorch (`benches/layers_torch.py`,
//! same shapes, same loss), side by side. It names the burn operations that keep flex behind.
//!
//! `cargo bench --bench layers -- [--threads N] [--python VENV/bin/python3] [--only SUBSTRING]`
//! Nothing else should run meanwhile.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use std::collections::HashMap;
use std::time::Instant;
use sweep::model::layers::conv_block;
use sweep::model::norm::BatchNorm2d;

const BATCH: usize = 64;
const REPEATS: usize = 40;

/// One layer to time: its name, input shape, whether the input needs a gradient (not for the
/// first layer, whose input is the images), and the layer itself.
struct Case {
    name: &'static str,
    input: [usize; 4],
    input_grad: bool,
    layer: Box<dyn Fn(Tensor<4>) -> Tensor<2>>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut threads, mut python, mut only) = (2usize, None, String::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--threads N")
            }
            "--python" => python = args.next(),
            "--only" => only = args.next().expect("--only SUBSTRING"),
            _ => {} // cargo bench passes --bench
        }
    }
    let torch = python.map(|python| torch_times(&python, threads));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    println!(
        "Forward + backward of one batch of {BATCH}, {threads} threads, median of {REPEATS} (ms)\n"
    );
    println!("| layer | burn flex | PyTorch | flex / PyTorch |\n| --- | --- | --- | --- |");
    pool.install(|| {
        for case in cases().into_iter().filter(|c| c.name.contains(&only)) {
            let flex = time(&case);
            // A (sweep) row is the same layer as PyTorch's row of that name, formulated by us.
            let torch_name = case.name.trim_end_matches(" (sweep)");
            let (torch_ms, ratio) = match torch.as_ref().and_then(|t| t.get(torch_name)) {
                Some(&ms) => (format!("{ms:.2}"), format!("{:.2}x", flex / ms)),
                None => ("-".into(), "-".into()),
            };
            println!("| {} | {flex:.2} | {torch_ms} | {ratio} |", case.name);
        }
    });
}

/// One way of computing a convolution followed by a 2x2 max pool.
type ConvPool = fn(&Conv2d, &MaxPool2d, Tensor<4>) -> Tensor<4>;

fn cases() -> Vec<Case> {
    let device = Device::flex().autodiff();
    device.seed(7);
    let conv = |name, channels: [usize; 2], kernel, pad, size, input_grad| {
        let layer = Conv2dConfig::new(channels, [kernel, kernel])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .init(&device);
        Case {
            name,
            input: [BATCH, channels[0], size, size],
            input_grad,
            layer: Box::new(move |x| layer.forward(x).flatten(1, 3)),
        }
    };
    let pool = |name, channels, size| {
        let layer = MaxPool2dConfig::new([2, 2]).init();
        Case {
            name,
            input: [BATCH, channels, size, size],
            input_grad: true,
            layer: Box::new(move |x| layer.forward(x).flatten(1, 3)),
        }
    };
    // A convolution followed by a 2x2 max pool, computed by `forward`.
    let pooled = |name, channels: [usize; 2], kernel, pad, size, forward: ConvPool| {
        let layer = Conv2dConfig::new(channels, [kernel, kernel])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .init(&device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        Case {
            name,
            input: [BATCH, channels[0], size, size],
            // A first layer's input is the images, which need no gradient.
            input_grad: channels[0] > 1,
            layer: Box::new(move |x| forward(&layer, &pool, x).flatten(1, 3)),
        }
    };
    let norm = |name, channels, size| {
        let layer = BatchNorm2d::new(channels, &device);
        Case {
            name,
            input: [BATCH, channels, size, size],
            input_grad: true,
            layer: Box::new(move |x| layer.forward(x, true).flatten(1, 3)),
        }
    };
    let norm_relu = |name, channels, size| {
        let layer = BatchNorm2d::new(channels, &device);
        Case {
            name,
            input: [BATCH, channels, size, size],
            input_grad: true,
            layer: Box::new(move |x| layer.forward_relu(x, true).flatten(1, 3)),
        }
    };
    let norm_pool = |name, channels, size| {
        let layer = BatchNorm2d::new(channels, &device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        Case {
            name,
            input: [BATCH, channels, size, size],
            input_grad: true,
            layer: Box::new(move |x| layer.forward_pooled(x, true, &pool).flatten(1, 3)),
        }
    };
    // sweep's 3x3 convolutions without a pool (a first layer's input needs no gradient).
    let unpooled = |name, channels: [usize; 2], size| {
        let conv = Conv2dConfig::new(channels, [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        Case {
            name,
            input: [BATCH, channels[0], size, size],
            input_grad: channels[0] > 1,
            layer: Box::new(move |x| sweep::model::layers::conv2d(&conv, x).flatten(1, 3)),
        }
    };
    // Convolution, batch norm, ReLU and 2x2 max pool, as sweep's CNN blocks with batch_norm.
    let normed = |name, channels: [usize; 2], size| {
        let conv = Conv2dConfig::new(channels, [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let norm = BatchNorm2d::new(channels[1], &device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        Case {
            name,
            input: [BATCH, channels[0], size, size],
            input_grad: channels[0] > 1,
            layer: Box::new(move |x| conv_block(&conv, Some(&norm), &pool, x, true).flatten(1, 3)),
        }
    };
    // A resnet convolution (no bias, padding 1 for 3x3), as burn computes it or as sweep's
    // resnet does (`sweep::model::layers::conv2d`).
    let resnet = |name, channels: [usize; 2], kernel: usize, stride: usize, size, ours: bool| {
        let pad = kernel / 2;
        let conv = Conv2dConfig::new(channels, [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(&device);
        Case {
            name,
            input: [BATCH, channels[0], size, size],
            input_grad: true,
            layer: Box::new(move |x| {
                let y = if ours {
                    sweep::model::layers::conv2d(&conv, x)
                } else {
                    conv.forward(x)
                };
                y.flatten(1, 3)
            }),
        }
    };
    let burn: ConvPool = |conv, pool, x| pool.forward(conv.forward(x));
    let fused: ConvPool = sweep::model::layers::conv2d_max_pool;
    let fc1 = LinearConfig::new(64 * 7 * 7, 256).init(&device);
    vec![
        conv("cnn conv1 1->32 3x3 28x28", [1, 32], 3, 1, 28, false),
        pooled("cnn conv1 + pool", [1, 32], 3, 1, 28, burn),
        pooled("cnn conv1 + pool (sweep)", [1, 32], 3, 1, 28, fused),
        conv("cnn conv2 32->64 3x3 14x14", [32, 64], 3, 1, 14, true),
        pooled("cnn conv2 + pool", [32, 64], 3, 1, 14, burn),
        pooled("cnn conv2 + pool (sweep)", [32, 64], 3, 1, 14, fused),
        conv("lenet5 conv1 1->6 5x5 28x28", [1, 6], 5, 2, 28, false),
        pooled("lenet5 conv1 + pool", [1, 6], 5, 2, 28, burn),
        pooled("lenet5 conv1 + pool (sweep)", [1, 6], 5, 2, 28, fused),
        conv("lenet5 conv2 6->16 5x5 14x14", [6, 16], 5, 0, 14, true),
        pooled("lenet5 conv2 + pool", [6, 16], 5, 0, 14, burn),
        pooled("lenet5 conv2 + pool (sweep)", [6, 16], 5, 0, 14, fused),
        conv("convnet conv1 1->16 3x3 28x28", [1, 16], 3, 1, 28, false),
        pooled("convnet conv1 + pool", [1, 16], 3, 1, 28, burn),
        pooled("convnet conv1 + pool (sweep)", [1, 16], 3, 1, 28, fused),
        conv("convnet conv2 16->32 3x3 14x14", [16, 32], 3, 1, 14, true),
        pooled("convnet conv2 + pool", [16, 32], 3, 1, 14, burn),
        pooled("convnet conv2 + pool (sweep)", [16, 32], 3, 1, 14, fused),
        normed("cnn conv1 + bn + relu + pool (sweep)", [1, 32], 28),
        normed("cnn conv2 + bn + relu + pool (sweep)", [32, 64], 14),
        unpooled("cnn conv1 1->32 3x3 28x28 (sweep)", [1, 32], 28),
        unpooled("cnn conv2 32->64 3x3 14x14 (sweep)", [32, 64], 14),
        norm_pool("batch norm + pool 32x28x28 (sweep)", 32, 28),
        norm_pool("batch norm + pool 64x14x14 (sweep)", 64, 14),
        resnet("resnet conv 16->16 3x3 28x28", [16, 16], 3, 1, 28, false),
        resnet(
            "resnet conv 16->16 3x3 28x28 (sweep)",
            [16, 16],
            3,
            1,
            28,
            true,
        ),
        resnet("resnet conv 32->32 3x3 14x14", [32, 32], 3, 1, 14, false),
        resnet(
            "resnet conv 32->32 3x3 14x14 (sweep)",
            [32, 32],
            3,
            1,
            14,
            true,
        ),
        resnet("resnet conv 64->64 3x3 7x7", [64, 64], 3, 1, 7, false),
        resnet(
            "resnet conv 64->64 3x3 7x7 (sweep)",
            [64, 64],
            3,
            1,
            7,
            true,
        ),
        resnet(
            "resnet conv 16->32 3x3 stride 2 28x28",
            [16, 32],
            3,
            2,
            28,
            false,
        ),
        resnet(
            "resnet conv 16->32 3x3 stride 2 28x28 (sweep)",
            [16, 32],
            3,
            2,
            28,
            true,
        ),
        resnet(
            "resnet conv 32->64 3x3 stride 2 14x14",
            [32, 64],
            3,
            2,
            14,
            false,
        ),
        resnet(
            "resnet conv 32->64 3x3 stride 2 14x14 (sweep)",
            [32, 64],
            3,
            2,
            14,
            true,
        ),
        resnet(
            "resnet shortcut 16->32 1x1 stride 2 28x28",
            [16, 32],
            1,
            2,
            28,
            false,
        ),
        resnet(
            "resnet shortcut 16->32 1x1 stride 2 28x28 (sweep)",
            [16, 32],
            1,
            2,
            28,
            true,
        ),
        resnet(
            "resnet shortcut 32->64 1x1 stride 2 14x14",
            [32, 64],
            1,
            2,
            14,
            false,
        ),
        resnet(
            "resnet shortcut 32->64 1x1 stride 2 14x14 (sweep)",
            [32, 64],
            1,
            2,
            14,
            true,
        ),
        norm("batch norm 16x28x28 (sweep)", 16, 28),
        norm_relu("batch norm + relu 16x28x28 (sweep)", 16, 28),
        norm("batch norm 32x28x28", 32, 28),
        norm("batch norm 64x14x14", 64, 14),
        pool("max pool 2x2 32x28x28", 32, 28),
        pool("max pool 2x2 64x14x14", 64, 14),
        Case {
            name: "relu 32x28x28",
            input: [BATCH, 32, 28, 28],
            input_grad: true,
            layer: Box::new(|x| relu(x).flatten(1, 3)),
        },
        Case {
            name: "cnn fc1 3136->256",
            input: [BATCH, 64, 7, 7],
            input_grad: true,
            layer: Box::new(move |x| fc1.forward(x.flatten(1, 3))),
        },
    ]
}

/// Median milliseconds of forward, loss `sum(y * y)` and backward, with the input's gradient
/// taken out of the gradients. Each step starts from fresh gradients, as PyTorch's side does
/// after zeroing. The weights' gradients are computed by `backward()` itself (flex runs eagerly)
/// and freed with the container after the step.
fn time(case: &Case) -> f64 {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random(case.input, Distribution::Normal(0.0, 1.0), &device);
    let step = || {
        let x = if case.input_grad {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        let y = (case.layer)(x.clone());
        let loss = (y.clone() * y).sum();
        let grads = loss.backward();
        if case.input_grad {
            let grad = x.grad(&grads).expect("the input requires a gradient");
            std::hint::black_box(grad);
        }
        std::hint::black_box(grads);
    };
    step();
    let mut samples: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[REPEATS / 2]
}

/// Runs `layers_torch.py` with `python` and reads its `name<TAB>milliseconds` lines.
fn torch_times(python: &str, threads: usize) -> HashMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/layers_torch.py");
    let output = std::process::Command::new(python)
        .args([
            script,
            "--threads",
            &threads.to_string(),
            "--batch",
            &BATCH.to_string(),
        ])
        .args(["--repeats", &REPEATS.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "layers_torch.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, ms) = line.split_once('\t')?;
            Some((name.to_string(), ms.parse().ok()?))
        })
        .collect()
}
