#!/usr/bin/env python3
"""Real rotations against moto with credentials holding only the aws-lambda module's policy.

  python3 tests/terraform/test_moto_iam.py     (run by scripts/test-terraform.sh)

What it does:
  1. Reads the scheduled-mode (trigger = schedule, alerts on: the module default) execution-role
     statements from terraform/modules/aws-lambda with python-hcl2 (tfhcl.py). The statements
     on the secrets name `local.credentials_secret_arns` / `local.token_secret_arns` (one ARN
     per token of the module's `tokens` map); they are rendered with the ARNs of a two-token
     map, `prod` and `staging`.
  2. Starts moto's server through tests/terraform/moto_resource_arns.py on 127.0.0.1
     (ephemeral port) with INITIAL_NO_AUTH_ACTION_COUNT set to exactly the number of set-up
     requests, so every later request is authenticated and authorised by moto's IAM emulation.
     The launcher tells moto each Secrets Manager / SNS request's resource ARN (moto itself
     authorises those services against "*", which no ARN-scoped statement matches), so moto
     enforces the statements' Resource lists as written.
  3. Set-up (unauthenticated, counted): per token of the map the two secrets (the credentials
     with a value, the token empty, as Terraform leaves them), the same pair for a token
     `other` outside the map, the SNS topic and a KMS key, and IAM users with access keys: the
     module policy; the module policy minus secretsmanager:PutSecretValue; and a read-only
     harness user for the assertions.
  4. Starts the rotator's built-in Deepvue simulator (`$BIN simulate`), renders the config with
     the module's own template (terraform/modules/aws-lambda/templates/config.toml.tftpl, via
     an offline `terraform apply` of a provider-less scratch config) for the two tokens plus
     local endpoints, and runs `$BIN rotate` with the users' keys: a first mint and a forced
     rotation must succeed for both tokens and add a version each; a forced rotation without
     PutSecretValue must fail naming `secretsmanager:PutSecretValue` and add nothing; and a
     config naming the `other` token's secrets (outside the map) must be denied and write
     nothing.

What moto enforces (moto 5.2.x, moto/core/responses.py + moto/iam/access_control.py; its docs
call the implementation "very basic"): SigV4 signatures and access keys, each statement's
Action and (with the launcher) Resource, wildcards allowed. Conditions are only evaluated for
StringEquals with values moto knows (ForAllValues:StringLike and kms:ViaService are ignored):
they are checked statically by test_iam.py. If moto ever stops honouring the ARN-scoped
policy the test fails: it no longer falls back to Resource "*".

One more moto gap: it answers an IAM denial with a query-protocol XML body (`<Code>AccessDenied`,
HTTP 403) even for JSON-protocol services such as Secrets Manager, where AWS sends HTTP 400
`{"__type": "AccessDeniedException", "Message": ...}`. The Rust SDK cannot read an error code
from that XML; the rotator classifies such a bare 403 as access denied all the same. The test runs
the denial both ways: against moto directly, and through a small pass-through proxy (`WireFix`)
that rewrites only such denials into the AWS JSON shape (the decision stays moto's; everything
else is forwarded byte for byte, SigV4 headers included), so the JSON path is covered too.

Env: DEEPVUE_ROTATOR_BIN (default target/debug/deepvue-rotator; not built here), MOTO_SERVER
(default .tools/venv-tf/bin/moto_server: its directory's python runs the launcher), TERRAFORM
(default terraform on PATH).
"""

import http.client
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tfhcl  # noqa: E402

ROOT = tfhcl.ROOT
REGION = "us-east-1"
BIN = os.environ.get("DEEPVUE_ROTATOR_BIN", os.path.join(ROOT, "target", "debug", "deepvue-rotator"))
MOTO = os.environ.get("MOTO_SERVER", os.path.join(ROOT, ".tools", "venv-tf", "bin", "moto_server"))
TERRAFORM = os.environ.get("TERRAFORM", shutil.which("terraform") or "terraform")
INSTALL_HINT = "run scripts/test-terraform.sh (it installs moto[server] and boto3 into .tools/venv-tf)"

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:
    sys.exit(f"boto3 is missing: {INSTALL_HINT}")

