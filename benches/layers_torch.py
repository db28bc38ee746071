"""PyTorch side of benches/layers.rs: forward + backward of each CNN layer at the same shapes, the
same loss sum(y * y), median milliseconds. Prints `name<TAB>ms` lines."""
import argparse, time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--repeats", type=int, default=40)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(7)
B = a.batch


def conv(cin, cout, k, pad):
    return torch.nn.Conv2d(cin, cout, k, padding=pad)


CONVS = []


def resnet(cin, cout, k, stride):
    """A resnet convolution: no bias (batch norm follows), padding 1 for 3x3."""
    return torch.nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


def conv_pool(cin, cout, k, pad):
    c = conv(cin, cout, k, pad)
    CONVS.append(c)
    return lambda x: F.max_pool2d(c(x), 2)


fc1 = torch.nn.Linear(64 * 7 * 7, 256)
BN16 = torch.nn.BatchNorm2d(16)
cases = [
    ("cnn conv1 1->32 3x3 28x28", (B, 1, 28, 28), False, conv(1, 32, 3, 1)),
    ("cnn conv1 + pool", (B, 1, 28, 28), False, conv_pool(1, 32, 3, 1)),
    ("cnn conv2 32->64 3x3 14x14", (B, 32, 14, 14), True, conv(32, 64, 3, 1)),
    ("cnn conv2 + pool", (B, 32, 14, 14), True, conv_pool(32, 64, 3, 1)),
    ("lenet5 conv1 1->6 5x5 28x28", (B, 1, 28, 28), False, conv(1, 6, 5, 2)),
    ("lenet5 conv1 + pool", (B, 1, 28, 28), False, conv_pool(1, 6, 5, 2)),
    ("lenet5 conv2 6->16 5x5 14x14", (B, 6, 14, 14), True, conv(6, 16, 5, 0)),
    ("lenet5 conv2 + pool", (B, 6, 14, 14), True, conv_pool(6, 16, 5, 0)),
    ("convnet conv1 1->16 3x3 28x28", (B, 1, 28, 28), False, conv(1, 16, 3, 1)),
    ("convnet conv1 + pool", (B, 1, 28, 28), False, conv_pool(1, 16, 3, 1)),
    ("convnet conv2 16->32 3x3 14x14", (B, 16, 14, 14), True, conv(16, 32, 3, 1)),
    ("convnet conv2 + pool", (B, 16, 14, 14), True, conv_pool(16, 32, 3, 1)),
    ("resnet conv 16->16 3x3 28x28", (B, 16, 28, 28), True, resnet(16, 16, 3, 1)),
    ("resnet conv 32->32 3x3 14x14", (B, 32, 14, 14), True, resnet(32, 32, 3, 1)),
    ("resnet conv 64->64 3x3 7x7", (B, 64, 7, 7), True, resnet(64, 64, 3, 1)),
    ("resnet conv 16->32 3x3 stride 2 28x28", (B, 16, 28, 28), True, resnet(16, 32, 3, 2)),
    ("resnet conv 32->64 3x3 stride 2 14x14", (B, 32, 14, 14), True, resnet(32, 64, 3, 2)),
    ("resnet shortcut 16->32 1x1 stride 2 28x28", (B, 16, 28, 28), True, resnet(16, 32, 1, 2)),
    ("resnet shortcut 32->64 1x1 stride 2 14x14", (B, 32, 14, 14), True, resnet(32, 64, 1, 2)),
    ("batch norm 16x28x28", (B, 16, 28, 28), True, torch.nn.BatchNorm2d(16)),
    ("batch norm + relu 16x28x28", (B, 16, 28, 28), True, lambda x: F.relu(BN16(x))),
    ("max pool 2x2 32x28x28", (B, 32, 28, 28), True, lambda x: F.max_pool2d(x, 2)),
    ("max pool 2x2 64x14x14", (B, 64, 14, 14), True, lambda x: F.max_pool2d(x, 2)),
    ("relu 32x28x28", (B, 32, 28, 28), True, F.relu),
    ("cnn fc1 3136->256", (B, 64, 7, 7), True, lambda x: fc1(x.flatten(1))),
]
modules = [m for _, _, _, m in cases if isinstance(m, torch.nn.Module)] + CONVS + [fc1, BN16]
params = [p for m in modules for p in m.parameters()]
for name, shape, input_grad, layer in cases:
    x = torch.randn(shape, requires_grad=input_grad)

    def step():
        # Fresh gradients every repeat, as an optimizer's zero_grad(set_to_none=True): without
        # it backward() adds into .grad on every repeat, work that burn's side never does.
        x.grad = None
        for p in params:
            p.grad = None
        y = layer(x)
        (y * y).sum().backward()

    step()
    samples = []
    for _ in range(a.repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    print(f"{name}\t{samples[len(samples) // 2]:.3f}", flush=True)
