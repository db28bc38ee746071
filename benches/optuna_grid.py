"""The 12-trial grid of benches/bench.py run by Optuna in one Python process: GridSampler, SQLite
storage, n_jobs=2 -- the strongest peer for a sweep of small models. Training is torch_ref.py's
(same models, same loop). One PyTorch thread per job, as sweep's `--jobs 2 --threads 1`: two jobs
of the default two threads each would oversubscribe the 2 cores. Prints one JSON line: wall
seconds and trials finished."""
import argparse, json, os, sys, time

import optuna
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--ref", required=True, help="directory of torch_ref.py")
p.add_argument("--storage", required=True, help="SQLite file")
p.add_argument("--limit", type=int, default=10000)
p.add_argument("--split", type=float, default=0.9)
a = p.parse_args()
sys.path.insert(0, a.ref)
import torch_ref  # noqa: E402

torch.set_num_threads(1)

t0 = time.perf_counter()
xs = torch.from_numpy(torch_ref.read_idx(f"{a.data}/train-images-idx3-ubyte.gz").copy()).float().div_(255).unsqueeze(1)
ys = torch.from_numpy(torch_ref.read_idx(f"{a.data}/train-labels-idx1-ubyte.gz").copy()).long()
xs, ys = xs[: a.limit], ys[: a.limit]
perm = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))
n_train = int(len(xs) * a.split)
xtr, ytr, xva, yva = xs[perm[:n_train]], ys[perm[:n_train]], xs[perm[n_train:]], ys[perm[n_train:]]


def objective(trial):
    arch = trial.suggest_categorical("arch", ["mlp", "cnn", "lenet5"])
    opt_name = trial.suggest_categorical("opt", ["adam", "sgdm"])
    lr = trial.suggest_categorical("lr", [0.001, 0.01])
    model = torch_ref.ARCHS[arch](0.2)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if opt_name == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    order = torch.randperm(n_train)
    for i in range(0, n_train, 64):
        idx = order[i : i + 64]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
    return torch_ref.evaluate(model, xva, yva, 64)


optuna.logging.set_verbosity(optuna.logging.WARNING)
space = {"arch": ["mlp", "cnn", "lenet5"], "opt": ["adam", "sgdm"], "lr": [0.001, 0.01]}
if os.path.exists(a.storage):
    os.remove(a.storage)
study = optuna.create_study(sampler=optuna.samplers.GridSampler(space), direction="maximize",
                            storage=f"sqlite:///{a.storage}")
study.optimize(objective, n_trials=12, n_jobs=2)
print(json.dumps({"wall_s": round(time.perf_counter() - t0, 2), "trials": len(study.trials),
                  "best": study.best_value, "optuna": optuna.__version__}), flush=True)