CHECKS = []


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    CHECKS.append(what)
    print(f"ok   {what}")


# ---------------------------------------------------------------------------------------------
# The module's scheduled-mode policy, from the HCL
# ---------------------------------------------------------------------------------------------


def module_statements():
    doc = tfhcl.load_module("aws-lambda")
    docs = tfhcl.blocks(doc, "data", "aws_iam_policy_document")
    sources = tfhcl.expr(docs["rotator"]["source_policy_documents"])
    names = re.findall(r"data\.aws_iam_policy_document\.([a-z_]+)", sources)
    env = {"scheduled": True, "native_rotation": False, "alerting": True}
    out = []
    for name in names:
        body = docs[name]
        if tfhcl.gate(body.get("count"), env):
            out.extend(tfhcl.policy_statements(body))
    return out


def render_policy(statements, refs, scope_resources, drop_action=None):
    """IAM JSON for moto: resources mapped from HCL references to moto ARNs (or "*")."""
    rendered = []
    for st in statements:
        actions = [a for a in st["actions"] if a != drop_action]
        if not actions:
            continue
        if scope_resources:
            resources = []
            for r in st["resources"]:
                m = re.fullmatch(r"\$\{([^}]+)\}(.*)", r)
                assert m and m.group(1) in refs, f"no moto ARN for resource {r!r} of {st['sid']}"
                ref = refs[m.group(1)]  # one ARN, or the list a `local.*_secret_arns` stands for
                resources.extend(a + m.group(2) for a in (ref if isinstance(ref, list) else [ref]))
        else:
            resources = ["*"]
        s = {"Sid": st["sid"], "Effect": st["effect"], "Action": actions, "Resource": resources}
        conds = {}
        for test, variable, values in st["conditions"]:
            if isinstance(values, str):  # an expression, e.g. concat([...ViaService...])
                values = re.findall(r'"([^"$]*(?:\$\{local\.region\}[^"]*)?)"', values)
            values = [v.replace("${local.region}", REGION) for v in values]
            conds.setdefault(test, {})[variable] = values
        if conds:
            s["Condition"] = conds
        rendered.append(s)
    return json.dumps({"Version": "2012-10-17", "Statement": rendered})


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def start(cmd, env, pattern, what, timeout=15):
    """Start a server, wait for `pattern` (with a port group) on its output, return (proc, port)."""
    log = tempfile.NamedTemporaryFile("w+", delete=False, suffix=".log")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log.name) as f:
            text = f.read()
        m = re.search(pattern, text)
        if m:
            return proc, int(m.group(1)), log.name
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log.name) as f:
        text = f.read()
    stop(proc)
    sys.exit(f"FAIL: {what} did not start ({' '.join(cmd)}):\n{text}")


