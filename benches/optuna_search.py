"""The search of experiments/search.toml run by Optuna in one Python process: TPESampler with
SuccessiveHalvingPruner (rungs at 1, 3, 9 epochs, reduction factor 3), SQLite storage,
n_jobs=2, one torch thread per job; --startup sets TPESampler's n_startup_trials. With --objectives val_acc,params: a multi-objective study
(best validation accuracy, maximised; trainable parameters, minimised) with --sampler tpe or
nsga2 at Optuna's defaults and no pruner (Optuna cannot prune several objectives). Training is torch_ref.py's (same models, same loop). Each
trial reports its validation accuracy after every epoch (the pruner is asked after every epoch
but the last) and returns the best one, which is what sweep's TPE optimises; a trial that
trains every epoch is then tested on the 10,000 test images. Its training and validation images are the ones sweep uses with the same seed. Prints
one JSON line: wall seconds and, per trial, its state, value, test accuracy
and when it finished (seconds after the process started)."""
import argparse, json, os, sys, time

T0 = time.perf_counter()

import optuna  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--ref", required=True, help="directory of torch_ref.py")
p.add_argument("--storage", required=True, help="SQLite file (replaced)")
p.add_argument("--trials", type=int, default=30)
p.add_argument("--epochs", type=int, default=9)
p.add_argument("--limit", type=int, default=10000)
p.add_argument("--split", type=float, default=0.5)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--objectives", default="val_acc", help="val_acc, or val_acc,params")
p.add_argument("--sampler", default="tpe", choices=["tpe", "nsga2"])
p.add_argument("--no-test", action="store_true", help="skip the test pass of finished trials")
p.add_argument("--startup", type=int, default=10, help="TPESampler's n_startup_trials (default 10)")
a = p.parse_args()
MULTI = a.objectives == "val_acc,params"
sys.path.insert(0, a.ref)
import torch_ref  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_data import fashion, sweep_split  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(a.seed)
xs, ys, xt, yt = fashion(a.data, torch_ref.read_idx, a.limit)
train_idx, val_idx = sweep_split(len(xs), a.split, a.seed)
n_train = len(train_idx)
xtr, ytr, xva, yva = xs[train_idx], ys[train_idx], xs[val_idx], ys[val_idx]
ARCHS = {"mlp": "mlp", "cnn": "cnn", "lenet5": "lenet5", "convnet": "seed000"}
finished = {}


def objective(trial):
    arch = trial.suggest_categorical("arch", list(ARCHS))
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    batch = trial.suggest_categorical("batch_size", [32, 64, 128])
    model = torch_ref.ARCHS[ARCHS[arch]](dropout)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    best = 0.0
    try:
        for epoch in range(1, a.epochs + 1):
            order = torch.randperm(n_train)
            for i in range(0, n_train, batch):
                idx = order[i : i + batch]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
            acc = torch_ref.evaluate(model, xva, yva, batch)
            best = max(best, acc)
            if not MULTI:  # Optuna refuses intermediate values with several objectives
                trial.report(acc, epoch)
            # The usual Optuna objective: the pruner decides between epochs, and a trial that
            # trained the last one returns its value (asking then would mark it pruned).
            if not MULTI and epoch < a.epochs and trial.should_prune():
                raise optuna.TrialPruned()
        if not a.no_test:
            trial.set_user_attr("test_acc", torch_ref.evaluate(model, xt, yt, 1000))
        if MULTI:
            size = sum(p.numel() for p in model.parameters() if p.requires_grad)
            trial.set_user_attr("params", size)
            return best, size
        return best
    finally:
        finished[trial.number] = time.perf_counter() - T0


optuna.logging.set_verbosity(optuna.logging.WARNING)
if os.path.exists(a.storage):
    os.remove(a.storage)
if MULTI:
    sampler = (optuna.samplers.NSGAIISampler(seed=a.seed) if a.sampler == "nsga2"
               else optuna.samplers.TPESampler(seed=a.seed))
    study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"],
                                storage=f"sqlite:///{a.storage}")
else:
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=a.seed, n_startup_trials=a.startup),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        direction="maximize",
        storage=f"sqlite:///{a.storage}",
    )
study.optimize(objective, n_trials=a.trials, n_jobs=2)
trials = [
    {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": (t.values[0] if MULTI and t.values else t.value) if t.values is not None
        else (max(t.intermediate_values.values()) if t.intermediate_values else None),
        "size": t.user_attrs.get("params"),
        "epochs": (a.epochs if t.state.name == "COMPLETE" else 0) if MULTI
        else len(t.intermediate_values),
        "test_acc": t.user_attrs.get("test_acc"),
        "finished_s": round(finished.get(t.number, float("nan")), 2),
        "params": t.params,
    }
    for t in study.trials
]
print(json.dumps({"wall_s": round(time.perf_counter() - T0, 2), "trials": trials,
                  "optuna": optuna.__version__, "torch": torch.__version__}), flush=True)
