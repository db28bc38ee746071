"""One configuration trained in PyTorch the way sweep trains it: torch_ref.py's models and loop,
plus sweep's training ingredients with PyTorch's own tools (torchvision-style random flip and
padded crop per image, LambdaLR for warm-up then cosine / StepLR / OneCycleLR per step,
CrossEntropyLoss(label_smoothing)). Prints one JSON line with the final test accuracy.

Usage: python3 parity_torch.py --data DIR --ref DIR --arch cnn --epochs 5 [--augment flip+crop]
       [--schedule cosine --warmup 1] [--label-smoothing 0.1] [--batch-norm] [--seed 1]
--batch-norm puts BatchNorm2d after the CNN's convolutions (which then have no bias, as in sweep);
--arch resnet is sweep's small ResNet (3x3 stem, stages of basic blocks, global average pooling).
"""
import argparse, json, math, sys, time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--ref", required=True)
p.add_argument("--arch", default="cnn")
p.add_argument("--opt", default="adam", choices=["adam", "sgdm"])
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--dropout", type=float, default=0.2)
p.add_argument("--split", type=float, default=0.9)
p.add_argument("--augment", default="none", choices=["none", "flip", "crop", "flip+crop"])
p.add_argument("--crop-padding", type=int, default=2)
p.add_argument("--schedule", default="constant", choices=["constant", "cosine", "step", "onecycle"])
p.add_argument("--warmup", type=int, default=0)
p.add_argument("--step-every", type=int, default=5)
p.add_argument("--step-gamma", type=float, default=0.5)
p.add_argument("--label-smoothing", type=float, default=0.0)
p.add_argument("--batch-norm", action="store_true")
p.add_argument("--resnet-channels", default="16,32,64")
p.add_argument("--resnet-blocks", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
if a.schedule == "onecycle" and a.warmup:
    sys.exit("onecycle with a warm-up has no PyTorch scheduler to compare with")
sys.path.insert(0, a.ref)
import torch_ref  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
load = lambda name: torch.from_numpy(torch_ref.read_idx(f"{a.data}/{name}").copy())
xs = load("train-images-idx3-ubyte.gz").float().div_(255).unsqueeze(1)
ys = load("train-labels-idx1-ubyte.gz").long()
xt = load("t10k-images-idx3-ubyte.gz").float().div_(255).unsqueeze(1)
yt = load("t10k-labels-idx1-ubyte.gz").long()
perm = torch.randperm(len(xs), generator=torch.Generator().manual_seed(a.seed))
n_train = int(len(xs) * a.split)
xtr, ytr, xva, yva = xs[perm[:n_train]], ys[perm[:n_train]], xs[perm[n_train:]], ys[perm[n_train:]]


class CnnBatchNorm(torch.nn.Module):
    """torch_ref's seed-002 CNN with BatchNorm2d after each convolution, before the ReLU."""

    def __init__(self, dropout):
        super().__init__()
        nn = torch.nn
        self.c1, self.c2 = nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.b1, self.b2 = nn.BatchNorm2d(32), nn.BatchNorm2d(64)
        self.f1, self.f2, self.f3 = nn.Linear(64 * 7 * 7, 256), nn.Linear(256, 128), nn.Linear(128, 10)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        x = self.drop(F.relu(self.f1(x.flatten(1))))
        x = self.drop(F.relu(self.f2(x)))
        return self.f3(x)


class Block(torch.nn.Module):
    def __init__(self, inputs, outputs, stride):
        super().__init__()
        nn = torch.nn
        self.c1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(outputs)
        self.c2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(outputs)
        self.shortcut = None
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        out = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class Resnet(torch.nn.Module):
    """sweep's arch = "resnet": stem, stages (the later ones halving the image), average pool."""

    def __init__(self, dropout, channels, blocks):
        super().__init__()
        nn = torch.nn
        self.stem, self.stem_bn = nn.Conv2d(1, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0])
        layers, inputs = [], channels[0]
        for stage, width in enumerate(channels):
            for block in range(blocks):
                layers.append(Block(inputs, width, 2 if stage > 0 and block == 0 else 1))
                inputs = width
        self.blocks = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(inputs, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem_bn(self.stem(x))))
        return self.fc(self.drop(x.mean((2, 3))))


arch = {"convnet": "seed000"}.get(a.arch, a.arch)
if a.arch == "resnet":
    model = Resnet(a.dropout, [int(c) for c in a.resnet_channels.split(",")], a.resnet_blocks)
elif a.batch_norm:
    if a.arch != "cnn":
        sys.exit("--batch-norm is implemented here for --arch cnn")
    model = CnnBatchNorm(a.dropout)
else:
    model = torch_ref.ARCHS[arch](a.dropout)
opt = (torch.optim.Adam(model.parameters(), lr=a.lr) if a.opt == "adam"
       else torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9))
batches = math.ceil(n_train / a.batch)
total, warm = a.epochs * batches, a.warmup * batches


def after_warmup(t):
    """The schedule's factor of lr at step t after the warm-up."""
    span = max(total - warm, 1)
    if a.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t / span))
    if a.schedule == "step":
        return a.step_gamma ** ((t // batches) // a.step_every)
    return 1.0


if a.schedule == "onecycle" and not warm:
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total,
                                                cycle_momentum=False)
else:
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else after_warmup(s - warm))
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)


def augment(x):
    """torchvision's RandomHorizontalFlip and RandomCrop(28, padding), per image."""
    if a.augment in ("flip", "flip+crop"):
        flip = torch.rand(len(x)) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if a.augment in ("crop", "flip+crop"):
        pad = a.crop_padding
        padded = F.pad(x, (pad, pad, pad, pad))
        i = torch.randint(0, 2 * pad + 1, (len(x),))
        j = torch.randint(0, 2 * pad + 1, (len(x),))
        rows = (i[:, None] + torch.arange(28)[None, :])  # n x 28
        cols = (j[:, None] + torch.arange(28)[None, :])
        n = torch.arange(len(x))[:, None, None]
        x = padded[n, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    return x


t0 = time.perf_counter()
epochs = []
for epoch in range(a.epochs):
    t = time.perf_counter()
    order = torch.randperm(n_train)
    for k in range(0, n_train, a.batch):
        idx = order[k : k + a.batch]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(augment(xtr[idx])), ytr[idx]).backward()
        opt.step()
        sched.step()
    epochs.append({"epoch": epoch + 1, "train_s": round(time.perf_counter() - t, 2),
                   "val_acc": round(torch_ref.evaluate(model, xva, yva, 1000), 4)})
print(json.dumps({"arch": a.arch, "batch_norm": a.batch_norm, "augment": a.augment, "schedule": a.schedule, "warmup": a.warmup,
                  "label_smoothing": a.label_smoothing, "seed": a.seed, "epochs": epochs,
                  "test_acc": round(torch_ref.evaluate(model, xt, yt, 1000), 4),
                  "torch": torch.__version__}), flush=True)
