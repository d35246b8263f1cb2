#!/usr/bin/env python3
"""Fan-out (see BENCHMARKS.md, "Fan-out"): one token in four stores (`stores = [file, aws,
vault, gcp]`) against each store alone.

- `rotate --force` with each single store, and with all four (the file store is the primary;
  the three replicas are written concurrently), interleaved run by run so drift hits all alike:
  medians, and the fan-out's median over the slowest single store's;
- a no-op `rotate` over the four stores: median wall time, and the calls each server saw per
  run (moto's request log, OpenBao's audit log, the fake's counters).

Usage: bench/fanout.py BIN MOTO_SERVER BAO GCP_FAKE [RUNS]   (RUNS default 20)
"""
import json, os, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import run, simulator  # noqa: E402  (shared timing harness)
import aws, gcp, vault  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
aws.MOTO, vault.BAO, gcp.FAKE = sys.argv[2], sys.argv[3], os.path.abspath(sys.argv[4])
RUNS = int(sys.argv[5]) if len(sys.argv) > 5 else 20
ENV = dict(aws.BASE_ENV, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret",
           BENCH_VAULT_TOKEN=vault.ROOT)


def med_ms(xs):
    return statistics.median(xs) * 1000


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-fanout-")
    sim, port, ca = simulator(BIN, tmp, ENV)
    moto = aws.Moto(tmp)
    bao = vault.Bao(tmp)
    fake = gcp.Fake()
    try:
        head = (f'[deepvue]\nbase_url = "https://127.0.0.1:{port}"\nca_file = "{ca}"\n\n'
                f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.url}"\n\n'
                f'[vault]\naddress = "{bao.addr}"\nca_file = "{bao.ca}"\n'
                'auth = { method = "token", token = { env = "BENCH_VAULT_TOKEN" } }\n\n'
                f'[gcp]\nproject = "{gcp.PROJECT}"\nendpoint_url = "{fake.url}"\nanonymous = true\n\n')

        def stores(tag):
            moto.sm("CreateSecret", {"Name": f"bench/token-{tag}"})
            fake.create(f"bench-token-{tag}")
            return {
                "file": f'{{ backend = "file", path = "{tmp}/store-{tag}/prod" }}',
                "aws": f'{{ backend = "aws", secret_id = "bench/token-{tag}" }}',
                "vault": f'{{ backend = "vault", path = "deepvue/token-{tag}" }}',
                "gcp": f'{{ backend = "gcp", secret_id = "bench-token-{tag}", keep_versions = 5 }}',
            }

        def write(name, body):
            path = f"{tmp}/{name}.toml"
            with open(path, "w") as f:
                f.write(head + '[[tokens]]\nname = "prod"\ncredentials = { backend = "env" }\n' + body)
            return path

        single = {b: write(f"single-{b}", f"store = {s}\n") for b, s in stores("single").items()}
        fan_stores = stores("fan")
        fan = write("fan", "stores = [\n  " + ",\n  ".join(fan_stores[b] for b in ("file", "aws", "vault", "gcp")) + "\n]\n")
        cases = [(f"{b} alone", cfg) for b, cfg in single.items()] + [("fan-out to 4 stores", fan)]
        for _, cfg in cases:
            if run(["--config", cfg, "rotate"], env=ENV, binary=BIN)[2] != 0:
                sys.exit(f"first rotate with {cfg} failed")
        walls = {name: [] for name, _ in cases}
        rss = {name: [] for name, _ in cases}
        for _ in range(RUNS):
            for name, cfg in cases:
                w, r, code = run(["--config", cfg, "rotate", "--force"], env=ENV, binary=BIN)
                if code != 0:
                    sys.exit(f"{name}: rotate --force exited {code}")
                walls[name].append(w)
                rss[name].append(r)
        print(f"binary: {BIN} ({os.path.getsize(BIN)/1e6:.1f} MB); {RUNS} runs each, interleaved\n")
        print("| `rotate --force` | median wall | peak RSS (max) |")
        print("|---|---|---|")
        for name, _ in cases:
            print(f"| {name} | {med_ms(walls[name]):.1f} ms | {max(rss[name])/1024:.1f} MiB |")
        slowest = max(med_ms(walls[n]) for n, _ in cases[:-1])
        print(f"\nfan-out / slowest single store: {med_ms(walls[cases[-1][0]]) / slowest:.2f}\n")

        # No-op passes over the four stores: wall, and the calls each server saw per run.
        noop, per = [], {"aws": [], "vault": [], "gcp": []}
        for _ in range(RUNS):
            before = (moto.calls(), bao.requests(), fake.calls())
            w, _, code = run(["--config", fan, "rotate"], env=ENV, binary=BIN)
            if code != 0:
                sys.exit(f"no-op fan-out exited {code}")
            after = (moto.calls(), bao.requests(), fake.calls())
            noop.append(w)
            per["aws"].append(after[0] - before[0])
            per["vault"].append(after[1] - before[1])
            per["gcp"].append(sum(gcp.delta(before[2], after[2]).values()))
        calls = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in per.items())
        print(f"| no-op `rotate` over 4 stores | median {med_ms(noop):.1f} ms | calls per run: {calls} |")
    finally:
        for p in (sim, moto.proc, bao.proc, fake.proc):
            p.terminate()
            p.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