def stop(proc):
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def render_config(work, values):
    """Render the module's config template with `values`, offline (no providers needed)."""
    os.makedirs(work)
    template = os.path.join(tfhcl.MODULES, "aws-lambda", "templates", "config.toml.tftpl")
    with open(os.path.join(work, "main.tf"), "w") as f:
        f.write(
            'variable "v" { type = any }\n'
            f'output "config" {{ value = templatefile({json.dumps(template)}, var.v) }}\n'
        )
    with open(os.path.join(work, "terraform.tfvars.json"), "w") as f:
        json.dump({"v": values}, f)
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_CLI_CONFIG_FILE="/dev/null", CHECKPOINT_DISABLE="1")
    for args in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-input=false", "-no-color"]):
        r = subprocess.run([TERRAFORM, *args], cwd=work, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"FAIL: terraform {args[0]} of the config template: {r.stdout}{r.stderr}")
    r = subprocess.run([TERRAFORM, "output", "-raw", "config"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


class WireFix:
    """Pass-through HTTP proxy to moto that rewrites moto's XML IAM denials of JSON-protocol
    requests (X-Amz-Target set) into what AWS sends: HTTP 400, x-amzn-ErrorType and
    {"__type": "AccessDeniedException", "Message": ...}. Counts the rewrites."""

    def __init__(self, upstream_port):
        self.rewrites = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.endheaders(body)
                resp = conn.getresponse()
                status, headers, data = resp.status, resp.getheaders(), resp.read()
                conn.close()
                target = self.headers.get("X-Amz-Target")
                m = re.search(rb"<Code>AccessDenied</Code>\s*<Message>(.*?)</Message>", data, re.S)
                if status == 403 and target and m:
                    message = m.group(1).decode()
                    proxy.rewrites.append((target, message))
                    data = json.dumps({"__type": "AccessDeniedException", "Message": message}).encode()
                    status = 400
                    headers = [("Content-Type", "application/x-amz-json-1.1"),
                               ("x-amzn-ErrorType", "AccessDeniedException")]
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


TOKENS = ["prod", "staging"]  # the module's `tokens` map in this test
OUTSIDE = "other"             # a token whose secrets are not in the map


def main():
    for path, hint in ((BIN, "build it with `cargo build` (this test does not build it), or set DEEPVUE_ROTATOR_BIN"),
                       (MOTO, INSTALL_HINT)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit(f"FAIL: {path} not found: {hint}")
    if not shutil.which(TERRAFORM) and not os.path.isfile(TERRAFORM):
        sys.exit("FAIL: terraform not found (https://developer.hashicorp.com/terraform/install), or set TERRAFORM")

    statements = module_statements()
    sids = [s["sid"] for s in statements]
    check(
        sids == ["ReadClientCredentials", "RotateToken", "AlertStateTags", "AlertStateMarker", "Alerts", "SecretsKey"],
        f"scheduled-mode statements read from the HCL: {sids}",
    )
    actions = sorted({a for s in statements for a in s["actions"]})
    print(f"     actions: {', '.join(actions)}")

    tmp = tempfile.mkdtemp(prefix="tf-moto-iam-")
    moto = sim = None
    try:
        # ---- moto with IAM enforcement after exactly SETUP_REQUESTS requests ----------------
        users = ["scoped", "scoped-no-put", "harness"]
        # two secrets per token (the map's and the outside one), topic, key, (user, policy, key) each
        setup_requests = 2 * (len(TOKENS) + 1) + 1 + 1 + 3 * len(users)
        moto_env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(setup_requests))
        py = os.path.join(os.path.dirname(MOTO), "python")
        launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_resource_arns.py")
        moto, moto_port, moto_log = start([py if os.path.exists(py) else sys.executable, launcher, "-H", "127.0.0.1", "-p", "0"],
                                          moto_env, r"Running on http://127\.0\.0\.1:(\d+)", "moto_server (moto_resource_arns.py)")
        endpoint = f"http://127.0.0.1:{moto_port}"

        def client(service, key=("setup", "setup")):
            return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                                aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                config=Config(retries={"max_attempts": 1}))

        sm, iam = client("secretsmanager"), client("iam")
        creds_arns, token_arns = {}, {}
        for name in TOKENS + [OUTSIDE]:
            creds_arns[name] = sm.create_secret(
                Name=f"deepvue/{name}/credentials",
                SecretString=json.dumps({"client_id": f"test-client-{name}", "client_secret": "test-secret"}))["ARN"]
            token_arns[name] = sm.create_secret(Name=f"deepvue/{name}/token")["ARN"]  # no value, like the module
        topic_arn = client("sns").create_topic(Name="deepvue-rotator-alerts")["TopicArn"]
        key_arn = client("kms").create_key(Description="deepvue-rotator")["KeyMetadata"]["Arn"]
        refs = {
            # What the module's for_each secrets give for tokens = { prod = {}, staging = {} }.
            "local.credentials_secret_arns": [creds_arns[n] for n in TOKENS],
            "local.token_secret_arns": [token_arns[n] for n in TOKENS],
            "aws_sns_topic.alerts.arn": topic_arn,
            "aws_kms_key.this.arn": key_arn,
        }
        policies = {
            "scoped": render_policy(statements, refs, True),
            "scoped-no-put": render_policy(statements, refs, True, "secretsmanager:PutSecretValue"),
            "harness": json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Resource": "*",
                "Action": ["secretsmanager:ListSecretVersionIds", "secretsmanager:GetSecretValue"]}]}),
        }
        scoped_resources = sorted({r for st in json.loads(policies["scoped"])["Statement"] for r in st["Resource"]
                                   if ":secretsmanager:" in r})
        check(scoped_resources == sorted([creds_arns[n] for n in TOKENS] + [token_arns[n] for n in TOKENS]),
              f"the module policy names exactly the {2 * len(TOKENS)} secrets of tokens {TOKENS} (not `{OUTSIDE}`'s), no wildcard")
        keys = {}
        for user in users:
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="deepvue-rotator", PolicyDocument=policies[user])
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])

        # ---- enforcement is on from here -----------------------------------------------------
        try:
            client("secretsmanager").get_secret_value(SecretId=creds_arns["prod"])
            denied = None
        except ClientError as e:
            denied = e.response["Error"]["Code"]
        check(denied is not None, f"moto enforces IAM after {setup_requests} set-up requests (unknown key -> {denied})")

        def can(user, fn, **kw):
            try:
                getattr(client("secretsmanager", keys[user]), fn)(**kw)
                return True
            except ClientError as e:
                # moto answers IAM denials with a query-protocol XML body even for JSON
                # services, so botocore reports the code as "403"; the message names the action.
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403 and "not authorized" in str(e), (
                    f"{fn} as {user}: {e}")
                return False

        for name in TOKENS:
            check(can("scoped", "get_secret_value", SecretId=creds_arns[name]),
                  f"scoped: GetSecretValue on {name}'s credentials (in the map) is allowed by its ARN")
        check(not can("scoped", "get_secret_value", SecretId=creds_arns[OUTSIDE]),
              f"scoped: GetSecretValue on `{OUTSIDE}`'s credentials (outside the map) is denied")
        check(not can("scoped", "put_secret_value", SecretId=token_arns[OUTSIDE], SecretString="{}"),
              f"scoped: PutSecretValue on `{OUTSIDE}`'s token secret (outside the map) is denied")
        check(not can("scoped", "list_secret_version_ids", SecretId=token_arns["prod"]),
              "scoped: ListSecretVersionIds (not in the policy) is denied")
        check(not can("scoped-no-put", "put_secret_value", SecretId=token_arns["prod"], SecretString="{}"),
              "scoped-no-put: PutSecretValue is denied")

        harness = client("secretsmanager", keys["harness"])

        def versions(name):
            return harness.list_secret_version_ids(SecretId=token_arns[name], IncludeDeprecated=True)["Versions"]

        # ---- Deepvue simulator and the module's config ---------------------------------------
        ca = os.path.join(tmp, "ca.pem")
        sim, sim_port, sim_log = start([BIN, "simulate", "--listen", "127.0.0.1:0", "--ca-out", ca],
                                       dict(os.environ), r"listening on https://127\.0\.0\.1:(\d+)", "deepvue-rotator simulate")
        wirefix = WireFix(moto_port)

        def config_for(aws_endpoint, name, tokens):
            extra = (f'[deepvue]\nbase_url = "https://127.0.0.1:{sim_port}"\nca_file = {json.dumps(ca)}\n\n'
                     f'[egress]\nprobe = false\n\n[aws]\nregion = "{REGION}"\nendpoint_url = "{aws_endpoint}"')
            config = render_config(os.path.join(tmp, name), {
                "renew_before": "12h", "run_every": "60m", "expected_ips": [],
                "tokens": {n: {"credentials_secret_arn": creds_arns[n], "token_secret_arn": token_arns[n], "replicas": []}
                           for n in tokens},
                "alert_environment": "test", "sns_topic_arn": topic_arn, "extra_config_toml": extra,
            })
            path = os.path.join(tmp, f"{name}.toml")
            with open(path, "w") as f:
                f.write(config)
            return path, config

        cfg, config = config_for(f"http://127.0.0.1:{wirefix.port}", "via-wirefix", TOKENS)
        cfg_raw, _ = config_for(endpoint, "direct", TOKENS)
        cfg_outside, _ = config_for(endpoint, "outside", [OUTSIDE])
        check("[[alerts]]" in config and all(token_arns[n] in config for n in TOKENS) and config.count("[[tokens]]") == 2,
              f"config rendered from the module template: tokens {TOKENS}, [[alerts]] sns")

        def rotate(user, *args, cfg=cfg):
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(AWS_ACCESS_KEY_ID=keys[user][0], AWS_SECRET_ACCESS_KEY=keys[user][1],
                       AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.path.join(tmp, "none"),
                       AWS_SHARED_CREDENTIALS_FILE=os.path.join(tmp, "none"), RUST_LOG="warn")
            r = subprocess.run([BIN, "--config", cfg, "--log-format", "text", "rotate", *args],
                               env=env, capture_output=True, text=True, timeout=120)
            return r.returncode, r.stdout + r.stderr

        rc, out = rotate("scoped")
        check(rc == 0, f"scoped: first run mints both tokens (exit {rc})" + ("" if rc == 0 else f"\n{out}"))
        for name in TOKENS:
            v1 = versions(name)
            check(len(v1) == 1 and "AWSCURRENT" in v1[0]["VersionStages"], f"{name}: token secret has 1 version, AWSCURRENT ({len(v1)})")
            doc = json.loads(harness.get_secret_value(SecretId=token_arns[name])["SecretString"])
            check(doc.get("access_token") and doc.get("expiry"), f"{name}: AWSCURRENT holds a token document (access_token, expiry)")

        rc, out = rotate("scoped", "--force")
        check(rc == 0, f"scoped: forced rotation of both tokens succeeds (exit {rc})" + ("" if rc == 0 else f"\n{out}"))
        for name in TOKENS:
            check(len(versions(name)) == 2, f"{name}: a forced rotation adds a version ({len(versions(name))} versions)")

        # Raw moto (XML denial, a bare 403): refused, named as access denied, nothing written.
        rc, out = rotate("scoped-no-put", "--force", cfg=cfg_raw)
        named = "the caller needs secretsmanager:PutSecretValue" in out
        check(rc != 0 and named and all(len(versions(n)) == 2 for n in TOKENS),
              f"scoped-no-put against moto directly: fails (exit {rc}) naming secretsmanager:PutSecretValue, nothing written"
              + ("" if (rc != 0 and named) else f"\n{out}"))
        line = next((l for l in out.splitlines() if "FAILED" in l), "")
        print(f"     rotator said (raw moto XML denial): {line.strip()[:240]}")

        # Through WireFix (the AWS JSON denial): the rotator's own access-denied message.
        rc, out = rotate("scoped-no-put", "--force")
        named = "the caller needs secretsmanager:PutSecretValue" in out
        check(rc != 0 and named, f"scoped-no-put: forced rotation fails (exit {rc}) naming secretsmanager:PutSecretValue"
              + ("" if (rc != 0 and named) else f"\n{out}"))
        line = next((l for l in out.splitlines() if "FAILED" in l), "")
        print(f"     rotator said: {line.strip()[:300]}")
        check(all(len(versions(n)) == 2 for n in TOKENS), "nothing was written without PutSecretValue (still 2 versions each)")
        check(any(t.endswith(".PutSecretValue") for t, _ in wirefix.rewrites),
              f"the denial came from moto's IAM evaluation ({len(wirefix.rewrites)} denial(s) rewritten, "
              f"e.g. {wirefix.rewrites[0][1] if wirefix.rewrites else '-'})")
        wirefix.close()

        # A token whose secrets are outside the module's map: the same policy denies it.
        rc, out = rotate("scoped", "--force", cfg=cfg_outside)
        denied = "access denied" in out and "secretsmanager:" in out
        check(rc != 0 and denied and len(versions(OUTSIDE)) == 0,
              f"scoped: a token outside the map (`{OUTSIDE}`) is denied (exit {rc}), nothing written"
              + ("" if (rc != 0 and denied) else f"\n{out}"))
        line = next((l for l in out.splitlines() if "FAILED" in l), "")
        print(f"     rotator said: {line.strip()[:300]}")
    finally:
        stop(sim)
        stop(moto)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"test_moto_iam: {len(CHECKS)} checks passed")


if __name__ == "__main__":
    main()
