"""Ray Tune's PopulationBasedTraining on the space of benches/pbt_bench.py: torch_ref.py's CNN,
SGD with momentum 0.9, lr log-uniform 1e-3..0.3 and weight decay log-uniform 1e-6..1e-3 explored,
batch 64, EPOCHS epochs on the first LIMIT training images split as sweep splits them with the
same seed, members tested at the end on the first TEST_LIMIT test images. Synchronous PBT
(`synch=True`, as sweep's members wait for the whole population at each step), a perturbation
every INTERVAL epochs, quantile 0.25, resample probability 0.25, factors 1.2 and 0.8; two
members at a time, one torch thread each; a checkpoint (model and optimizer) after every epoch,
which is what Ray's PBT copies. Prints one JSON line: wall seconds and, per member, its final
validation and test accuracy and the epochs it trained."""
import argparse, json, os, random, sys, tempfile, time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--ref", required=True, help="directory of torch_ref.py")
p.add_argument("--population", type=int, default=8)
p.add_argument("--epochs", type=int, default=12)
p.add_argument("--interval", type=int, default=2)
p.add_argument("--limit", type=int, default=6000)
p.add_argument("--split", type=float, default=0.8)
p.add_argument("--test-limit", type=int, default=2000)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, a.ref)
sys.path.insert(0, HERE)
import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import PopulationBasedTraining  # noqa: E402


def trainable(config):
    sys.path.insert(0, a.ref)
    sys.path.insert(0, HERE)
    import torch_ref
    from sweep_data import fashion, sweep_split

    torch.set_num_threads(1)
    xs, ys, xt, yt = fashion(a.data, torch_ref.read_idx, a.limit, a.test_limit)
    train_idx, val_idx = sweep_split(len(xs), a.split, a.seed)
    xtr, ytr, xva, yva = xs[train_idx], ys[train_idx], xs[val_idx], ys[val_idx]
    torch.manual_seed(a.seed)
    model = torch_ref.Cnn(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9,
                          weight_decay=config["weight_decay"])
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["epoch"]
    for group in opt.param_groups:
        group["lr"], group["weight_decay"] = config["lr"], config["weight_decay"]
    for epoch in range(start + 1, a.epochs + 1):
        generator = torch.Generator().manual_seed(a.seed * 1000 + epoch)
        order = torch.randperm(len(xtr), generator=generator)
        model.train()
        for i in range(0, len(xtr), 64):
            idx = order[i : i + 64]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        metrics = {"val_acc": torch_ref.evaluate(model, xva, yva, 1000), "epoch": epoch}
        if epoch == a.epochs:
            metrics["test_acc"] = torch_ref.evaluate(model, xt, yt, 1000)
        with tempfile.TemporaryDirectory() as d:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch}, os.path.join(d, "state.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


random.seed(a.seed)
np.random.seed(a.seed)
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
space = {"lr": tune.loguniform(1e-3, 0.3), "weight_decay": tune.loguniform(1e-6, 1e-3)}
scheduler = PopulationBasedTraining(
    time_attr="training_iteration", perturbation_interval=a.interval,
    hyperparam_mutations=space, quantile_fraction=0.25, resample_probability=0.25,
    perturbation_factors=(1.2, 0.8), synch=True)
with tempfile.TemporaryDirectory() as storage:
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=a.population,
                                    metric="val_acc", mode="max", reuse_actors=False),
        run_config=tune.RunConfig(storage_path=storage, name="pbt", verbose=0,
                                  stop={"training_iteration": a.epochs}),
    )
    results = tuner.fit()
members = [{"val_acc": r.metrics.get("val_acc"), "test_acc": r.metrics.get("test_acc"),
            "epochs": r.metrics.get("epoch"), "error": str(r.error) if r.error else None}
           for r in results]
print(json.dumps({"wall_s": round(time.perf_counter() - T0, 2), "members": members,
                  "ray": ray.__version__, "torch": torch.__version__}), flush=True)
