"""Lean builds, run: each feature set a deployment ships is built and does one real rotation.

- `--no-default-features` (file and env only): a rotation against the simulator into a file
  store; a config naming `aws` is refused with the feature to build with.
- `--features lambda` (the Lambda bootstrap; lambda implies aws): a rotation against moto
  (AWS Secrets Manager emulator) through the CLI; a config naming `vault` is refused.
- `--features gcp,daemon` (the Cloud Run image): a rotation against the Secret Manager fake
  (plain JSON setup), then the daemon serves /healthz; a config naming `vault` is refused.

Called by scripts/test.sh with the test venv's python (moto and boto3 in it), after the full
build: the simulator and the fake come from that build (target/debug). Lean binaries go to
target/lean so the full build's binary stays as it is.
"""
import base64, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = os.path.join(ROOT, "target/debug/deepvue-rotator")
FAKE = os.path.join(ROOT, "target/debug/examples/gcp_fake")
LEAN = os.path.join(ROOT, "target/lean")
VENV = os.path.join(ROOT, ".tools/venv/bin")
CLIENT_ID, CLIENT_SECRET = "lean-client-id", "lean-client-secret"


def fail(msg):
    sys.exit(f"test-lean: {msg}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    for _ in range(600):
        if proc.poll() is not None:
            fail(f"{what} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    fail(f"{what} did not listen on 127.0.0.1:{port}")


def build(features):
    args = ["cargo", "build", "--quiet", "--locked", "--target-dir", LEAN, "--no-default-features"]
    if features:
        args += ["--features", features]
    print(f"== cargo build --no-default-features{' --features ' + features if features else ''}", flush=True)
    subprocess.run(args, cwd=ROOT, check=True)
    out = os.path.join(LEAN, f"deepvue-rotator-{features.replace(',', '-') or 'none'}")
    shutil.copy2(os.path.join(LEAN, "debug/deepvue-rotator"), out)
    return out


def run(binary, config, *args, env=None, expect=0):
    e = dict(env or BASE_ENV)
    p = subprocess.run([binary, "--config", config, "--log-format", "json", *args], env=e,
                       capture_output=True, text=True, timeout=120)
    if p.returncode != expect:
        fail(f"{os.path.basename(binary)} {' '.join(args)}: exit {p.returncode}, want {expect}\n"
             f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    for secret in (CLIENT_SECRET,) + tuple(ISSUED):
        if secret and (secret in p.stdout or secret in p.stderr):
            fail(f"{os.path.basename(binary)} printed a secret")
    return p


def rotated(p):
    report = json.loads(p.stdout)
    if report[0]["outcome"] != "rotated":
        fail(f"not rotated: {p.stdout}")
    return report[0]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def refused(binary, tmp, deepvue, backend, feature):
    store = {
        "aws": '{ backend = "aws", secret_id = "x" }',
        "vault": '{ backend = "vault", path = "x" }',
    }[backend]
    cfg = write(f"{tmp}/refused-{backend}.toml",
                f'{deepvue}[[tokens]]\nname = "prod"\ncredentials = {{ backend = "env" }}\nstore = {store}\n')
    p = run(binary, cfg, "rotate", expect=2)
    want = f"build with --features {feature}"
    if want not in p.stderr:
        fail(f"{os.path.basename(binary)}: a config naming `{backend}` must say `{want}`:\n{p.stderr}")
    print(f"ok {os.path.basename(binary)}: `{backend}` refused: {want}", flush=True)


ISSUED = []
BASE_ENV = {}


def main():
    # The simulator and the fake come from the full build (the fake is an example: built here).
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--example", "gcp_fake"], cwd=ROOT, check=True)
    for tool in (FULL, FAKE):
        if not os.access(tool, os.X_OK):
            fail(f"{tool} is missing: run after `cargo test --all-targets` (./scripts/test.sh)")
    tmp = tempfile.mkdtemp(prefix="deepvue-lean-")
    procs = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPVUE_", "AWS_", "GOOGLE_"))}
    env.update(DEEPVUE_CLIENT_ID=CLIENT_ID, DEEPVUE_CLIENT_SECRET=CLIENT_SECRET, RUST_LOG="info")
    BASE_ENV.update(env)
    try:
        # The Deepvue simulator (the full build's), its CA written for the lean binaries.
        sim_port = free_port()
        ca = f"{tmp}/ca.pem"
        sim = subprocess.Popen([FULL, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--ca-out", ca],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sim)
        wait_port(sim_port, sim, "the simulator")
        deepvue = f'[deepvue]\nbase_url = "https://127.0.0.1:{sim_port}"\nca_file = "{ca}"\n\n'

        # 1. No features: file store.
        none = build("")
        cfg = write(f"{tmp}/file.toml", f'{deepvue}[[tokens]]\nname = "prod"\ncredentials = {{ backend = "env" }}\n'
                    f'store = {{ backend = "file", path = "{tmp}/store/prod" }}\n')
        r = rotated(run(none, cfg, "rotate", "--json"))
        print(f"ok no features: rotated into a file store (version {r['version']})", flush=True)
        refused(none, tmp, deepvue, "aws", "aws")

        # 2. lambda (implies aws): a rotation against moto.
        moto_port = free_port()
        moto = subprocess.Popen([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(moto)
        wait_port(moto_port, moto, "moto_server (installed by ./scripts/test.sh)")
        import boto3  # from moto[server], in the test venv

        sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{moto_port}",
                          aws_access_key_id="test", aws_secret_access_key="test")
        sm.create_secret(Name="deepvue/creds",
                         SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        sm.create_secret(Name="deepvue/token")
        lam = build("lambda")
        cfg = write(f"{tmp}/aws.toml", f'{deepvue}[aws]\nregion = "us-east-1"\nendpoint_url = "http://127.0.0.1:{moto_port}"\n\n'
                    '[[tokens]]\nname = "prod"\ncredentials = { backend = "aws", secret_id = "deepvue/creds" }\n'
                    'store = { backend = "aws", secret_id = "deepvue/token" }\n')
        aws_env = dict(env, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_EC2_METADATA_DISABLED="true")
        rotated(run(lam, cfg, "rotate", "--json", env=aws_env))
        doc = json.loads(sm.get_secret_value(SecretId="deepvue/token")["SecretString"])
        ISSUED.append(doc["access_token"])
        if not doc["access_token"].startswith("simtok_"):
            fail("the lambda build wrote no token to AWSCURRENT")
        print("ok lambda: rotated into AWS Secrets Manager (moto)", flush=True)
        refused(lam, tmp, deepvue, "vault", "vault")

        # 3. gcp,daemon (the Cloud Run image): a rotation against the fake, then the daemon.
        fake = subprocess.Popen([FAKE, "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(fake)
        endpoint = fake.stdout.readline().strip()
        if not endpoint.startswith("http://127.0.0.1:"):
            fail(f"the fake printed no endpoint: {endpoint!r}")

        def call(method, path, body):
            req = urllib.request.Request(f"{endpoint}/v1/projects/lean/{path}", method=method,
                                         data=json.dumps(body).encode(), headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"{}")

        for sid in ("creds", "token"):
            call("POST", f"secrets?secretId={sid}", {"replication": {"automatic": {}}})
        payload = json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).encode()
        call("POST", "secrets/creds:addVersion", {"payload": {"data": base64.b64encode(payload).decode()}})
        run_ = build("gcp,daemon")
        daemon_port = free_port()
        cfg = write(f"{tmp}/gcp.toml", f'{deepvue}[gcp]\nproject = "lean"\nendpoint_url = "{endpoint}"\nanonymous = true\n\n'
                    f'[daemon]\nlisten = "127.0.0.1:{daemon_port}"\n\n'
                    '[[tokens]]\nname = "prod"\ncredentials = { backend = "gcp", secret_id = "creds" }\n'
                    'store = { backend = "gcp", secret_id = "token" }\n')
        rotated(run(run_, cfg, "rotate", "--json"))
        print("ok gcp,daemon: rotated into Secret Manager (the fake)", flush=True)
        d = subprocess.Popen([run_, "--config", cfg, "--log-format", "json", "daemon"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(d)
        wait_port(daemon_port, d, "the gcp,daemon build's daemon")
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{daemon_port}/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            fail("the gcp,daemon build's daemon never served /healthz")
        print("ok gcp,daemon: the daemon serves /healthz", flush=True)
        refused(run_, tmp, deepvue, "vault", "vault")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
