#!/usr/bin/env python3
"""GCP benchmarks for deepvue-rotator (see BENCHMARKS.md), against the test suite's Secret
Manager fake (`examples/gcp_fake.rs`, the same code as tests/it/gcp_fake.rs) on loopback.

- A no-op run and a rotation of one `gcp` token, whole process: wall time, peak RSS (GNU time),
  and the Secret Manager calls each run made, per RPC, from the fake's own counters.
- Push-to-new-version latency: a daemon with `[daemon.pubsub]`, a SECRET_ROTATE push with an
  RS256 OIDC token (signed here with `openssl dgst`; the JWKS is served over HTTPS by this
  script with a throwaway CA), timed from the POST until the new version is listed.
- One pass over 1,000 `gcp` tokens: a no-op pass and a forced pass.

Usage: bench/gcp.py BIN FAKE        (bench/run.sh builds both; BENCH_ONLY=push: the push latency only)
"""
import base64, http.server, json, os, ssl, subprocess, sys, tempfile, threading, time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import fmt_ms, free_port, run as run_in, simulator  # noqa: E402  (shared timing harness)

BIN = os.path.abspath(sys.argv[1])
FAKE = os.path.abspath(sys.argv[2])
PROJECT = "bench-project"
ENV = {k: v for k, v in os.environ.items()
       if not k.startswith(("GOOGLE_", "GCE_", "CLOUD_RUN_", "K_", "DEEPVUE_"))}
ENV.update(RUST_LOG="warn")
AUDIENCE = "https://deepvue-rotator-bench.a.run.app/pubsub"
PUSH_SA = "push@bench-project.iam.gserviceaccount.com"
ALT = "%24alt=json%3Benum-encoding%3Dint"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Fake:
    def __init__(self):
        self.proc = subprocess.Popen([FAKE, "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            sys.exit("the Secret Manager fake did not start")

    def call(self, method, path, body=None, query=""):
        q = f"?{query}&{ALT}" if query else f"?{ALT}"
        req = urllib.request.Request(f"{self.url}/v1/projects/{PROJECT}/{path}{q}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"content-type": "application/json"})
        return json.load(urllib.request.urlopen(req))

    def create(self, secret):
        self.call("POST", "secrets", {"replication": {"automatic": {}}}, f"secretId={secret}")

    def add(self, secret, data):
        self.call("POST", f"secrets/{secret}:addVersion",
                  {"payload": {"data": base64.b64encode(data.encode()).decode()}})

    def versions(self, secret):
        return self.call("GET", f"secrets/{secret}/versions", query="pageSize=1000").get("versions", [])

    def calls(self):
        return json.load(urllib.request.urlopen(f"{self.url}/__fake/calls"))


def delta(before, after):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def fmt_calls(d):
    total = sum(d.values())
    return f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(d.items()))})"


def series(fake, args, n):
    walls, rss, calls = [], [], []
    for _ in range(n):
        before = fake.calls()
        w, r, code = run_in(args, env=ENV, binary=BIN)
        if code != 0:
            sys.exit(f"{args} exited {code}")
        walls.append(w)
        rss.append(r)
        calls.append(delta(before, fake.calls()))
    return walls, rss, calls


def jwks_server(tmp, jwks):
    """HTTPS on loopback with a throwaway CA (openssl), serving the JWKS."""
    ca_key, ca, key, csr, crt = (f"{tmp}/{n}" for n in ("jwks-ca.key", "jwks-ca.pem", "jwks.key", "jwks.csr", "jwks.pem"))
    q = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=bench CA",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"], **q)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"], **q)
    ext = f"{tmp}/ext.cnf"
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", crt, "-days", "1", "-extfile", ext], **q)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = jwks.encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", "public, max-age=3600")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, ca


def rsa_key(tmp):
    key = f"{tmp}/push.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    mod = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], capture_output=True, text=True,
                         check=True).stdout.strip().split("=", 1)[1]
    return key, bytes.fromhex(mod)


def sign_jwt(key, claims):
    head = b64u(json.dumps({"alg": "RS256", "kid": "bench", "typ": "JWT"}).encode())
    body = b64u(json.dumps(claims).encode())
    signed = f"{head}.{body}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signed, capture_output=True,
                         check=True).stdout
    return f"{head}.{body}.{b64u(sig)}"


