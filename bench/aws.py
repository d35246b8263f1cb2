#!/usr/bin/env python3
"""AWS benchmarks for deepvue-rotator (see BENCHMARKS.md).

- The `aws` backend against a local moto_server: a no-op run and a rotation, whole process
  (wall time, peak RSS by GNU time), and the Secrets Manager calls each run made, counted from
  moto's request log (one line per API request).
- The Lambda handler's init time: process start until its first `GET
  /2018-06-01/runtime/invocation/next`, served by a minimal Runtime API in this script.

Usage: bench/aws.py BIN MOTO_SERVER
"""
import http.server, json, os, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import fmt_ms, free_port, run as run_in, simulator  # noqa: E402  (shared timing harness)

BIN = os.path.abspath(sys.argv[1])
MOTO = sys.argv[2]
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEEPVUE_"))}
BASE_ENV.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")


def run(args, env):
    return run_in(args, env=env, binary=BIN)


class Moto:
    def __init__(self, tmp):
        self.port = free_port()
        self.log = f"{tmp}/moto.log"
        self.proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("moto_server did not start; run ./scripts/test.sh to install it")

    def calls(self):
        with open(self.log) as f:
            return sum(1 for line in f if '"POST / HTTP' in line)

    def sm(self, target, body):
        import urllib.request
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers={
            "X-Amz-Target": f"secretsmanager.{target}",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        })
        return json.load(urllib.request.urlopen(req))


def series(moto, args, env, n):
    walls, rss, calls = [], [], []
    for _ in range(n):
        before = moto.calls()
        w, r, code = run(args, env)
        if code != 0:
            sys.exit(f"{args} exited {code}")
        time.sleep(0.1)  # moto logs after answering
        walls.append(w)
        rss.append(r)
        calls.append(moto.calls() - before)
    return walls, rss, calls


def lambda_init(env, n):
    """Spawn the binary as a Lambda function; time until its first /next request."""
    first = {}

    class RuntimeApi(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.endswith("/runtime/invocation/next") and "t" not in first:
                first["t"] = time.perf_counter()
                first["done"].set()
            # Never answer: the function stays parked until we kill it.
            first["release"].wait(10)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    fenv = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}", AWS_LAMBDA_FUNCTION_NAME="bench",
                AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", AWS_LAMBDA_FUNCTION_VERSION="1")
    times = []
    for _ in range(n):
        first.clear()
        first["done"], first["release"] = threading.Event(), threading.Event()
        start = time.perf_counter()
        p = subprocess.Popen([BIN], env=fenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not first["done"].wait(10):
            p.kill()
            sys.exit("the function never asked for an event")
        times.append(first["t"] - start)
        p.kill()
        p.wait()
        first["release"].set()
    server.shutdown()
    return times


def main():
    tmp = tempfile.mkdtemp(prefix="deepvue-bench-aws-")
    sim_env = dict(BASE_ENV, DEEPVUE_CLIENT_ID="bench-id", DEEPVUE_CLIENT_SECRET="bench-secret")
    sim, port, ca = simulator(BIN, tmp, sim_env)
    moto = Moto(tmp)
    try:
        moto.sm("CreateSecret", {"Name": "bench/creds", "SecretString": json.dumps(
            {"client_id": "bench-id", "client_secret": "bench-secret"})})
        moto.sm("CreateSecret", {"Name": "bench/token"})
        toml = (f'[deepvue]\nbase_url = "https://127.0.0.1:{port}"\nca_file = "{ca}"\n\n'
                f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.url}"\n\n'
                '[[tokens]]\nname = "prod"\n'
                'credentials = { backend = "aws", secret_id = "bench/creds" }\n'
                'store = { backend = "aws", secret_id = "bench/token" }\n')
        cfg = f"{tmp}/aws.toml"
        with open(cfg, "w") as f:
            f.write(toml)
        env = dict(BASE_ENV)
        w, r, code = run(["--config", cfg, "rotate"], env)  # first mint
        if code != 0:
            sys.exit(f"first rotate exited {code}")

        print("| scenario (aws backend, moto on loopback) | runs | wall (median, p95, min) | peak RSS (max) | Secrets Manager calls per run |")
        print("|---|---|---|---|---|")
        w, r, c = series(moto, ["--config", cfg, "rotate"], env, 40)
        print(f"| no-op `rotate`, 1 token | 40 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {min(c)}–{max(c)} |")
        w, r, c = series(moto, ["--config", cfg, "rotate", "--force"], env, 20)
        print(f"| rotation `rotate --force`, 1 token | 20 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {min(c)}–{max(c)} |")

        # The same token with an alert sink configured (never called on a healthy run).
        acfg = f"{tmp}/aws-alerts.toml"
        with open(acfg, "w") as f:
            f.write(toml + '\n[[alerts]]\nkind = "webhook"\nurl = "https://127.0.0.1:9/hook"\n')
        w, r, c = series(moto, ["--config", acfg, "rotate"], env, 40)
        print(f"| no-op `rotate`, 1 token, alert sink configured | 40 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {min(c)}–{max(c)} |")
        w, r, c = series(moto, ["--config", acfg, "rotate", "--force"], env, 20)
        print(f"| rotation `rotate --force`, 1 token, alert sink configured | 20 | {fmt_ms(w)} | {max(r)/1024:.1f} MiB | {min(c)}–{max(c)} |")

        lenv = dict(env, DEEPVUE_ROTATOR_CONFIG_TOML=toml)
        t = lambda_init(lenv, 40)
        print(f"\n| Lambda handler init (process start → first `GET …/invocation/next`) | 40 | {fmt_ms(t)} |")
    finally:
        sim.terminate()
        moto.proc.terminate()
        sim.wait()
        moto.proc.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
