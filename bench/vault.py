#!/usr/bin/env python3
"""Vault backend benchmarks for deepvue-rotator (see BENCHMARKS.md).

Starts a real OpenBao dev server (`bao server -dev -dev-tls`, a file audit device declared in a
config file) and the release binary's simulator on 127.0.0.1, stores the Deepvue credentials in
KV v2, mints once, then runs the release binary as a whole process: no-op runs and
`rotate --force` with a static token and with AppRole (a role bound to only the least-privilege
policy), and one pass over 1,000 tokens. **Vault requests** are counted per run from the audit
log (one `"type":"request"` line per request; health checks are not audited).

Usage: bench/vault.py BIN BAO
"""
import json, os, ssl, subprocess, sys, tempfile, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import fmt_ms, free_port, run as run_in, simulator  # noqa: E402  (shared timing harness)

BIN = os.path.abspath(sys.argv[1])
BAO = sys.argv[2]
ROOT = "bench-root"
BASE_ENV = {k: v for k, v in os.environ.items()
            if not k.startswith(("VAULT_", "BAO_", "DEEPVUE_", "SSL_CERT_"))}
BASE_ENV.update(RUST_LOG="warn", BENCH_VAULT_TOKEN=ROOT)
POLICY = '''path "secret/data/deepvue/prod/credentials" { capabilities = ["read"] }
path "secret/data/deepvue/prod/token"       { capabilities = ["create", "read", "update"] }
path "secret/metadata/deepvue/prod/token"   { capabilities = ["read", "update"] }
'''


class Bao:
    def __init__(self, tmp):
        self.port = free_port()
        tls = f"{tmp}/tls"
        os.mkdir(tls)
        self.audit = f"{tmp}/audit.log"
        with open(f"{tmp}/audit.hcl", "w") as f:
            f.write(f'audit "file" "bench" {{\n  options {{\n    file_path = "{self.audit}"\n  }}\n}}\n')
        self.proc = subprocess.Popen(
            [BAO, "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={tls}",
             f"-dev-listen-address=127.0.0.1:{self.port}", f"-dev-root-token-id={ROOT}",
             "-dev-no-store-token", f"-config={tmp}/audit.hcl"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addr = f"https://127.0.0.1:{self.port}"
        self.ca = f"{tls}/vault-ca.pem"
        for _ in range(600):
            try:
                if os.path.exists(self.ca) and self.call("GET", "sys/health", token=None)[0] == 200:
                    return
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.05)
        sys.exit("OpenBao did not start; run ./scripts/test.sh to install it")

    def call(self, method, path, body=None, token=ROOT):
        headers = {"X-Vault-Token": token} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.addr}/v1/{path}", data=data, method=method, headers=headers)
        ctx = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def requests(self):
        try:
            with open(self.audit) as f:
                return sum(1 for line in f if '"type":"request"' in line)
        except FileNotFoundError:
            return 0


def series(bao, args, env, n):
    walls, rss, calls = [], [], []
    for _ in range(n):
        before = bao.requests()
        w, r, code = run_in(args, env=env, binary=BIN)
        if code != 0:
            sys.exit(f"{args} exited {code}")
        walls.append(w)
        rss.append(r)
        calls.append(bao.requests() - before)
    return walls, rss, calls


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-vault-")
    sim_env = dict(BASE_ENV, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret")
    sim, port, ca = simulator(BIN, tmp, sim_env)
    bao = Bao(tmp)
    try:
        creds = {"data": {"client_id": "bench-id", "client_secret": "bench-secret"}}
        bao.call("POST", "secret/data/deepvue/prod/credentials", creds)
        bao.call("PUT", "sys/policies/acl/rotator", {"policy": POLICY})
        bao.call("POST", "sys/auth/approle", {"type": "approle"})
        bao.call("POST", "auth/approle/role/rotator", {"token_policies": ["rotator"]})
        role_id = bao.call("GET", "auth/approle/role/rotator/role-id")[1]["data"]["role_id"]
        secret_id = bao.call("POST", "auth/approle/role/rotator/secret-id")[1]["data"]["secret_id"]
        sid = f"{tmp}/secret-id"
        with open(os.open(sid, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(secret_id)
        head = f'[deepvue]\nbase_url = "https://127.0.0.1:{port}"\nca_file = "{ca}"\n\n'
        vault = f'[vault]\naddress = "{bao.addr}"\nca_file = "{bao.ca}"\n'
        token_block = ('[[tokens]]\nname = "prod"\n'
                       'credentials = { backend = "vault", path = "deepvue/prod/credentials" }\n'
                       'store = { backend = "vault", path = "deepvue/prod/token" }\n')
        configs = {
            "token": head + vault + 'auth = { method = "token", token = { env = "BENCH_VAULT_TOKEN" } }\n\n' + token_block,
            "approle": head + vault + f'auth = {{ method = "approle", role_id = "{role_id}", secret_id = {{ file = "{sid}" }} }}\n\n' + token_block,
        }
        paths = {}
        for name, text in configs.items():
            paths[name] = f"{tmp}/{name}.toml"
            with open(paths[name], "w") as f:
                f.write(text)
        env = dict(BASE_ENV)
        w, r, code = run_in(["--config", paths["token"], "rotate"], env=env, binary=BIN)
        if code != 0:
            sys.exit(f"first rotate exited {code}")

        print("| scenario (vault backend, OpenBao dev server over TLS on loopback) | runs | wall (median, p95, min) | peak RSS (max) | Vault requests per run |")
        print("|---|---|---|---|---|")
        for name in ["token", "approle"]:
            w, r, c = series(bao, ["--config", paths[name], "rotate"], env, 40)
            print(f"| no-op `rotate`, 1 token, {name} auth | 40 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {min(c)}–{max(c)} |")
            w, r, c = series(bao, ["--config", paths[name], "rotate", "--force"], env, 20)
            print(f"| rotation `rotate --force`, 1 token, {name} auth | 20 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {min(c)}–{max(c)} |")

        # 1,000 tokens, one credentials secret, token auth, default concurrency 8.
        n = 1000
        lines = [head, vault, 'auth = { method = "token", token = { env = "BENCH_VAULT_TOKEN" } }\n']
        for i in range(n):
            lines.append(f'[[tokens]]\nname = "t{i}"\n'
                         'credentials = { backend = "vault", path = "deepvue/prod/credentials" }\n'
                         f'store = {{ backend = "vault", path = "deepvue/many/t{i}" }}\n')
        many = f"{tmp}/many.toml"
        with open(many, "w") as f:
            f.write("\n".join(lines))
        print(f"\n| {n} tokens, concurrency 8, token auth | wall | per token | peak RSS | Vault requests |")
        print("|---|---|---|---|---|")
        for label in ["first pass (all mint)", "no-op pass"]:
            before = bao.requests()
            w, r, code = run_in(["--config", many, "rotate"], env=env, binary=BIN)
            if code != 0:
                sys.exit(f"{n}-token rotate exited {code}")
            print(f"| {label} | {w*1000:.0f} ms | {w*1e6/n:.0f} µs | {r/1024:.1f} MiB | {bao.requests() - before} |")
    finally:
        sim.terminate()
        bao.proc.terminate()
        sim.wait()
        bao.proc.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