def push_latency(tmp, fake, base_toml, n):
    key, modulus = rsa_key(tmp)
    jwks = json.dumps({"keys": [{"kid": "bench", "kty": "RSA", "alg": "RS256", "use": "sig",
                                 "n": b64u(modulus), "e": "AQAB"}]})
    srv, ca = jwks_server(tmp, jwks)
    port = free_port()
    cfg = f"{tmp}/push.toml"
    with open(cfg, "w") as f:
        f.write(base_toml.replace("[[tokens]]", (
            f'[daemon]\nlisten = "127.0.0.1:{port}"\nschedule = false\n\n'
            f'[daemon.pubsub]\naudience = "{AUDIENCE}"\nservice_account = "{PUSH_SA}"\n'
            f'jwks_url = "https://127.0.0.1:{srv.server_address[1]}/certs"\nca_file = "{ca}"\n\n[[tokens]]'), 1))
    log = open(f"{tmp}/daemon.log", "w")
    d = subprocess.Popen([BIN, "--config", cfg, "daemon"], env=dict(ENV, RUST_LOG="info"),
                         stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.05)
        times = []
        for i in range(n):
            time.sleep(1.05)  # documents keep whole seconds: each push is published after the last mint
            now = int(time.time())
            token = sign_jwt(key, {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSH_SA,
                                   "email_verified": True, "iat": now, "exp": now + 3600, "sub": "1"})
            msg = {"message": {"attributes": {"eventType": "SECRET_ROTATE",
                                              "secretId": "projects/123456789012/secrets/bench-token"},
                               "messageId": str(i), "publishTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())},
                   "subscription": "projects/bench-project/subscriptions/push"}
            before = len(fake.versions("bench-token"))
            start = time.perf_counter()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/pubsub", data=json.dumps(msg).encode(),
                                         headers={"content-type": "application/json",
                                                  "authorization": f"Bearer {token}"})
            try:
                status = urllib.request.urlopen(req, timeout=60).status
            except urllib.error.HTTPError as e:
                status = e.code
            if status != 200:
                sys.exit(f"push answered {status}; daemon log:\n" + open(f"{tmp}/daemon.log").read())
            deadline = time.time() + 30
            while len(fake.versions("bench-token")) == before:
                if time.time() > deadline:
                    sys.exit("no new version after the push; daemon log:\n" + open(f"{tmp}/daemon.log").read())
                time.sleep(0.001)
            times.append(time.perf_counter() - start)
        return times
    finally:
        d.terminate()
        d.wait()
        srv.shutdown()


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-gcp-")
    sim_env = dict(ENV, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret")
    sim, port, ca = simulator(BIN, tmp, sim_env)
    fake = Fake()
    try:
        fake.create("bench-credentials")
        fake.add("bench-credentials", json.dumps({"client_id": "bench-id", "client_secret": "bench-secret"}))
        fake.create("bench-token")
        head = (f'[deepvue]\nbase_url = "https://127.0.0.1:{port}"\nca_file = "{ca}"\n\n'
                f'[gcp]\nproject = "{PROJECT}"\nendpoint_url = "{fake.url}"\nanonymous = true\n\n')
        toml = head + ('[[tokens]]\nname = "prod"\n'
                       'credentials = { backend = "gcp", secret_id = "bench-credentials" }\n'
                       'store = { backend = "gcp", secret_id = "bench-token", keep_versions = 5 }\n')
        cfg = f"{tmp}/gcp.toml"
        with open(cfg, "w") as f:
            f.write(toml)
        w, r, code = run_in(["--config", cfg, "rotate"], env=ENV, binary=BIN)  # first mint
        if code != 0:
            sys.exit(f"first rotate exited {code}")

        if os.environ.get("BENCH_ONLY") == "push":
            print(push_latency(tmp, fake, toml, 3))
            return
        print("| scenario (gcp backend, Secret Manager fake on loopback) | runs | wall (median, p95, min) | peak RSS (max) | Secret Manager calls per run |")
        print("|---|---|---|---|---|")
        w, r, c = series(fake, ["--config", cfg, "rotate"], 40)
        print(f"| no-op `rotate`, 1 token | 40 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {fmt_calls(c[-1])} |")
        w, r, c = series(fake, ["--config", cfg, "rotate", "--force"], 3)
        print(f"| rotation `rotate --force`, 1 token, versions ≤ keep_versions | 3 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {fmt_calls(c[0])} |")
        w, r, c = series(fake, ["--config", cfg, "rotate", "--force"], 20)
        print(f"| rotation `rotate --force`, 1 token, steady state (GC destroys one) | 20 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {fmt_calls(c[-1])} |")
        acfg = f"{tmp}/gcp-alerts.toml"
        with open(acfg, "w") as f:
            f.write(toml + '\n[[alerts]]\nkind = "webhook"\nurl = "https://127.0.0.1:9/hook"\n')
        w, r, c = series(fake, ["--config", acfg, "rotate"], 40)
        print(f"| no-op `rotate`, 1 token, alert sink configured | 40 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {fmt_calls(c[-1])} |")

        t = push_latency(tmp, fake, toml, 10)
        print(f"\n| Pub/Sub push → new version listed (daemon, `schedule = false`) | 10 | {fmt_ms(t)} |")

        n = 1000
        blocks = []
        for i in range(n):
            fake.create(f"bench-t{i}")
            blocks.append(f'[[tokens]]\nname = "t{i}"\n'
                          'credentials = { backend = "gcp", secret_id = "bench-credentials" }\n'
                          f'store = {{ backend = "gcp", secret_id = "bench-t{i}" }}\n')
        many = f"{tmp}/many.toml"
        with open(many, "w") as f:
            f.write(head + "[rotation]\nconcurrency = 32\n\n" + "\n".join(blocks))
        print("\n| 1,000 `gcp` tokens, concurrency 32 | wall | peak RSS | Secret Manager calls |")
        print("|---|---|---|---|")
        for label, args in (("first pass (mints all)", ["rotate"]), ("no-op pass", ["rotate"]),
                            ("forced pass", ["rotate", "--force"])):
            before = fake.calls()
            w, r, code = run_in(["--config", many, *args], env=ENV, binary=BIN)
            if code != 0:
                sys.exit(f"{label} exited {code}")
            print(f"| {label} | {w:.2f} s | {r/1024:.1f} MiB | {fmt_calls(delta(before, fake.calls()))} |")
    finally:
        sim.terminate()
        fake.proc.terminate()
        sim.wait()
        fake.proc.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
