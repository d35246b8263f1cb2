#!/usr/bin/env python3
"""Paired A/B of two release binaries (see BENCHMARKS.md, "Before and after the layout").

Runs the same four whole-process scenarios with binary A and binary B in turn (A B A B …), so
a drift in the shared machine's speed hits both alike, and reports each binary's median wall
time and peak RSS and the median of the per-pair ratios B/A:

- file store: a no-op `rotate` and a `rotate --force` (one token, the built-in simulator);
- aws backend against a local moto_server: a no-op `rotate` and a `rotate --force`;
- with BAO=<bao binary>: the vault backend against an OpenBao dev server over TLS, the same two;
- with GCP_FAKE=<examples/gcp_fake binary>: the gcp backend against the Secret Manager fake,
  the same two.

Both binaries must read the same config (every release since the AWS backend does; the vault
and gcp rows need both binaries to have those backends).

Usage: [BAO=…] [GCP_FAKE=…] bench/ab.py BIN_A BIN_B MOTO_SERVER [PAIRS]   (PAIRS default 30)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import config, run, simulator  # noqa: E402  (shared timing harness)
from aws import BASE_ENV  # noqa: E402

A, B = (os.path.abspath(p) for p in sys.argv[1:3])
PAIRS = int(sys.argv[4]) if len(sys.argv) > 4 else 30
ENV = dict(BASE_ENV, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret")


def pairs(args, n):
    out = {A: ([], []), B: ([], [])}
    for _ in range(n):
        for binary in (A, B):
            w, r, code = run(args, env=ENV, binary=binary)
            if code != 0:
                sys.exit(f"{binary} {args} exited {code}")
            out[binary][0].append(w)
            out[binary][1].append(r)
    ratio = statistics.median(b / a for a, b in zip(out[A][0], out[B][0]))
    return out, ratio


def row(name, args, n):
    out, ratio = pairs(args, n)
    med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"| {name} | {n} | {med(out[A][0]):.1f} ms | {med(out[B][0]):.1f} ms | {ratio:.2f} "
          f"| {max(out[A][1])/1024:.1f} MiB | {max(out[B][1])/1024:.1f} MiB |")


def main():
    import aws  # the moto wrapper
    aws.MOTO = sys.argv[3]
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-ab-")
    # The simulator runs from a copy of B: run from B itself, its pages of B's file stay in
    # the page cache, and the kernel's fault-around then maps more of B into each measured
    # process (B's peak RSS read ~0.5 MiB high although neither binary used more memory).
    sim_bin = shutil.copy(B, f"{tmp}/simulator-bin")
    sim, port, ca = simulator(sim_bin, tmp, ENV)
    servers = []
    moto = aws.Moto(tmp)
    try:
        deepvue = f'[deepvue]\nbase_url = "https://127.0.0.1:{port}"\nca_file = "{ca}"\n\n'
        file_cfg = config(tmp, f"https://127.0.0.1:{port}", ca, 1)
        moto.sm("CreateSecret", {"Name": "bench/creds", "SecretString": json.dumps(
            {"client_id": "bench-id", "client_secret": "bench-secret"})})
        moto.sm("CreateSecret", {"Name": "bench/token"})
        aws_cfg = f"{tmp}/aws.toml"
        with open(aws_cfg, "w") as f:
            f.write(deepvue + f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.url}"\n\n'
                    '[[tokens]]\nname = "prod"\n'
                    'credentials = { backend = "aws", secret_id = "bench/creds" }\n'
                    'store = { backend = "aws", secret_id = "bench/token" }\n')
        configs = [("file store", file_cfg), ("aws (moto)", aws_cfg)]
        if os.environ.get("BAO"):
            import vault
            vault.BAO = os.environ["BAO"]
            bao = vault.Bao(tmp)
            servers.append(bao.proc)
            bao.call("POST", "secret/data/deepvue/prod/credentials",
                     {"data": {"client_id": "bench-id", "client_secret": "bench-secret"}})
            vault_cfg = f"{tmp}/vault.toml"
            with open(vault_cfg, "w") as f:
                f.write(deepvue + f'[vault]\naddress = "{bao.addr}"\nca_file = "{bao.ca}"\n'
                        'auth = { method = "token", token = { env = "BENCH_VAULT_TOKEN" } }\n\n'
                        '[[tokens]]\nname = "prod"\n'
                        'credentials = { backend = "vault", path = "deepvue/prod/credentials" }\n'
                        'store = { backend = "vault", path = "deepvue/prod/token" }\n')
            ENV["BENCH_VAULT_TOKEN"] = vault.ROOT
            configs.append(("vault (OpenBao)", vault_cfg))
        if os.environ.get("GCP_FAKE"):
            import gcp
            gcp.FAKE = os.path.abspath(os.environ["GCP_FAKE"])
            fake = gcp.Fake()
            servers.append(fake.proc)
            fake.create("bench-credentials")
            fake.add("bench-credentials",
                     json.dumps({"client_id": "bench-id", "client_secret": "bench-secret"}))
            fake.create("bench-token")
            gcp_cfg = f"{tmp}/gcp.toml"
            with open(gcp_cfg, "w") as f:
                f.write(deepvue + f'[gcp]\nproject = "{gcp.PROJECT}"\nendpoint_url = "{fake.url}"\n'
                        'anonymous = true\n\n[[tokens]]\nname = "prod"\n'
                        'credentials = { backend = "gcp", secret_id = "bench-credentials" }\n'
                        'store = { backend = "gcp", secret_id = "bench-token", keep_versions = 5 }\n')
            configs.append(("gcp (fake)", gcp_cfg))
        for _, cfg in configs:
            if run(["--config", cfg, "rotate"], env=ENV, binary=B)[2] != 0:
                sys.exit(f"first rotate with {cfg} failed")
        for name, binary in (("A", A), ("B", B)):
            print(f"{name}: {binary} ({os.path.getsize(binary)/1e6:.1f} MB)")
        print("\n| scenario | pairs | A median | B median | B/A (median of pairs) | A peak RSS | B peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for name, cfg in configs:
            row(f"{name}, no-op `rotate`", ["--config", cfg, "rotate"], PAIRS)
            row(f"{name}, `rotate --force`", ["--config", cfg, "rotate", "--force"], PAIRS)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
        sim.terminate()
        moto.proc.terminate()
        sim.wait()
        moto.proc.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
