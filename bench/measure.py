#!/usr/bin/env python3
"""Benchmark harness for deepvue-rotator: whole-process wall time and peak RSS.

Runs the release binary against the built-in simulator (a separate `simulate` process) and
file stores in a temp dir. Peak RSS is GNU time's %M for the rotator process alone: a child
forked from this Python process would report Python's own pages as its peak. Wall time is
measured around `/usr/bin/time BIN …`, so it includes that small wrapper's exec (~0.5 ms).
Prints a Markdown report.
"""
import os, socket, statistics, subprocess, sys, tempfile, time

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/deepvue-rotator")
ENV = dict(os.environ, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret", RUST_LOG="warn")
ENV.pop("DEEPVUE_ROTATOR_CONFIG", None)
ENV.pop("DEEPVUE_ROTATOR_CONFIG_TOML", None)


TIME = "/usr/bin/time"
RSS_FILE = tempfile.mktemp(prefix="deepvue-bench-rss-")


def run(args, env=None, binary=None):
    """Run once; return (wall seconds, peak RSS KiB, exit code)."""
    start = time.perf_counter()
    code = subprocess.call([TIME, "-f", "%M", "-o", RSS_FILE, binary or BIN] + args, env=env or ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(RSS_FILE) as f:
        rss = int(f.read().strip().splitlines()[-1])
    return wall, rss, code


def series(args, n, before=None):
    walls, rss = [], []
    for _ in range(n):
        if before:
            before()
        w, r, code = run(args)
        if code != 0:
            sys.exit(f"{args} exited {code}")
        walls.append(w)
        rss.append(r)
    return walls, rss


def fmt_ms(xs):
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"{statistics.median(xs)*1000:.1f} ms (p95 {p95*1000:.1f}, min {xs[0]*1000:.1f})"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def simulator(binary, tmp, env, extra=()):
    """Start `binary simulate` on a free loopback port (its CA in TMP/ca.pem); return (process,
    port, CA path) once it listens and the CA is written."""
    port = free_port()
    ca = f"{tmp}/ca.pem"
    proc = subprocess.Popen([binary, "simulate", "--listen", f"127.0.0.1:{port}", "--ca-out", ca, *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        if os.path.exists(ca):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proc, port, ca
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("the simulator did not start")


def config(tmp, base, ca, n, concurrency=8):
    lines = [f'[deepvue]\nbase_url = "{base}"\nca_file = "{ca}"\n', f"[rotation]\nconcurrency = {concurrency}\n"]
    for i in range(n):
        lines.append(f'[[tokens]]\nname = "t{i}"\ncredentials = {{ backend = "env" }}\nstore = {{ backend = "file", path = "{tmp}/store{n}-{concurrency}/t{i}" }}\n')
    path = f"{tmp}/config-{n}-{concurrency}.toml"
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main():
    if not os.access(TIME, os.X_OK):
        sys.exit("bench needs GNU time at /usr/bin/time (apt-get install time)")
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-")
    sim, port, ca = simulator(BIN, tmp, ENV)
    try:
        base = f"https://127.0.0.1:{port}"
        one = config(tmp, base, ca, 1)
        run(["--config", one, "rotate"])  # first mint, so the next runs are no-ops

        print(f"binary: {BIN} ({os.path.getsize(BIN)/1e6:.1f} MB)\n")
        print("| scenario | runs | wall (median, p95, min) | peak RSS (max) |")
        print("|---|---|---|---|")
        w, r = series(["--config", one, "rotate"], 50)
        print(f"| no-op `rotate`, 1 token (whole process) | 50 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB |")
        w, r = series(["--config", one, "rotate", "--force"], 30)
        print(f"| one rotation `rotate --force`, 1 token (whole process) | 30 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB |")
        w, r = series(["--config", one, "status"], 30)
        print(f"| `status`, 1 token | 30 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB |")

        print("\n| tokens | concurrency | first pass (all mint) | per token | no-op pass | per token | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for n, c in [(100, 8), (500, 8), (1000, 8), (1000, 1), (1000, 32)]:
            cfg = config(tmp, base, ca, n, c)
            w1, r1, code = run(["--config", cfg, "rotate"])
            if code != 0:
                sys.exit(f"{n} tokens: exit {code}")
            w2, r2, _ = run(["--config", cfg, "rotate"])
            print(f"| {n} | {c} | {w1*1000:.0f} ms | {w1/n*1e6:.0f} µs | {w2*1000:.0f} ms | {w2/n*1e6:.0f} µs | {max(r1, r2)/1024:.1f} MiB |")
    finally:
        sim.terminate()
        sim.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
