#!/usr/bin/env python3
"""`deepvue-rotator agent` against the AWS Secrets Manager Agent (see BENCHMARKS.md).

Both agents serve the same secret from one moto_server: a token document that
`deepvue-rotator rotate` wrote (the built-in simulator minted it). For each agent, in turn:

- cold start: process start until its first 200 answer for the secret (one store read in it);
- idle RSS (VmRSS) once it has answered and settled, and peak RSS (VmHWM) after the load;
- requests/s and p50 / p99 latency at concurrency 1 and 16 (examples/agent_load.rs: each
  worker one keep-alive connection, GET back to back), ROUNDS rounds, the agents alternating
  (A B A B …) so a drift in the shared machine hits both; the median round is reported;
- store calls during the load (moto's request log): a cache hit must make none;
- CPU per answer of the agent and per request of the load generator (utime + stime over the
  c=16 load): on two cores both saturate, so throughput alone cannot say which one limits.

Ours runs twice: on TCP, as the AWS agent (which has no other transport), and on its Unix
socket, the transport for an application on the same host or pod.

Then this agent alone over 1,000 tokens in file stores: RSS after every token was served once.

Usage: bench/agent.py BIN MOTO_SERVER AWS_AGENT LOADGEN [ROUNDS] [SECONDS]
"""
import http.client, json, os, resource, socket, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import config, free_port, simulator  # noqa: E402
import aws  # noqa: E402  (the moto wrapper; reads BIN and MOTO_SERVER from argv too)

BIN = os.path.abspath(sys.argv[1])
MOTO = sys.argv[2]
AWS_AGENT = os.path.abspath(sys.argv[3])
LOADGEN = os.path.abspath(sys.argv[4])
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 3
SECONDS = float(sys.argv[6]) if len(sys.argv) > 6 else 5
CALLER = "bench-caller-token-5d2f8e01a9"
SECRET = "bench/deepvue-token"


