#!/usr/bin/env python3
"""Static checks of what terraform/modules/* grant, parsed with python-hcl2 (no providers).

  python3 tests/terraform/test_iam.py      (run by scripts/test-terraform.sh)

- aws-lambda: per trigger mode (schedule | secretsmanager_rotation) and with / without the
  rotator's own alerts, the execution role's rotator statements are exactly those of
  deploy/lambda/README.md (parsed from its JSON blocks, and equal to the lists below), scoped
  to the module's secret, topic and key ARNs, with the documented conditions. Per secret: the
  two secrets are `for_each = var.tokens`, and every statement on them lists exactly the ARNs
  of the map's secrets (the locals' for-expressions over those resources, expanded for a
  two-token map), never a pattern; native rotation and its Lambda permission are one per
  token secret, each scoped to that secret. The Lambda
  platform statements (logs, VPC ENIs, DLQ), the scheduler role and the flow-log role are
  exact lists too. No `*` or `service:*` action anywhere; a `*` resource only where AWS
  requires it (named below, with the reason).
- gcp-cloud-run: per token (secrets and grants `for_each = var.tokens`, keyed alike),
  roles/secretmanager.secretAccessor on that token's credentials secret only; on its token
  secret a custom role with exactly the eight permissions; no project-wide grants;
  job mode: roles/run.invoker on the job for the scheduler; push mode: publisher for the
  Secret Manager agent, OIDC audience = push endpoint, invoker IAM check off.
- vault: the policy is exactly credentials read / token data create,read,update / token
  metadata read,update per token path; roles bind only that policy.
- examples/aws-gcp-fanout: the GCP grants are the eight token permissions on the replica
  secret only, for the federated principalSet of exactly the Lambda's execution role (the
  provider's attribute condition names that role too); no project-level or service-account
  grants; the credential configuration is an aws1 external_account delivered as a layer and
  named by GOOGLE_APPLICATION_CREDENTIALS; the rotator runs scheduled.
- every module: no secret value resource (credentials never in state); every variable has a
  description and a type, every output a description; providers pinned with an upper bound;
  every `#checkov:skip` is listed with its reason in the module's (or example's) README.

Exits non-zero on the first failure, printing what it checked.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tfhcl  # noqa: E402
from tfhcl import blocks, expr, for_each_gate, gate, lit, locals_of, named, policy_statements  # noqa: E402

CHECKS = []


def check(cond, what, detail=""):
    if not cond:
        print(f"FAIL: {what}" + (f"\n      {detail}" if detail else ""), file=sys.stderr)
        sys.exit(1)
    CHECKS.append(what)
    print(f"ok   {what}")


# =============================================================================================
# AWS
# =============================================================================================

SM = "secretsmanager:"
# The statements on the secrets name these lists (one ARN per token of var.tokens).
CREDS = "${local.credentials_secret_arns}"
TOKEN = "${local.token_secret_arns}"
# A two-token map to expand them with: statements must list exactly these secrets' ARNs.
SAMPLE_TOKENS = ["prod", "staging"]
TOPIC = "${aws_sns_topic.alerts.arn}"
KEY = "${aws_kms_key.this.arn}"

# The lists the lead fixed (they must also equal deploy/lambda/README.md, checked below).
DOC_READ_CREDENTIALS = {f"{SM}GetSecretValue"}
DOC_ROTATE_TOKEN = {f"{SM}GetSecretValue", f"{SM}PutSecretValue", f"{SM}DescribeSecret"}
DOC_ROTATE_TOKEN_SECRET = {f"{SM}DescribeSecret", f"{SM}GetSecretValue", f"{SM}PutSecretValue", f"{SM}UpdateSecretVersionStage"}
DOC_ALERT_TAGS = {f"{SM}TagResource", f"{SM}UntagResource"}
DOC_ALERT_MARKER = {f"{SM}UpdateSecretVersionStage"}
DOC_ALERTS = {"sns:Publish"}
DOC_KMS = {"kms:Decrypt", "kms:GenerateDataKey"}

# `*` resources AWS requires, with the reason.
STAR_RESOURCE_ALLOWED = {
    ("platform", "VpcEniDescribe"): "ec2:DescribeNetworkInterfaces/DescribeSubnets support no resource-level "
    "permissions; Lambda's VPC ENI management needs them on \"*\" (AWS Lambda VPC docs)",
}


def readme_policy():
    """The documented statements of deploy/lambda/README.md: {sid: actions} of the scheduled
    policy, the native RotateTokenSecret actions, and the KMS statement."""
    with open(os.path.join(tfhcl.ROOT, "deploy", "lambda", "README.md")) as f:
        text = f.read()
    json_blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    scheduled = json.loads(json_blocks[0])
    native = json.loads(json_blocks[1])
    kms = json.loads(re.search(r"`(\{\"Effect\":\"Allow\",\"Action\":\[\"kms:[^`]*\})`", text).group(1))
    out = {s["Sid"]: (set(s["Action"]), s.get("Condition")) for s in scheduled["Statement"]}
    return out, (native["Sid"], set(native["Action"])), kms


def aws_rotator(doc, scheduled, alerting):
    docs = blocks(doc, "data", "aws_iam_policy_document")
    sources = expr(docs["rotator"]["source_policy_documents"])
    names = re.findall(r"data\.aws_iam_policy_document\.([a-z_]+)", sources)
    env = {"scheduled": scheduled, "native_rotation": not scheduled, "alerting": alerting}
    out = {}
    for name in names:
        if gate(docs[name].get("count"), env):
            for st in policy_statements(docs[name]):
                assert st["sid"] not in out, f"Sid {st['sid']} appears twice"
                out[st["sid"]] = st
    return out, names


def secret_lists(doc):
    """{"${local.X_secret_arns}": secret resource name} after checking each local is the
    for-expression `[for s in aws_secretsmanager_secret.<name> : s.arn]` over a resource with
    `for_each = var.tokens` (so the list holds exactly one ARN per token of the map)."""
    loc = locals_of(doc)
    secrets = blocks(doc, "resource", "aws_secretsmanager_secret")
    out = {}
    for local_name, secret in (("credentials_secret_arns", "credentials"), ("token_secret_arns", "token")):
        e = expr(loc[local_name])
        m = re.fullmatch(r"\[for (\w+) in aws_secretsmanager_secret\.(\w+)\s*:\s*\1\.arn\]", e)
        check(m and m.group(2) == secret, f"aws: local.{local_name} is [for s in aws_secretsmanager_secret.{secret} : s.arn]",
              f"got {e!r}")
        check(expr(secrets[secret]["for_each"]) == "var.tokens",
              f"aws: aws_secretsmanager_secret.{secret} is for_each = var.tokens (one per token)")
        out["${local.%s}" % local_name] = secret
    return out


def expand(resources, lists, tokens):
    """Statement resources with the secret-list locals expanded for `tokens` (one ARN per
    token, named `<secret>:<token>`); anything else is kept as written."""
    out = []
    for r in resources:
        if r in lists:
            out.extend(f"{lists[r]}:{t}" for t in tokens)
        else:
            out.append(r)
    return out


def check_aws():
    doc = tfhcl.load_module("aws-lambda")
    docs = blocks(doc, "data", "aws_iam_policy_document")
    loc = locals_of(doc)
    lists = secret_lists(doc)

    # ---- the documented lists ------------------------------------------------------------
    readme, (native_sid, native_actions), readme_kms = readme_policy()
    check(
        {k: v[0] for k, v in readme.items()} == {
            "ReadClientCredentials": DOC_READ_CREDENTIALS, "RotateToken": DOC_ROTATE_TOKEN,
            "AlertStateTags": DOC_ALERT_TAGS, "AlertStateMarker": DOC_ALERT_MARKER, "Alerts": DOC_ALERTS},
        "deploy/lambda/README.md scheduled policy == the lists this test holds",
    )
    check(native_sid == "RotateTokenSecret" and native_actions == DOC_ROTATE_TOKEN_SECRET,
          "deploy/lambda/README.md RotateTokenSecret == the list this test holds")
    check(set(readme_kms["Action"]) == DOC_KMS and "kms:ViaService" in readme_kms["Condition"]["StringEquals"],
          "deploy/lambda/README.md KMS statement: kms:Decrypt + kms:GenerateDataKey with kms:ViaService")
    readme_tag_cond = readme["AlertStateTags"][1]

    # ---- gates ---------------------------------------------------------------------------
    check(expr(loc["scheduled"]) == 'var.trigger == "schedule"'
          and expr(loc["native_rotation"]) == 'var.trigger == "secretsmanager_rotation"'
          and expr(loc["alerting"]) == "var.enable_rotator_alerts",
          "aws gates: scheduled / native_rotation from var.trigger, alerting from var.enable_rotator_alerts")
    role_policies = blocks(doc, "resource", "aws_iam_role_policy")
    check(expr(role_policies["rotator"]["policy"]) == "data.aws_iam_policy_document.rotator.json"
          and expr(role_policies["rotator"]["role"]) == "aws_iam_role.lambda.id",
          "aws: the execution role's rotator policy is data.aws_iam_policy_document.rotator")
    check(not blocks(doc, "resource", "aws_iam_role_policy_attachment") and not blocks(doc, "resource", "aws_iam_policy"),
          "aws: no managed-policy attachments (logs and VPC are inline equivalents, scoped)")

    # ---- per mode ------------------------------------------------------------------------
    expected_common = {"ReadClientCredentials": (DOC_READ_CREDENTIALS, [CREDS]), "SecretsKey": (DOC_KMS, [KEY])}
    modes = {
        ("schedule", True): {"RotateToken": (DOC_ROTATE_TOKEN, [TOKEN]), "AlertStateTags": (DOC_ALERT_TAGS, [TOKEN]),
                             "AlertStateMarker": (DOC_ALERT_MARKER, [TOKEN]), "Alerts": (DOC_ALERTS, [TOPIC])},
        ("schedule", False): {"RotateToken": (DOC_ROTATE_TOKEN, [TOKEN])},
        ("secretsmanager_rotation", True): {"RotateTokenSecret": (DOC_ROTATE_TOKEN_SECRET, [TOKEN]),
                                            "AlertStateTags": (DOC_ALERT_TAGS, [TOKEN]), "Alerts": (DOC_ALERTS, [TOPIC])},
        ("secretsmanager_rotation", False): {"RotateTokenSecret": (DOC_ROTATE_TOKEN_SECRET, [TOKEN])},
    }
    for (trigger, alerting), extra in modes.items():
        got, names = aws_rotator(doc, trigger == "schedule", alerting)
        want = dict(expected_common, **extra)
        check(set(got) == set(want), f"aws trigger={trigger} alerts={alerting}: statements {sorted(got)}",
              f"expected {sorted(want)}")
        for sid, (actions, resources) in want.items():
            st = got[sid]
            check(set(st["actions"]) == actions and len(st["actions"]) == len(actions) and st["effect"] == "Allow",
                  f"aws trigger={trigger} alerts={alerting}: {sid} actions == documented {sorted(actions)}",
                  f"got {st['actions']}")
            check(st["resources"] == resources, f"aws trigger={trigger} alerts={alerting}: {sid} scoped to {resources}",
                  f"got {st['resources']}")
            if any(r in lists for r in resources):
                kind = lists[resources[0]]
                got_arns = expand(st["resources"], lists, SAMPLE_TOKENS)
                check(got_arns == [f"{kind}:{t}" for t in SAMPLE_TOKENS] and not any("*" in r for r in got_arns),
                      f"aws trigger={trigger} alerts={alerting}: {sid} lists exactly the {kind} secret ARN of each "
                      f"token (tokens {SAMPLE_TOKENS} -> {got_arns})")
        tags = got.get("AlertStateTags")
        if tags:
            test, variable, values = tags["conditions"][0]
            want_test, want_cond = next(iter(readme_tag_cond.items()))
            check(len(tags["conditions"]) == 1 and test == want_test and {variable: values} == want_cond,
                  f"aws trigger={trigger}: AlertStateTags condition {test} {variable} {values} == README")
        kms = got["SecretsKey"]["conditions"]
        check(len(kms) == 1 and kms[0][0] == "StringEquals" and kms[0][1] == "kms:ViaService"
              and "secretsmanager.${local.region}.amazonaws.com" in kms[0][2]
              and ("sns.${local.region}.amazonaws.com" in kms[0][2]) and "local.alerting" in kms[0][2],
              f"aws trigger={trigger} alerts={alerting}: KMS only via secretsmanager (and sns when alerting)")
        actions = sorted({a for s in got.values() for a in s["actions"]})
        print(f"     -> {trigger}{' + alerts' if alerting else ''}: {', '.join(actions)}")

    # ---- platform, scheduler, flow logs: exact ---------------------------------------------
    def exact(name, want):
        got = {s["sid"]: (set(s["actions"]), s["resources"]) for s in policy_statements(docs[name])}
        check(got == want, f"aws {name} policy: exactly {sorted(want)}", f"got {got}")

    exact("platform", {
        "Logs": ({"logs:CreateLogStream", "logs:PutLogEvents"}, ["${aws_cloudwatch_log_group.lambda.arn}:*"]),
        "VpcEniDescribe": ({"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}, ["*"]),
        "VpcEniManage": ({"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                          "ec2:UnassignPrivateIpAddresses"}, ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:*/*"]),
        "DeadLetterQueue": ({"sqs:SendMessage"}, ["${aws_sqs_queue.dlq.arn}"]),
    })
    check(expr(role_policies["platform"]["policy"]) == "data.aws_iam_policy_document.platform.json",
          "aws: platform policy attached to the execution role")
    exact("scheduler", {
        "InvokeRotator": ({"lambda:InvokeFunction"}, ["${aws_lambda_function.rotator.arn}", "${aws_lambda_function.rotator.arn}:*"]),
        "DeadLetterQueue": ({"sqs:SendMessage"}, ["${aws_sqs_queue.dlq.arn}"]),
        "ScheduleKey": ({"kms:Decrypt"}, [KEY]),
    })
    check(expr(docs["scheduler"]["count"]) == "local.scheduled ? 1 : 0", "aws: the scheduler role exists only with trigger = schedule")
    exact("flow_logs", {
        "FlowLogsDelivery": ({"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"},
                             ["${aws_cloudwatch_log_group.flow_logs[0].arn}", "${aws_cloudwatch_log_group.flow_logs[0].arn}:*"]),
        "FlowLogsDescribeGroups": ({"logs:DescribeLogGroups"}, ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]),
    })
    for name, principal in (("lambda_assume", "lambda.amazonaws.com"), ("scheduler_assume", "scheduler.amazonaws.com"),
                            ("flow_logs_assume", "vpc-flow-logs.amazonaws.com")):
        sts = policy_statements(docs[name])
        check(len(sts) == 1 and sts[0]["actions"] == ["sts:AssumeRole"] and sts[0]["principals"] == [("Service", [principal])],
              f"aws {name}: only {principal} may assume the role")

    # ---- no wildcards ----------------------------------------------------------------------
    wild_actions, star_resources, n = [], [], 0
    for name, body in docs.items():
        for st in policy_statements(body):
            n += 1
            wild_actions += [f"{name}/{st['sid']}: {a}" for a in st["actions"] if a == "*" or a.endswith(":*")]
            if "*" in st["resources"] and (name, st["sid"]) not in STAR_RESOURCE_ALLOWED:
                star_resources.append(f"{name}/{st['sid']}")
    check(not wild_actions, f"aws: no `*` / `service:*` action in any of the {n} policy statements", f"found {wild_actions}")
    check(not star_resources, "aws: Resource \"*\" only where AWS requires it", f"found {star_resources}")
    for (name, sid), reason in STAR_RESOURCE_ALLOWED.items():
        print(f"     Resource \"*\" allowed: {name}/{sid}: {reason}")

    # The KMS key policy: the account-root delegation (AWS's default key policy statement, in a
    # key policy "*" is the key itself) is the only kms:* grant.
    key = blocks(doc, "resource", "aws_kms_key")["this"]
    policy = expr(key["policy"])
    check(policy.count('"kms:*"') == 1 and re.search(r'Sid\s*=\s*"EnableIamPolicies".*?:root".*?"kms:\*"', policy, re.S),
          "aws key policy: the only kms:* is the account-root delegation (EnableIamPolicies)")
    check(key["enable_key_rotation"] is True, "aws: KMS key rotation enabled")

    # ---- secrets, trigger wiring --------------------------------------------------------------
    check(not blocks(doc, "resource", "aws_secretsmanager_secret_version"),
          "aws: no aws_secretsmanager_secret_version (the credentials value never enters the state; the token secret starts empty)")
    secrets = blocks(doc, "resource", "aws_secretsmanager_secret")
    token = secrets["token"]
    ignore = [expr(x) for x in token["lifecycle"][0]["ignore_changes"]]
    check(ignore == ["tags"], "aws: token secrets ignore tag changes (the rotator's deepvue-rotator:state:* tags)")
    check(lit(secrets["credentials"]["name"]) == "${local.secret_prefixes[each.key]}/credentials"
          and lit(token["name"]) == "${local.secret_prefixes[each.key]}/token"
          and expr(loc["secret_prefixes"]) == '{for name, t in var.tokens : name => coalesce(t.secret_name_prefix, "deepvue/${name}")}',
          "aws: per token <prefix>/credentials and <prefix>/token, prefix default deepvue/<token name>")
    perm = blocks(doc, "resource", "aws_lambda_permission")["secretsmanager"]
    check(lit(perm["principal"]) == "secretsmanager.amazonaws.com" and expr(perm["source_account"]) == "local.account_id"
          and expr(perm["source_arn"]) == "aws_secretsmanager_secret.token[each.key].arn" and lit(perm["action"]) == "lambda:InvokeFunction"
          and for_each_gate(perm["for_each"], {"native_rotation": True}) == "var.tokens"
          and for_each_gate(perm["for_each"], {"native_rotation": False}) is None,
          "aws: one lambda:InvokeFunction permission per token secret for secretsmanager.amazonaws.com, scoped by "
          "source_account + source_arn = that secret (native mode only)")
    check("each.key" in lit(perm["statement_id"]) and "md5(each.key)" in lit(perm["statement_id"]),
          "aws: the permissions' statement ids are unique per token (name + hash)")
    rot = blocks(doc, "resource", "aws_secretsmanager_secret_rotation")["token"]
    check(for_each_gate(rot["for_each"], {"native_rotation": True}) == "var.tokens"
          and for_each_gate(rot["for_each"], {"native_rotation": False}) is None
          and expr(rot["secret_id"]) == "aws_secretsmanager_secret.token[each.key].id"
          and expr(rot["rotation_rules"][0]["schedule_expression"]) == "var.rotation_schedule_expression",
          "aws: one aws_secretsmanager_secret_rotation per token secret, native mode only, schedule_expression from the variable")
    sched = blocks(doc, "resource", "aws_scheduler_schedule")["rotator"]
    target = sched["target"][0]
    check(expr(sched["count"]) == "local.scheduled ? 1 : 0" and target.get("retry_policy") and
          expr(target["dead_letter_config"][0]["arn"]) == "aws_sqs_queue.dlq.arn",
          "aws: EventBridge schedule (schedule mode only) with retry policy and SQS DLQ")
    fn = blocks(doc, "resource", "aws_lambda_function")["rotator"]
    check(lit(fn["runtime"]) == "provided.al2023" and lit(fn["handler"]) == "bootstrap"
          and expr(fn["environment"][0]["variables"]) == "local.environment"
          and expr(loc["environment"]) == "merge(var.environment, {DEEPVUE_ROTATOR_CONFIG_TOML = local.config_toml})"
          and expr(fn["layers"]) == "var.layers",
          "aws: provided.al2023, handler bootstrap, config in DEEPVUE_ROTATOR_CONFIG_TOML (set last, over `environment`), layers from var.layers")
    variables = named(doc, "variable")
    env_validation = expr(variables["environment"]["validation"][0]["condition"])
    check('!contains(keys(var.environment), "DEEPVUE_ROTATOR_CONFIG_TOML")' in env_validation,
          "aws: `environment` may not set DEEPVUE_ROTATOR_CONFIG_TOML (validation)")
    tokens_type = expr(variables["tokens"]["type"])
    check(re.sub(r"\s", "", tokens_type) == "map(object({secret_name_prefix=optional(string),replicas=optional(list(map(string)),[])}))",
          f"aws: tokens is map(object({{secret_name_prefix, replicas}})) ({tokens_type})")
    preconditions = [expr(p["condition"]) for p in fn["lifecycle"][0]["precondition"]]
    check("local.scheduled || !local.has_replicas" in preconditions
          and expr(loc["has_replicas"]) == "anytrue([for t in values(var.tokens) : length(t.replicas) > 0])",
          "aws: replicas only with trigger = schedule (precondition: the native rotation function rotates one secret)")


# =============================================================================================
# GCP
# =============================================================================================

GCP_TOKEN_PERMISSIONS = [
    "secretmanager.secrets.get",
    "secretmanager.secrets.update",
    "secretmanager.versions.add",
    "secretmanager.versions.access",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
    "secretmanager.versions.destroy",
    "secretmanager.versions.disable",
]


def check_gcp():
    doc = tfhcl.load_module("gcp-cloud-run")
    loc = locals_of(doc)
    perms = [lit(p) for p in loc["token_secret_permissions"]]
    check(sorted(perms) == sorted(GCP_TOKEN_PERMISSIONS) and len(perms) == len(set(perms)),
          f"gcp: token secret custom role permissions == the documented {len(GCP_TOKEN_PERMISSIONS)}", f"got {perms}")
    check(all("*" not in p for p in perms), "gcp: no wildcard permission")
    role = blocks(doc, "resource", "google_project_iam_custom_role")["token_rotator"]
    check(expr(role["permissions"]) == "local.token_secret_permissions", "gcp: the custom role uses exactly that list")

    members = blocks(doc, "resource", "google_secret_manager_secret_iam_member")
    check(set(members) == {"credentials_accessor", "token_rotator"}, f"gcp: secret-level grants only {sorted(members)}")
    c, t = members["credentials_accessor"], members["token_rotator"]
    secrets = blocks(doc, "resource", "google_secret_manager_secret")
    check(set(secrets) == {"credentials", "token"} and all(expr(b["for_each"]) == "var.tokens" for b in secrets.values())
          and expr(c["for_each"]) == "var.tokens" and expr(t["for_each"]) == "var.tokens",
          "gcp: both secrets and both grants are for_each = var.tokens (one secret and one grant per token, same keys)")
    check(expr(loc["credentials_secret_ids"]).startswith("{for name, t in var.tokens : name => coalesce(t.credentials_secret_id,")
          and expr(loc["token_secret_ids"]).startswith("{for name, t in var.tokens : name => coalesce(t.token_secret_id,")
          and expr(secrets["credentials"]["secret_id"]) == "local.credentials_secret_ids[each.key]"
          and expr(secrets["token"]["secret_id"]) == "local.token_secret_ids[each.key]",
          "gcp: secret ids per token (defaults deepvue-<name>-credentials / -token)")
    rotator = "serviceAccount:${google_service_account.rotator.email}"
    check(lit(c["role"]) == "roles/secretmanager.secretAccessor"
          and expr(c["secret_id"]) == "google_secret_manager_secret.credentials[each.key].secret_id"
          and lit(c["member"]) == rotator, "gcp: roles/secretmanager.secretAccessor on each token's credentials secret only")
    check(expr(t["role"]) == "google_project_iam_custom_role.token_rotator.name"
          and expr(t["secret_id"]) == "google_secret_manager_secret.token[each.key].secret_id" and lit(t["member"]) == rotator,
          "gcp: the custom role on each token secret only")
    dyn = {k.strip('"'): v for d in secrets["token"].get("dynamic", []) for k, v in d.items()}
    check(set(dyn) == {"topics", "rotation"} and all(expr(dyn[k]["for_each"]) == "local.push ? [1] : []" for k in dyn)
          and expr(dyn["topics"]["content"][0]["name"]) == "google_pubsub_topic.rotation[0].id",
          "gcp push: every token secret carries the SECRET_ROTATE topic and the rotation schedule (push mode only)")
    for kind in ("google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy",
                 "google_secret_manager_secret_iam_binding", "google_secret_manager_secret_iam_policy"):
        check(not blocks(doc, "resource", kind), f"gcp: no {kind} (no project-wide or authoritative grants)")
    check(not blocks(doc, "resource", "google_secret_manager_secret_version"),
          "gcp: no google_secret_manager_secret_version (the credentials value never enters the state)")

    # job mode
    inv = blocks(doc, "resource", "google_cloud_run_v2_job_iam_member")["scheduler_invoker"]
    check(lit(inv["role"]) == "roles/run.invoker" and expr(inv["name"]) == "google_cloud_run_v2_job.rotator[0].name"
          and "google_service_account.scheduler[0].email" in inv["member"], "gcp job: roles/run.invoker on the job for the scheduler SA only")
    sj = blocks(doc, "resource", "google_cloud_scheduler_job")["rotator"]
    ht = sj["http_target"][0]
    check(lit(ht["http_method"]) == "POST"
          and lit(ht["uri"]) == "https://${var.region}-run.googleapis.com/apis/run.googleapis.com/v1/namespaces/${var.project_id}/jobs/${google_cloud_run_v2_job.rotator[0].name}:run"
          and lit(ht["oauth_token"][0]["scope"]) == "https://www.googleapis.com/auth/cloud-platform" and "oidc_token" not in ht,
          "gcp job: Cloud Scheduler POSTs jobs:run with an OAuth token (cloud-platform)")
    job = blocks(doc, "resource", "google_cloud_run_v2_job")["rotator"]
    jc = job["template"][0]["template"][0]
    check([lit(a) for a in jc["containers"][0]["args"]] == ["rotate"] and lit(jc["vpc_access"][0]["egress"]) == "ALL_TRAFFIC",
          "gcp job: `rotate`, Direct VPC egress ALL_TRAFFIC")

    # push mode
    svc = blocks(doc, "resource", "google_cloud_run_v2_service")["rotator"]
    st = svc["template"][0]
    check(svc["invoker_iam_disabled"] in (True, "${true}") and [lit(a) for a in st["containers"][0]["args"]] == ["daemon"]
          and lit(st["vpc_access"][0]["egress"]) == "ALL_TRAFFIC",
          "gcp push: service runs `daemon`, invoker IAM check disabled (the app verifies OIDC), egress ALL_TRAFFIC")
    pub = blocks(doc, "resource", "google_pubsub_topic_iam_member")["secretmanager_publisher"]
    check(lit(pub["role"]) == "roles/pubsub.publisher" and lit(pub["member"]) == "serviceAccount:${local.secretmanager_agent}"
          and lit(loc["secretmanager_agent"]) == "service-${local.project_number}@gcp-sa-secretmanager.iam.gserviceaccount.com",
          "gcp push: roles/pubsub.publisher on the topic for the Secret Manager service agent")
    sub = blocks(doc, "resource", "google_pubsub_subscription")["push"]
    pc = sub["push_config"][0]
    check(expr(pc["push_endpoint"]) == "local.push_endpoint" and expr(pc["oidc_token"][0]["audience"]) == "local.push_endpoint"
          and expr(pc["oidc_token"][0]["service_account_email"]) == "google_service_account.push[0].email"
          and lit(loc["push_endpoint"]) == "${local.service_url}/pubsub",
          "gcp push: push to <service url>/pubsub with OIDC (push SA, audience = endpoint)")
    check(not blocks(doc, "resource", "google_cloud_run_v2_service_iam_member"),
          "gcp push: no run.invoker binding on the service (its IAM check is off; the app authenticates pushes)")
    tc = blocks(doc, "resource", "google_service_account_iam_member")["pubsub_token_creator"]
    check(lit(tc["role"]) == "roles/iam.serviceAccountTokenCreator" and expr(tc["service_account_id"]) == "google_service_account.push[0].name",
          "gcp push: Pub/Sub agent may mint tokens for the push SA only")
    nat = blocks(doc, "resource", "google_compute_router_nat")["this"]
    check(lit(nat["nat_ip_allocate_option"]) == "MANUAL_ONLY" and expr(nat["nat_ips"]) == "google_compute_address.nat[*].self_link",
          "gcp: Cloud NAT on reserved static addresses (MANUAL_ONLY)")


# =============================================================================================
# Vault
# =============================================================================================

VAULT_EXPECTED = [
    ('path "secret/data/deepvue/prod/credentials"', ["read"]),
    ('path "secret/data/deepvue/prod/token"', ["create", "read", "update"]),
    ('path "secret/metadata/deepvue/prod/token"', ["read", "update"]),
]


def check_vault():
    doc = tfhcl.load_module("vault")
    loc = locals_of(doc)
    templates = {k: (lit(v["path"]), [lit(c) for c in v["capabilities"]]) for k, v in loc["rule_templates"].items()}
    check(templates == {
        "credentials_data": ("data/%s/credentials", ["read"]),
        "token_data": ("data/%s/token", ["create", "read", "update"]),
        "token_metadata": ("metadata/%s/token", ["read", "update"]),
    }, "vault: rule templates are exactly credentials read, token data create/read/update, token metadata read/update")
    rules = expr(loc["policy_rules"])
    keys = re.findall(r'for key in \[([^\]]*)\]', rules)
    check(keys and [k.strip().strip('"') for k in keys[0].split(",")] == ["credentials_data", "token_data", "token_metadata"]
          and "local.rule_templates[key].capabilities" in rules and 'format(local.rule_templates[key].path, prefix)' in rules
          and "for name, prefix in var.tokens" in rules,
          "vault: one rule per template per configured token path, nothing else")
    # Render for the README's example: mount "secret", token prefix deepvue/prod.
    rendered = [(f'path "secret/{path % "deepvue/prod"}"', caps) for path, caps in templates.values()]
    check(rendered == VAULT_EXPECTED, "vault: rendered policy for secret + deepvue/prod == the documented policy")
    for line, caps in rendered:
        print(f"     {line} {{ capabilities = {json.dumps(caps)} }}")
    dynamic = blocks(doc, "data", "vault_policy_document")["rotator"]["dynamic"][0]
    doc_rules = {k.strip('"'): v for k, v in dynamic.items()}["rule"]
    check(expr(doc_rules["for_each"]) == "concat(local.policy_rules, local.replica_rules)",
          "vault: the policy document is built from local.policy_rules and local.replica_rules only")
    replica_rules = expr(loc["replica_rules"])
    check("for name, rs in var.replicas" in replica_rules and 'for key in ["token_data", "token_metadata"]' in replica_rules
          and "local.rule_templates[key].capabilities" in replica_rules and 'if r.backend == "vault"' in replica_rules
          and 'replace(local.rule_templates[key].path, "%s/token", r.path)' in replica_rules,
          "vault: a vault replica (fan-out) gets exactly the token data + metadata rules on its own path, nothing else")
    for line, caps in [(f'path "kv/{templates[k][0].replace("%s/token", "deepvue/prod/token")}"', templates[k][1])
                       for k in ("token_data", "token_metadata")]:
        print(f"     replica {{ backend = \"vault\", mount = \"kv\", path = \"deepvue/prod/token\" }}: {line} {{ capabilities = {json.dumps(caps)} }}")
    pol = blocks(doc, "resource", "vault_policy")["rotator"]
    check(expr(pol["policy"]) == "data.vault_policy_document.rotator.hcl", "vault: vault_policy uses that document")
    for kind, name in (("vault_approle_auth_backend_role", "rotator"), ("vault_kubernetes_auth_backend_role", "rotator")):
        r = blocks(doc, "resource", kind)[name]
        check([expr(p) for p in r["token_policies"]] == ["vault_policy.rotator.name"], f"vault: {kind} bound to the rotator policy only")
    check(blocks(doc, "resource", "vault_approle_auth_backend_role")["rotator"]["bind_secret_id"] in (True, "${true}"),
          "vault: AppRole requires a secret_id")
    for kind in ("vault_kv_secret_v2", "vault_generic_secret", "vault_kv_secret", "vault_approle_auth_backend_role_secret_id"):
        check(not blocks(doc, "resource", kind), f"vault: no {kind} (no secret value or secret_id in the state)")


# =============================================================================================
# examples/aws-gcp-fanout: the GCP side of a cross-cloud fan-out
# =============================================================================================


def check_fanout_example():
    doc = tfhcl.load_example("aws-gcp-fanout")
    loc = locals_of(doc)
    mod = named(doc, "module")["deepvue_rotator"]
    check(lit(mod["source"]) == "../../modules/aws-lambda" and lit(mod["trigger"]) == "schedule",
          "fanout example: the rotator is modules/aws-lambda, trigger = schedule (fan-out needs it)")
    replicas = mod["tokens"]["prod"]["replicas"]
    check(len(mod["tokens"]) == 1 and len(replicas) == 1 and lit(replicas[0]["backend"]) == "gcp"
          and expr(replicas[0]["secret_id"]) == "google_secret_manager_secret.replica.id",
          "fanout example: token prod, primary in Secrets Manager (module), one replica: the GCP replica secret (full id)")
    check(lit(mod["environment"]["GOOGLE_APPLICATION_CREDENTIALS"]) == "/opt/gcp-wif.json"
          and [expr(x) for x in mod["layers"]] == ["aws_lambda_layer_version.gcp_wif.arn"],
          "fanout example: GOOGLE_APPLICATION_CREDENTIALS=/opt/gcp-wif.json from the module's layers")

    # The GCP grants: the eight token permissions, on the replica secret only.
    perms = [lit(p) for p in loc["token_secret_permissions"]]
    module_perms = [lit(p) for p in locals_of(tfhcl.load_module("gcp-cloud-run"))["token_secret_permissions"]]
    check(perms == module_perms and sorted(perms) == sorted(GCP_TOKEN_PERMISSIONS),
          f"fanout example: replica permissions == the module's {len(GCP_TOKEN_PERMISSIONS)} token permissions")
    role = blocks(doc, "resource", "google_project_iam_custom_role")
    check(list(role) == ["replica_writer"] and expr(role["replica_writer"]["permissions"]) == "local.token_secret_permissions",
          "fanout example: one custom role with exactly that list")
    members = blocks(doc, "resource", "google_secret_manager_secret_iam_member")
    check(list(members) == ["replica_writer"], f"fanout example: one secret-level grant {sorted(members)}")
    m = members["replica_writer"]
    check(expr(m["secret_id"]) == "google_secret_manager_secret.replica.secret_id"
          and expr(m["role"]) == "google_project_iam_custom_role.replica_writer.name"
          and expr(m["member"]) == "local.federated_rotator" and "for_each" not in m and "count" not in m,
          "fanout example: the custom role is bound on the replica secret only, for local.federated_rotator")
    check(lit(loc["federated_rotator"]) == "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.aws.name}"
          "/attribute.aws_role/${local.lambda_assumed_role}"
          and lit(loc["lambda_assumed_role"]) == "arn:${data.aws_partition.current.partition}:sts::"
          "${data.aws_caller_identity.current.account_id}:assumed-role/${module.deepvue_rotator.execution_role_name}",
          "fanout example: the member is the principalSet of exactly the Lambda's execution role (attribute.aws_role)")
    secrets = blocks(doc, "resource", "google_secret_manager_secret")
    check(list(secrets) == ["replica"], "fanout example: the only GCP secret is the replica")
    for kind in ("google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy",
                 "google_secret_manager_secret_iam_binding", "google_secret_manager_secret_iam_policy",
                 "google_service_account_iam_member", "google_service_account_iam_binding", "google_service_account",
                 "google_secret_manager_secret_version", "aws_secretsmanager_secret_version"):
        check(not blocks(doc, "resource", kind), f"fanout example: no {kind}")
    prov = blocks(doc, "resource", "google_iam_workload_identity_pool_provider")["aws"]
    mapping = {k.strip('"'): lit(v) for k, v in prov["attribute_mapping"].items()}
    check(expr(prov["aws"][0]["account_id"]) == "data.aws_caller_identity.current.account_id"
          and lit(prov["attribute_condition"]) == "attribute.aws_role == '${local.lambda_assumed_role}'"
          and mapping.get("google.subject") == "assertion.arn" and "assumed-role/{role_name}/" in mapping.get("attribute.aws_role", ""),
          "fanout example: AWS provider of this account; attribute condition = the Lambda's role only")

    # The credential configuration: external_account, aws1, in a layer at /opt/gcp-wif.json.
    cfg = loc["gcp_credential_config"]
    src = cfg["credential_source"]
    check(lit(cfg["type"]) == "external_account" and expr(cfg["audience"]) == "local.wif_audience"
          and lit(cfg["subject_token_type"]) == "urn:ietf:params:aws:token-type:aws4_request"
          and lit(cfg["token_url"]) == "https://sts.googleapis.com/v1/token"
          and {k: lit(v) for k, v in src.items()} == {
              "environment_id": "aws1",
              "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"},
          "fanout example: credential configuration external_account / aws4_request / aws1 (env credentials, no IMDS URLs)")
    check(re.fullmatch(r"//iam\.googleapis\.com/projects/\$\{[^}]+\}/locations/global/workloadIdentityPools/\$\{var\.workload_identity_pool_id\}"
                       r"/providers/\$\{var\.workload_identity_provider_id\}", lit(loc["wif_audience"])),
          "fanout example: audience //iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROV")
    archive = blocks(doc, "data", "archive_file")["gcp_wif"]
    layer = blocks(doc, "resource", "aws_lambda_layer_version")["gcp_wif"]
    check(expr(archive["source"][0]["content"]) == "jsonencode(local.gcp_credential_config)"
          and lit(archive["source"][0]["filename"]) == "gcp-wif.json"
          and expr(layer["filename"]) == "data.archive_file.gcp_wif.output_path",
          "fanout example: the configuration is gcp-wif.json in an archive_file zip, shipped as a Lambda layer")


# =============================================================================================
# All modules: variables, outputs, versions, checkov skips documented
# =============================================================================================


def check_common():
    for module in ("aws-lambda", "gcp-cloud-run", "vault"):
        doc = tfhcl.load_module(module)
        variables = {}
        for entry in doc.get("variable", []):
            for k, v in entry.items():
                variables[k.strip('"')] = v
        bad = [n for n, v in variables.items() if "description" not in v or "type" not in v]
        check(not bad, f"{module}: all {len(variables)} variables have a description and a type", f"missing: {bad}")
        outputs = {}
        for entry in doc.get("output", []):
            for k, v in entry.items():
                outputs[k.strip('"')] = v
        bad = [n for n, v in outputs.items() if "description" not in v]
        check(outputs and not bad, f"{module}: all {len(outputs)} outputs have a description", f"missing: {bad}")
        tf = doc["terraform"][0]
        providers = tf["required_providers"][0]
        pins = {k: lit(v["version"]) for k, v in providers.items() if not k.startswith("__")}
        check(all(re.search(r">=\s*[\d.]+,\s*<\s*[\d.]+", p) for p in pins.values()),
              f"{module}: provider versions pinned to ranges {pins}")
        with open(os.path.join(tfhcl.MODULES, module, "README.md")) as f:
            readme = f.read()
        for address, check_id, reason in tfhcl.skips(doc):
            check(len(reason) > 20 and check_id in readme and address in readme,
                  f"{module}: checkov skip {check_id} on {address} has a reason and is listed in the README")
            print(f"     skip {check_id} ({address}): {reason}")
    for example in sorted(os.listdir(os.path.join(tfhcl.ROOT, "terraform", "examples"))):
        path = os.path.join(tfhcl.ROOT, "terraform", "examples", example)
        with open(os.path.join(path, "main.tf")) as f:
            main = f.read()
        src = re.search(r'source\s*=\s*"\.\./\.\./modules/([a-z-]+)"', main)
        check(src and os.path.isdir(os.path.join(tfhcl.MODULES, src.group(1))) and os.path.exists(os.path.join(path, "versions.tf")),
              f"example {example} calls terraform/modules/{src.group(1) if src else '?'} and pins providers")
        for address, check_id, reason in tfhcl.skips(tfhcl.load_example(example)):
            readme_path = os.path.join(path, "README.md")
            readme = open(readme_path).read() if os.path.exists(readme_path) else ""
            check(len(reason) > 20 and check_id in readme and address in readme,
                  f"example {example}: checkov skip {check_id} on {address} has a reason and is listed in its README")
            print(f"     skip {check_id} ({address}): {reason}")


def main():
    check_aws()
    check_gcp()
    check_vault()
    check_fanout_example()
    check_common()
    print(f"test_iam: {len(CHECKS)} checks passed")


if __name__ == "__main__":
    main()
