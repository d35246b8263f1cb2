#!/usr/bin/env python3
"""Kubernetes store benchmarks (see BENCHMARKS.md), against the test suite's API fake
(`examples/kube_fake.rs`, the same code as tests/it/kube_fake.rs) over HTTPS on loopback.

- One `kubernetes` token, whole process: the first rotation, a no-op run and a forced rotation:
  wall time, peak RSS (GNU time) and the API calls each run made, per verb, from the fake's
  own counters.
- One pass over 1,000 tokens (1,000 Secrets): the first (all mint), a no-op pass and a forced
  pass: wall, peak RSS, calls.

Usage: bench/kubernetes.py BIN FAKE [RUNS]     (RUNS default 20)
"""
import json, os, ssl, statistics, subprocess, sys, tempfile, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import fmt_ms, run, simulator  # noqa: E402  (shared timing harness)

BIN = os.path.abspath(sys.argv[1])
FAKE = os.path.abspath(sys.argv[2])
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
NS = "bench"
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "DEEPVUE_"))}
ENV.update(DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret", RUST_LOG="warn")


class Fake:
    def __init__(self, tmp):
        self.ca = f"{tmp}/kube-ca.pem"
        self.proc = subprocess.Popen([FAKE, self.ca], stdout=subprocess.PIPE, text=True)
        self.url, self.token = self.proc.stdout.readline().split()
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"authorization": f"Bearer {self.token}",
                                              "content-type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx) as r:
            return json.load(r)

    def create_empty(self, name):
        self.call("POST", f"/api/v1/namespaces/{NS}/secrets",
                  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque"})

    def calls(self):
        return self.call("GET", "/__fake/calls")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def delta(before, after):
    verbs = sorted(set(after) - {"discovery"})
    d = {v: after.get(v, 0) - before.get(v, 0) for v in verbs}
    return {v: n for v, n in d.items() if n}


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-kube-")
    sim, port, ca = simulator(BIN, tmp, ENV)
    fake = Fake(tmp)
    try:
        kubeconfig = f"{tmp}/kubeconfig"
        with open(kubeconfig, "w") as f:
            f.write(f"apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: f\n  cluster:\n"
                    f"    server: {fake.url}\n    certificate-authority: {fake.ca}\ncontexts:\n- name: b\n"
                    f"  context:\n    cluster: f\n    user: u\n    namespace: {NS}\nusers:\n- name: u\n  user:\n"
                    f"    token: {fake.token}\n")
        os.chmod(kubeconfig, 0o600)
        head = (f'[deepvue]\nbase_url = "https://127.0.0.1:{port}"\nca_file = "{ca}"\n\n'
                f'[rotation]\nconcurrency = 8\n\n[kubernetes]\nkubeconfig = "{kubeconfig}"\n\n')

        def config(name, n):
            path = f"{tmp}/{name}.toml"
            with open(path, "w") as f:
                f.write(head)
                for i in range(n):
                    f.write(f'[[tokens]]\nname = "{name}-{i}"\ncredentials = {{ backend = "env" }}\n'
                            f'store = {{ backend = "kubernetes", secret_name = "{name}-{i}" }}\n')
            return path

        print(f"binary: {BIN}; API fake: {fake.url} (HTTPS); {RUNS} runs each\n")
        print("| one token, whole process | wall (median, p95, min) | peak RSS (max) | API calls per run |")
        print("|---|---|---|---|")
        fake.create_empty("one-0")
        one = config("one", 1)
        for label, args, n in [("first rotation", ["rotate"], 1), ("no-op `rotate`", ["rotate"], RUNS),
                               ("`rotate --force`", ["rotate", "--force"], RUNS)]:
            walls, rss, calls = [], [], []
            for _ in range(n):
                b = fake.calls()
                w, r, code = run(["--config", one] + args, env=ENV)
                if code != 0:
                    sys.exit(f"{label}: exit {code}")
                calls.append(delta(b, fake.calls()))
                walls.append(w)
                rss.append(r)
            same = all(c == calls[0] for c in calls)
            shown = ", ".join(f"{v} {k}" for k, v in calls[0].items()) + ("" if same else " (varies)")
            print(f"| {label} | {fmt_ms(walls)} | {max(rss)/1024:.1f} MiB | {sum(sum(c.values()) for c in calls)/n:g}: {shown} |")

        n = 1000
        for i in range(n):
            fake.create_empty(f"many-{i}")
        many = config("many", n)
        print(f"\n| {n} tokens, one pass (concurrency 8) | wall | peak RSS | API calls |")
        print("|---|---|---|---|")
        for label, args in [("first pass (all mint)", ["rotate"]), ("no-op pass", ["rotate"]),
                            ("forced pass", ["rotate", "--force"])]:
            b = fake.calls()
            w, r, code = run(["--config", many] + args, env=ENV)
            if code != 0:
                sys.exit(f"{label}: exit {code}")
            d = delta(b, fake.calls())
            shown = ", ".join(f"{v} {k}" for k, v in d.items())
            print(f"| {label} | {w*1000:.0f} ms ({w*1000/n:.2f} ms per token) | {r/1024:.1f} MiB | {sum(d.values())}: {shown} |")
    finally:
        fake.stop()
        sim.kill()


if __name__ == "__main__":
    main()