def rss(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the URL gives the path and the Host)."""

    def __init__(self, socket_path):
        super().__init__("localhost", timeout=2)
        self.socket_path = socket_path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(2)
        self.sock.connect(self.socket_path)


def get(url, headers, unix=None):
    if unix:
        try:
            c = UnixConnection(unix)
            c.request("GET", "/" + url.split("/", 3)[3], headers=headers)
            return c.getresponse().status
        except OSError:
            return 0
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Agent:
    def __init__(self, name, argv, env, url, headers, cwd, unix=None):
        self.name, self.argv, self.env, self.url, self.headers, self.cwd = name, argv, env, url, headers, cwd
        self.unix = unix

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.perf_counter() - t0 < 30:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited {self.proc.returncode}")
            if get(self.url, self.headers, self.unix) == 200:
                return time.perf_counter() - t0
            time.sleep(0.001)
        sys.exit(f"{self.name} never answered")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def load(self, concurrency):
        cpu = cpu_seconds(self.proc.pid)
        gen = resource.getrusage(resource.RUSAGE_CHILDREN)
        unix = ["--unix", self.unix] if self.unix else []
        out = json.loads(subprocess.check_output([LOADGEN] + unix + [self.url, str(concurrency), str(SECONDS)] +
                                                 [f"{k}: {v}" for k, v in self.headers.items()]))
        # The agent's own CPU per answer: what a request costs it, whoever limits the rate.
        (user0, sys0), (user1, sys1) = cpu, cpu_seconds(self.proc.pid)
        out["cpu_us"] = (user1 + sys1 - user0 - sys0) / max(out["requests"], 1) * 1e6
        # The kernel's part of it: the socket calls and the threads' wake-ups.
        out["kernel_us"] = (sys1 - sys0) / max(out["requests"], 1) * 1e6
        # The load generator's, the same way: what is left of two cores for the agent.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["gen_us"] = (after.ru_utime + after.ru_stime - gen.ru_utime - gen.ru_stime) / max(out["requests"], 1) * 1e6
        return out


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-agent-")
    env = dict(aws.BASE_ENV, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret",
               RUST_LOG="warn")
    sim, sim_port, ca = simulator(BIN, tmp, env)
    moto = aws.Moto(tmp)
    ours_port, theirs_port = free_port(), free_port()
    cfg = f"{tmp}/agent.toml"
    with open(cfg, "w") as f:
        f.write(f'[deepvue]\nbase_url = "https://127.0.0.1:{sim_port}"\nca_file = "{ca}"\n\n'
                f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.url}"\n\n'
                f'[agent]\nlisten = "127.0.0.1:{ours_port}"\n\n'
                f'[[tokens]]\nname = "prod"\ncredentials = {{ backend = "env" }}\n'
                f'store = {{ backend = "aws", secret_id = "{SECRET}", create_if_missing = true }}\n')
    if subprocess.call([BIN, "--config", cfg, "rotate"], env=env, stdout=subprocess.DEVNULL) != 0:
        sys.exit("rotate failed")
    with open(f"{tmp}/aws-agent.toml", "w") as f:
        f.write(f'log_level = "ERROR"\nhttp_port = "{theirs_port}"\nttl_seconds = 300\n'
                f'cache_size = 1000\nregion = "us-east-1"\n')
    ours = Agent("deepvue-rotator agent", [BIN, "--config", cfg, "agent"],
                 dict(env, DEEPVUE_ROTATOR_AGENT_TOKEN=CALLER),
                 f"http://127.0.0.1:{ours_port}/v1/tokens/prod",
                 {"X-Deepvue-Rotator-Token": CALLER}, tmp)
    # The same agent on its Unix socket: what an application on the same host or pod can use
    # (the AWS agent listens on TCP only).
    ours_unix = Agent("deepvue-rotator agent, Unix socket",
                      [BIN, "--config", cfg, "agent", "--listen", f"unix:{tmp}/agent.sock"],
                      dict(env, DEEPVUE_ROTATOR_AGENT_TOKEN=CALLER),
                      "http://localhost/v1/tokens/prod", {"X-Deepvue-Rotator-Token": CALLER}, tmp,
                      unix=f"{tmp}/agent.sock")
    theirs = Agent("AWS Secrets Manager Agent", [AWS_AGENT, "--config", f"{tmp}/aws-agent.toml"],
                   dict(env, AWS_TOKEN=CALLER, AWS_ENDPOINT_URL=moto.url),
                   f"http://127.0.0.1:{theirs_port}/secretsmanager/get?secretId={SECRET.replace('/', '%2F')}",
                   {"X-Aws-Parameters-Secrets-Token": CALLER}, tmp)
    results = {a.name: {"cold": [], "idle": [], "peak": [], 1: [], 16: [], "calls": []} for a in (ours, ours_unix, theirs)}
    for _ in range(ROUNDS):
        for a in (ours, ours_unix, theirs):
            r = results[a.name]
            r["cold"].append(a.start())
            time.sleep(1)
            r["idle"].append(rss(a.proc.pid, "VmRSS"))
            before = moto.calls()
            for c in (1, 16):
                r[c].append(a.load(c))
            time.sleep(0.2)
            r["calls"].append(moto.calls() - before)
            r["peak"].append(rss(a.proc.pid, "VmHWM"))
            a.stop()
    med = statistics.median
    print(f"Agent vs AWS Secrets Manager Agent, moto, {ROUNDS} rounds of {SECONDS:g} s per concurrency (median round)\n")
    print("| | cold start | idle RSS | peak RSS | c=1 req/s | c=1 p50 / p99 | c=16 req/s | c=16 p50 / p99 | agent CPU per answer (c=16) (of it in the kernel) | load generator CPU per request (c=16) | store calls under load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        def lat(c):
            rows = sorted(r[c], key=lambda x: x["rps"])
            m = rows[len(rows) // 2]
            return f"{m['rps']:.0f}", f"{m['p50_ms']:.3f} / {m['p99_ms']:.3f} ms", m["errors"], f"{med(x['cpu_us'] for x in r[c]):.1f} µs ({med(x['kernel_us'] for x in r[c]):.1f} in the kernel)", f"{med(x['gen_us'] for x in r[c]):.1f} µs"
        c1, c16 = lat(1), lat(16)
        print(f"| {name} | {med(r['cold'])*1000:.1f} ms | {med(r['idle']):.1f} MiB | {max(r['peak']):.1f} MiB "
              f"| {c1[0]} | {c1[1]} | {c16[0]} | {c16[1]} | {c16[3]} | {c16[4]} | {max(r['calls'])} |"
              + ("" if c1[2] + c16[2] == 0 else f" errors {c1[2] + c16[2]}"))
    def ratio(a, c):
        return med(x["rps"] for x in results[a.name][c]) / med(x["rps"] for x in results[theirs.name][c])
    def per_answer(a):
        return med(x["cpu_us"] for x in results[theirs.name][16]) / med(x["cpu_us"] for x in results[a.name][16])
    print()
    for a in (ours, ours_unix):
        print(f"{a.name} / AWS agent: throughput c=1 {ratio(a, 1):.2f}x, c=16 {ratio(a, 16):.2f}x; "
              f"answers per CPU second {per_answer(a):.2f}x")

    # 1,000 tokens in file stores, each served once.
    n = 1000
    many = config(tmp, f"https://127.0.0.1:{sim_port}", ca, n)
    if subprocess.call([BIN, "--config", many, "rotate"], env=env, stdout=subprocess.DEVNULL) != 0:
        sys.exit("rotate (1,000 tokens) failed")
    port = free_port()
    big = Agent("agent, 1,000 tokens", [BIN, "--config", many, "agent", "--listen", f"127.0.0.1:{port}"],
                dict(env, DEEPVUE_ROTATOR_AGENT_TOKEN=CALLER),
                f"http://127.0.0.1:{port}/v1/tokens/t0", {"X-Deepvue-Rotator-Token": CALLER}, tmp)
    cold = big.start()
    for i in range(n):
        if get(f"http://127.0.0.1:{port}/v1/tokens/t{i}", big.headers) != 200:
            sys.exit(f"t{i} was not served")
    time.sleep(0.5)
    print(f"\n1,000 tokens (file stores): ready and first answer {cold*1000:.0f} ms, RSS after serving each once "
          f"{rss(big.proc.pid, 'VmRSS'):.1f} MiB (peak {rss(big.proc.pid, 'VmHWM'):.1f} MiB)")
    big.stop()
    moto.proc.terminate()
    sim.terminate()


if __name__ == "__main__":
    main()
