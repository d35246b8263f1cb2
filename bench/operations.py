#!/usr/bin/env python3
"""Operations benchmarks for deepvue-rotator (see BENCHMARKS.md, "Operations").

- Textfile: a one-shot no-op `rotate` (1 token, file store) with and without
  `--metrics-file`, alternated run by run; the median difference is what the textfile costs.
- `/metrics` with 1,000 tokens: a daemon on 1,000 file stores (every token minted once, then
  fresh); 200 GETs in each format (text 0.0.4, and OpenMetrics by `Accept`), median and p95.
- Audit: a forced pass over 1,000 tokens (1,000 mints on the simulator, concurrency 8) with and
  without `[audit] file`, alternated; medians and the relative difference.

Usage: bench/operations.py BIN [ROUNDS]   (ROUNDS default 5 for the 1,000-token passes)
"""
import os, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import ENV, config, free_port, simulator  # noqa: E402
from daemon import daemon, ready  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5


def wall(args):
    start = time.perf_counter()
    code = subprocess.call([BIN] + args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if code != 0:
        sys.exit(f"{args} exited {code}")
    return time.perf_counter() - start


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.95))]


def ms(x):
    return f"{x * 1000:.2f} ms"


def textfile(tmp, base, ca):
    cfg = config(tmp, base, ca, 1)
    wall(["--config", cfg, "rotate"])
    prom = f"{tmp}/textfile/deepvue.prom"
    os.makedirs(f"{tmp}/textfile")
    plain, with_file = [], []
    for _ in range(60):
        plain.append(wall(["--config", cfg, "rotate"]))
        with_file.append(wall(["--config", cfg, "rotate", "--metrics-file", prom]))
    diffs = [b - a for a, b in zip(plain, with_file)]
    return (f"| no-op `rotate`, 1 token, 60 pairs | {ms(statistics.median(plain))} | "
            f"{ms(statistics.median(with_file))} | {ms(statistics.median(diffs))} "
            f"({os.path.getsize(prom)} bytes written) |")


def scrape(port, accept):
    times, size = [], 0
    for _ in range(200):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
        if accept:
            req.add_header("Accept", accept)
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=10) as r:
            size = len(r.read())
        times.append(time.perf_counter() - start)
    return times, size


def metrics_1000(tmp, sim_port):
    p, port = daemon(tmp, sim_port, 1000)
    try:
        ready(port)
        time.sleep(2)
        rows = []
        for name, accept in (("text 0.0.4", None), ("OpenMetrics", "application/openmetrics-text; version=1.0.0")):
            t, size = scrape(port, accept)
            rows.append(f"| `/metrics`, 1,000 tokens, {name}, 200 GETs | {ms(statistics.median(t))} | "
                        f"{ms(p95(t))} | {size / 1024:.0f} KiB |")
        return rows
    finally:
        p.terminate()
        p.wait()


def audit_1000(tmp, base, ca):
    cfg = config(tmp, base, ca, 1000)
    with open(cfg) as f:
        text = f.read()
    audited = cfg.replace(".toml", "-audit.toml")
    os.makedirs(f"{tmp}/audit", mode=0o700)
    with open(audited, "w") as f:
        f.write(text.replace("[rotation]", f'[audit]\nfile = "{tmp}/audit/audit.jsonl"\n\n[rotation]', 1))
    wall(["--config", cfg, "rotate"])
    plain, with_audit = [], []
    for _ in range(ROUNDS):
        plain.append(wall(["--config", cfg, "rotate", "--force"]))
        with_audit.append(wall(["--config", audited, "rotate", "--force"]))
    a, b = statistics.median(plain), statistics.median(with_audit)
    lines = sum(1 for _ in open(f"{tmp}/audit/audit.jsonl"))
    return (f"| forced pass, 1,000 tokens, {ROUNDS} pairs | {a:.3f} s | {b:.3f} s | "
            f"{(b - a) / a * 100:+.1f} % ({lines} records written) |")


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-ops-")
    sim, port, ca = simulator(BIN, tmp, ENV)
    base = f"https://127.0.0.1:{port}"
    try:
        print("| scenario | without | with | difference |\n|---|---|---|---|")
        print(textfile(tmp, base, ca))
        print(audit_1000(tmp, base, ca))
        print("\n| scenario | median | p95 | size |\n|---|---|---|---|")
        for row in metrics_1000(tmp, port):
            print(row)
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
