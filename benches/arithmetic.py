"""The arithmetic of one training epoch per architecture, and the least time it can take at this
machine's measured peak (benches/peak-results.txt, PyTorch's MKL sgemm): the floor a training
epoch is held against. Counts the multiply-adds of the convolutions and linear layers (2 FLOP
each): forward, the weights' gradient (as much again) and the inputs' gradient (as much again,
except for the first layer, whose input is the images). Elementwise work (activations, pooling,
batch norm, the optimizer) is left out, so the floor is below what any program reaches.

  python3 benches/arithmetic.py [--images 54000] [--peak benches/peak-results.txt]
"""
import argparse, json, os

HERE = os.path.dirname(os.path.abspath(__file__))


def conv(cin, cout, k, size_out):
    return cin * cout * k * k * size_out * size_out


def linear(a, b):
    return a * b


def layers(arch):
    """Multiply-adds per image of each convolution and linear layer, in order."""
    if arch == "mlp":
        widths = [784, 256, 128, 64, 10]
        return [linear(a, b) for a, b in zip(widths, widths[1:])]
    if arch == "cnn":
        return [conv(1, 32, 3, 28), conv(32, 64, 3, 14), linear(3136, 256), linear(256, 128), linear(128, 10)]
    if arch == "lenet5":
        return [conv(1, 6, 5, 28), conv(6, 16, 5, 10), linear(400, 120), linear(120, 84), linear(84, 10)]
    if arch == "convnet":
        return [conv(1, 16, 3, 28), conv(16, 32, 3, 14), linear(1568, 10)]
    if arch == "resnet":
        out = [conv(1, 16, 3, 28)]
        size, width = 28, 16
        for stage, channels in enumerate([16, 32, 64]):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                size_out = size // stride
                out.append(conv(width, channels, 3, size_out))
                out.append(conv(channels, channels, 3, size_out))
                if stride != 1 or width != channels:
                    out.append(conv(width, channels, 1, size_out))
                size, width = size_out, channels
        return out + [linear(64, 10)]
    raise ValueError(arch)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=54000)
    p.add_argument("--peak", default=os.path.join(HERE, "peak-results.txt"))
    a = p.parse_args()
    peak = json.loads(open(a.peak).read().strip().splitlines()[-1])
    rates = {t: peak[f"threads_{t}"]["median_gflops"] for t in (1, 2)}
    print(f"peak (median sgemm): {rates[1]} GFLOP/s on 1 thread, {rates[2]} on 2")
    print("| architecture | GFLOP per training epoch | floor at 2 threads | 1.5x the floor |")
    print("| --- | --- | --- | --- |")
    for arch in ["mlp", "cnn", "lenet5", "convnet", "resnet"]:
        macs = layers(arch)
        per_image = 2 * (3 * sum(macs) - macs[0])
        gflop = per_image * a.images / 1e9
        floor = gflop / rates[2]
        print(f"| {arch} | {gflop:,.1f} | {floor:.2f} s | {1.5 * floor:.2f} s |")


if __name__ == "__main__":
    main()
