"""What the benches' Python runners share with sweep: its generator and train/validation split
(so they validate on the images sweep validates on with the same seed), and the Fashion-MNIST
IDX files as tensors scaled to [0, 1], as sweep trains on them by default."""
import torch

M64 = (1 << 64) - 1


def splitmix(state):
    """sweep's generator (src/rng.rs): the next state and 64 random bits."""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def sweep_split(n, fraction, seed):
    """The train and validation indices sweep uses for this seed (src/data Split::new; pinned by
    its test split_is_the_same_in_every_version), so both runners validate on the same images."""
    _, offset = splitmix(seed)
    state = offset ^ 0xD6E8FEB86659FD93  # the split stream (1) times the stream constant
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        state, bits = splitmix(state)
        j = (bits * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    cut = int(n * fraction)
    return torch.tensor(order[:cut]), torch.tensor(order[cut:])


def fashion(data, read_idx, limit, test_limit=None):
    """The first `limit` training images and labels, and the first `test_limit` test ones (all
    when None): images [N, 1, 28, 28] in [0, 1], labels as longs."""
    def load(name):
        return torch.from_numpy(read_idx(f"{data}/{name}").copy())

    xs = load("train-images-idx3-ubyte.gz").float().div_(255).unsqueeze(1)[:limit]
    ys = load("train-labels-idx1-ubyte.gz").long()[:limit]
    xt = load("t10k-images-idx3-ubyte.gz").float().div_(255).unsqueeze(1)[:test_limit]
    yt = load("t10k-labels-idx1-ubyte.gz").long()[:test_limit]
    return xs, ys, xt, yt
