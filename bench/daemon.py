#!/usr/bin/env python3
"""Daemon benchmarks for deepvue-rotator (see BENCHMARKS.md).

- Idle daemon, 1 token and 1,000 tokens (file stores, fresh tokens after the first pass,
  `poll_every` 5m): resident memory (VmRSS), CPU over an idle window (utime+stime from /proc),
  and wake-ups per minute (context switches of all its threads, voluntary + involuntary,
  sampled every second; the sampler's own reads of /proc do not wake the daemon).
- Churn: 100 tokens whose simulator-issued tokens expire 70 s after issue with renew_before
  69 s, so each token rotates about once a second; RSS after 1,000 and after 10,000 rotations.
- `/metrics` scrape latency with 1,000 tokens (median of 50 GETs from this process).

Usage: bench/daemon.py BIN [IDLE_SECONDS]   (IDLE_SECONDS default 600: ten idle minutes)
"""
import os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import free_port, simulator as start_simulator  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
IDLE = int(sys.argv[2]) if len(sys.argv) > 2 else 600
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPVUE_", "NOTIFY_", "WATCHDOG_"))}
ENV.update(DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret", RUST_LOG="warn")
TICK = os.sysconf("SC_CLK_TCK")


def wait_port(port):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def simulator(tmp, ttl):
    p, port, _ = start_simulator(BIN, tmp, ENV, ["--token-ttl", ttl])
    return p, port


def daemon(tmp, sim_port, n, renew="12h", poll="5m"):
    port = free_port()
    cfg = f"{tmp}/daemon-{n}-{port}.toml"
    with open(cfg, "w") as f:
        f.write(f'[deepvue]\nbase_url = "https://127.0.0.1:{sim_port}"\nca_file = "{tmp}/ca.pem"\n\n'
                f'[egress]\nprobe = false\n\n[rotation]\nrenew_before = "{renew}"\nmin_interval = "1s"\n'
                f'concurrency = 16\n\n[daemon]\nlisten = "127.0.0.1:{port}"\njitter = "0s"\npoll_every = "{poll}"\n\n')
        for i in range(n):
            f.write(f'[[tokens]]\nname = "t{i}"\ncredentials = {{ backend = "env" }}\n'
                    f'store = {{ backend = "file", path = "{tmp}/store-{n}-{port}/t{i}" }}\n')
    p = subprocess.Popen([BIN, "--config", cfg, "daemon"], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=open(f"{tmp}/daemon-{n}.log", "w"))
    wait_port(port)
    return p, port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_switches(pid):
    """Context switches (voluntary + involuntary) of each live thread, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out[tid] = sum(int(line.split()[1]) for line in f
                               if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        except OSError:
            pass  # the thread ended between listing and reading
    return out


class Switches:
    """Wake-ups of a process over a window. Per-thread counters vanish when a thread ends (the
    runtime's blocking-pool threads come and go), so each thread is sampled every second and
    counted from its first to its last sample: a thread that ends loses under a second."""

    def __init__(self, pid):
        self.pid, self.seen = pid, {}

    def sample(self):
        for tid, n in thread_switches(self.pid).items():
            first, _ = self.seen.get(tid, (n, n))
            self.seen[tid] = (first, n)

    def total(self):
        return sum(last - first for first, last in self.seen.values())


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read()


def ready(port, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        try:
            get(port, "/readyz")
            return
        except Exception:
            time.sleep(0.5)
    sys.exit("daemon never became ready")


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-daemon-")
    sim, sim_port = simulator(tmp, "24h")
    rows = []
    try:
        idle = []
        for n in (1, 1000):
            p, port = daemon(tmp, sim_port, n)
            ready(port)
            time.sleep(5)
            idle.append((n, p, port))
        # Both idle daemons are watched over the same window.
        start = {n: cpu_secs(p.pid) for n, p, _ in idle}
        sw = {n: Switches(p.pid) for n, p, _ in idle}
        t0 = time.time()
        while time.time() - t0 < IDLE:
            for s in sw.values():
                s.sample()
            time.sleep(1)
        for s in sw.values():
            s.sample()
        wall = time.time() - t0
        for n, p, port in idle:
            cpu = cpu_secs(p.pid) - start[n]
            sw_n = sw[n].total()
            rows.append((f"idle daemon, {n} token(s)", f"{rss_kib(p.pid) / 1024:.1f} MiB",
                         f"{100 * cpu / wall:.3f} % over {wall / 60:.0f} min", f"{60 * sw_n / wall:.1f}"))
        # /metrics with 1,000 tokens.
        port = idle[1][2]
        times = []
        for _ in range(50):
            s = time.perf_counter()
            body = get(port, "/metrics")
            times.append(time.perf_counter() - s)
        times.sort()
        scrape = (f"{statistics.median(times) * 1000:.1f} ms median (p95 {times[int(len(times) * 0.95)] * 1000:.1f}), "
                  f"{len(body) / 1024:.0f} KiB")
        for _, p, _ in idle:
            p.terminate()
            p.wait()
        sim.terminate()
        sim.wait()

        # Churn: ~1 rotation per token per second.
        sim, sim_port = simulator(tmp, "70s")
        p, port = daemon(tmp, sim_port, 100, renew="69s", poll="1h")
        ready(port)
        churn = []
        for target in (1000, 10000):
            while True:
                with urllib.request.urlopen(f"https://127.0.0.1:{sim_port}/__simulator/stats",
                                            context=_ctx(tmp), timeout=10) as r:
                    import json
                    calls = json.load(r)["authorize_calls"]
                if calls >= target:
                    break
                time.sleep(1)
            churn.append((target, calls, rss_kib(p.pid)))
        p.terminate()
        p.wait()
    finally:
        sim.terminate()
    print("| scenario | RSS | CPU | wake-ups / min |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"`/metrics` with 1,000 tokens: {scrape}")
    print()
    print("| rotations (authorize calls) | RSS |")
    print("|---|---|")
    for target, calls, rss in churn:
        print(f"| {calls} | {rss / 1024:.1f} MiB |")


def _ctx(tmp):
    import ssl
    return ssl.create_default_context(cafile=f"{tmp}/ca.pem")


if __name__ == "__main__":
    main()
