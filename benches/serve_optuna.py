"""optuna-dashboard at scale, the reference side of benches/serve.sh.

Builds an Optuna study of N trials with 10 intermediate values each in a SQLite file, through
Optuna's own storage (study.add_trials of finished trials: the rows are synthetic, no model is
trained; the values follow the same formula of lr and dropout as benches/serve_scale.rs, and
every third trial is pruned at epoch 3 as there), then
starts the real `optuna-dashboard` on it and times, over HTTP, the study page's data
(`GET /api/studies/1?after=0`, which the page loads first and which holds every trial) the
first time and after, with its size.

  VENV/bin/python3 benches/serve_optuna.py --trials 10000 [--db FILE] [--repeats 3] [--build-only]
"""
import argparse, math, os, socket, subprocess, sys, tempfile, time, urllib.request

# As benches/serve_scale.rs: a random search over lr (log-uniform) and dropout, every third
# trial pruned at epoch 3.
PRUNED_AT = 3


def build(url, trials):
    import random
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="scale", storage=url, direction="maximize")
    rng = random.Random(0)
    distributions = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5)}
    batch = []
    for i in range(trials):
        lr = math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))
        dropout = rng.uniform(0.0, 0.5)
        quality = 0.9 - 0.08 * (math.log10(lr) + 2.5) ** 2 - 0.1 * dropout
        pruned = i % 3 == 1
        values = {}
        for epoch in range(1, (PRUNED_AT if pruned else 10) + 1):
            noise = ((i + 1) * 7919 + epoch * 104729) % 1000 / 1000
            acc = quality * (1 - math.exp(-epoch / 3)) + 0.02 * noise
            values[epoch] = min(max(acc, 0.05), 0.99)
        batch.append(create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            value=None if pruned else values[10],
            params={"lr": lr, "dropout": dropout}, distributions=distributions,
            intermediate_values=values))
        if len(batch) == 1000:
            study.add_trials(batch)
            batch = []
    if batch:
        study.add_trials(batch)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    at = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        body = response.read()
        status = response.status
    return status, len(body), time.perf_counter() - at


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--db")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    path = args.db or os.path.join(tempfile.mkdtemp(), "optuna.db")
    url = "sqlite:///" + path
    if not os.path.exists(path):
        at = time.perf_counter()
        build(url, args.trials)
        print(f"built {args.trials} synthetic trials x 10 intermediate values through Optuna's storage in {time.perf_counter() - at:.0f} s")
    if args.build_only:
        return
    port = free_port()
    dashboard = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    server = subprocess.Popen([dashboard, url, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                get(base + "/api/meta")
                break
            except OSError:
                time.sleep(0.1)
        for label in ["first"] + [f"again ({n})" for n in range(1, args.repeats + 1)]:
            status, size, seconds = get(base + "/api/studies/1?after=0")
            assert status == 200, status
            print(f"| optuna-dashboard | {args.trials} | study page data (/api/studies/1?after=0), {label} | {seconds:.3f} s | {size / 1000:.1f} KB |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
