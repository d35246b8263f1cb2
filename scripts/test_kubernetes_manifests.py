#!/usr/bin/env python3
"""Checks of deploy/kubernetes/ (run by scripts/test-kubernetes.sh, which installs the tools).

For every buildable kustomization under deploy/kubernetes (base, overlays/*/daemon,
overlays/*/cronjob, examples/monitoring; `kind: Component` directories are built through them):
- `kubectl kustomize DIR` renders it;
- `kubernetes-validate --strict -k 1.32.0` validates every rendered object. It has no schema
  for CRD kinds (ServiceMonitor, PrometheusRule, External Secrets): it warns and passes them. Those
  objects are listed as skipped; their metadata is validated against the ObjectMeta schema of
  the same package and their spec by the structural checks below. A skip of any other kind fails;
- policy checks on the rendered objects: Pod Security "restricted" for every pod spec, resources,
  service-account token only where the config needs one, CronJob / Deployment / PDB / Service /
  probes, ConfigMap mounted and named by --config, RBAC exactly as the `kubernetes` backend needs,
  no Secret with data, NetworkPolicy rules exactly as the config's backends need, identity
  annotations, ServiceMonitor / PrometheusRule against the daemon's metrics;
- the rendered config.toml is loaded by the rotator itself:
  `$DEEPVUE_ROTATOR_BIN --config F rotate --dry-run --token __none__` must fail with "no token
  named `__none__`" (the whole config loaded and validated, nothing attempted); any other
  error fails.
Then every YAML file under deploy/kubernetes/examples/ is parsed, validated where a schema exists
and cross-checked against the overlays' configs.

Prints one line per check and "N passed, M failed" last; exits 1 if anything failed.
Optional: with promtool on PATH (Debian `prometheus`) or $PROMTOOL, the PrometheusRule's rules
also go through `promtool check rules`; without it a `note` line says PromQL was not checked.
Env: KUBECTL, KUBERNETES_VALIDATE (set by the shell script), DEEPVUE_ROTATOR_BIN, PROMTOOL.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
BIN = os.environ.get("DEEPVUE_ROTATOR_BIN", os.path.join(ROOT, "target", "debug", "deepvue-rotator"))
KUBECTL = os.environ.get("KUBECTL", "kubectl")
KVALIDATE = os.environ.get("KUBERNETES_VALIDATE", "kubernetes-validate")
K8S_VERSION = "1.32.0"
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")

IMAGE = "ghcr.io/deepvue-rotator/deepvue-rotator"
CONFIG_DIR = "/etc/deepvue-rotator"
CONFIG_PATH = CONFIG_DIR + "/config.toml"
METRICS_PORT = 9464
SA_NAME = "deepvue-rotator"
IDENTITIES = ["kubernetes-store", "aws-irsa", "gke-workload-identity", "vault-kubernetes"]
# CRD kinds kubernetes-validate has no schema for: checked structurally here instead.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("external-secrets.io/v1", "SecretStore"),
    ("external-secrets.io/v1", "ClusterSecretStore"),
    ("external-secrets.io/v1", "ExternalSecret"),
}
# Keys the rotator refuses anywhere in a config (docs/src/configuration.md).
SECRET_KEYS = {"client_id", "client_secret", "access_token", "token", "secret", "password", "api_key",
               "x_api_key", "routing_key", "private_key"}
# Volume types Pod Security "restricted" allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

RESULTS = []


def check(cond, what, detail=""):
    RESULTS.append(bool(cond))
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))
    return bool(cond)


def rel(path):
    return os.path.relpath(path, K8S)


def kn(obj):
    return f"{obj.get('kind', '?').lower()}/{obj.get('metadata', {}).get('name', '?')}"


# ---------------------------------------------------------------------------------------------
# helpers on objects


def pod_specs(obj):
    """(label, pod spec, pod labels) of a workload object."""
    kind, spec = obj.get("kind"), obj.get("spec", {}) or {}
    if kind == "Pod":
        return [(kn(obj), spec, obj.get("metadata", {}).get("labels", {}) or {})]
    if kind == "CronJob":
        tpl = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
    elif kind in WORKLOAD_KINDS:
        tpl = spec.get("template", {})
    else:
        return []
    return [(kn(obj), tpl.get("spec", {}) or {}, tpl.get("metadata", {}).get("labels", {}) or {})]


def containers(pod):
    return list(pod.get("initContainers", []) or []) + list(pod.get("containers", []) or []) + \
        list(pod.get("ephemeralContainers", []) or [])


def restricted_problems(pod):
    """Pod Security "restricted" (plus this project's stricter rules) for one pod spec."""
    out = []
    psc = pod.get("securityContext", {}) or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{key}: true")
    for v in pod.get("volumes", []) or []:
        types = set(v) - {"name"}
        if not types <= RESTRICTED_VOLUMES:
            out.append(f"volume {v.get('name')}: type {sorted(types)} not allowed")
    if psc.get("sysctls"):
        out.append("pod sysctls set")
    emptydirs = {v["name"] for v in pod.get("volumes", []) or [] if "emptyDir" in v}
    for c in containers(pod):
        name = c.get("name")
        csc = c.get("securityContext", {}) or {}

        def eff(key):
            return csc.get(key, psc.get(key))

        if eff("runAsNonRoot") is not True:
            out.append(f"{name}: runAsNonRoot is not true")
        for key in ("runAsUser", "runAsGroup"):
            v = eff(key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                out.append(f"{name}: {key} is not a numeric non-root id ({v!r})")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            out.append(f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        if csc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if csc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: readOnlyRootFilesystem is not true")
        if csc.get("privileged"):
            out.append(f"{name}: privileged")
        caps = csc.get("capabilities", {}) or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities do not drop ALL")
        if caps.get("add"):
            out.append(f"{name}: capabilities add {caps['add']}")
        if csc.get("procMount") not in (None, "Default"):
            out.append(f"{name}: procMount {csc.get('procMount')}")
        for p in c.get("ports", []) or []:
            if p.get("hostPort"):
                out.append(f"{name}: hostPort {p['hostPort']}")
        res = c.get("resources", {}) or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    out.append(f"{name}: no {part}.{r}")
        for m in c.get("volumeMounts", []) or []:
            if m.get("name") in emptydirs and m.get("mountPath") != "/tmp":
                out.append(f"{name}: emptyDir {m['name']} mounted at {m.get('mountPath')}, not /tmp")
    return out


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def backends(cfg):
    """Every backend the config's tokens name (credentials and stores)."""
    out = set()
    for t in cfg.get("tokens", []):
        out.add(t.get("credentials", {}).get("backend"))
        for s in ([t["store"]] if "store" in t else []) + list(t.get("stores", [])):
            out.add(s.get("backend"))
    return out - {None}


def needs_api_token(cfg):
    """The in-cluster `kubernetes` backend and Vault's Kubernetes auth read the pod's SA token."""
    vault_k8s = "vault" in backends(cfg) and cfg.get("vault", {}).get("auth", {}).get("method") == "kubernetes"
    return "kubernetes" in backends(cfg) or vault_k8s


def expected_egress_extras(cfg):
    """NetworkPolicy egress rules beyond DNS and TCP 443 that the config's backends need:
    (protocol, port, cidr or None for anywhere)."""
    b = backends(cfg)
    out = set()
    if "kubernetes" in b:
        out.add(("TCP", 6443, None))  # the API server's endpoint port (443 is in the base)
    if "aws" in b:
        out.add(("TCP", 80, "169.254.170.23/32"))  # EKS Pod Identity Agent
    if "gcp" in b:
        out.add(("TCP", 80, "169.254.169.254/32"))  # GKE metadata server
        out.add(("TCP", 988, "169.254.169.252/32"))
    if "vault" in b:
        m = re.match(r"^https://[^/:]+(?::(\d+))?", cfg.get("vault", {}).get("address", ""))
        port = int(m.group(1)) if m and m.group(1) else 443
        if port != 443:
            out.add(("TCP", port, None))
    return out


def kubernetes_secret_names(cfg):
    creds, stores = set(), set()
    for t in cfg.get("tokens", []):
        c = t.get("credentials", {})
        if c.get("backend") == "kubernetes":
            creds.add(c.get("secret_name"))
        for s in ([t["store"]] if "store" in t else []) + list(t.get("stores", [])):
            if s.get("backend") == "kubernetes":
                stores.add(s.get("secret_name"))
    return creds, stores


def secret_keys_in(doc, path=""):
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{path}.{k}" if path else k
            if k.lower() in SECRET_KEYS:
                out.append(p)
            out += secret_keys_in(v, p)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += secret_keys_in(v, f"{path}[{i}]")
    return out


def duration_secs(s):
    total, pos = 0, 0
    for m in re.finditer(r"(\d+)\s*(ms|s|m|h|d)", s):
        total += int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        pos += 1
    return total if pos else None


def systemd_metrics():
    """Metric names of deploy/systemd/README.md's table (the daemon's /metrics)."""
    text = open(os.path.join(ROOT, "deploy", "systemd", "README.md")).read()
    return set(re.findall(r"^\| `(deepvue_rotator_[a-z_]+)` \|", text, re.M))


# ---------------------------------------------------------------------------------------------
# tools


def render(path):
    r = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return [d for d in yaml.safe_load_all(r.stdout) if d], ""


def kubernetes_validate(label, objs, tmp):
    """Run the CLI over one file per object; return {index: (status, message)}."""
    files = []
    d = tempfile.mkdtemp(dir=tmp)
    for i, o in enumerate(objs):
        f = os.path.join(d, f"{i:03d}.yaml")
        with open(f, "w") as fh:
            yaml.safe_dump(o, fh)
        files.append(f)
    r = subprocess.run([KVALIDATE, "--strict", "-k", K8S_VERSION, *files], capture_output=True, text=True,
                       timeout=300)
    out = {}
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"^(INFO|ERROR|WARN|FATAL) (\S+) (.*)$", line)
        if m and m.group(2) in files:
            idx = files.index(m.group(2))
            status = {"INFO": "passed", "ERROR": "error", "WARN": "skipped", "FATAL": "error"}[m.group(1)]
            if out.get(idx, ("passed",))[0] == "passed":  # keep the worst line
                out[idx] = (status, m.group(3))
        elif line.startswith("FATAL"):
            out[-1] = ("error", line)
    return r.returncode, out


def object_meta_validator():
    """ObjectMeta from kubernetes-validate's own strict 1.32 schemas, for CRD objects."""
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    path = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        f"v{K8S_VERSION}-local-strict", "_definitions.json")
    defs = json.load(open(path))
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": f"{defs['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    registry = Resource.from_contents(defs) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_objects(label, objs, tmp, meta_validator):
    rc, res = kubernetes_validate(label, objs, tmp)
    passed = [i for i, (s, _) in res.items() if s == "passed" and i >= 0]
    errors = [f"{kn(objs[i]) if i >= 0 else ''}: {m}" for i, (s, m) in res.items() if s == "error"]
    skipped = [i for i, (s, _) in res.items() if s == "skipped"]
    missing = [kn(objs[i]) for i in range(len(objs)) if i not in res]
    bad_skips = [kn(objs[i]) for i in skipped if (objs[i].get("apiVersion"), objs[i].get("kind")) not in CRD_KINDS]
    check(not errors and not missing and not bad_skips and rc == 0,
          f"{label}: kubernetes-validate --strict -k {K8S_VERSION}: {len(passed)} of {len(objs)} objects pass"
          + (f", {len(skipped)} CRD object(s) skipped" if skipped else ""),
          "; ".join(errors + [f"no result for {m}" for m in missing]
                    + [f"no schema for built-in kind {b}" for b in bad_skips]) or f"exit {rc}")
    if skipped:
        names = ", ".join(f"{kn(objs[i])} ({objs[i].get('apiVersion')})" for i in skipped)
        meta_errors = []
        for i in skipped:
            for e in meta_validator.iter_errors(objs[i].get("metadata", {})):
                meta_errors.append(f"{kn(objs[i])}: metadata.{'.'.join(map(str, e.path))}: {e.message}")
        check(not meta_errors, f"{label}: skipped by kubernetes-validate (CRD, no schema offline): {names}; "
              "their metadata validates as ObjectMeta, their spec is checked structurally below",
              "; ".join(meta_errors))


def binary_loads(label, text, tmp):
    path = os.path.join(tmp, re.sub(r"[^A-Za-z0-9]+", "-", label) + ".config.toml")
    with open(path, "w") as f:
        f.write(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPVUE_ROTATOR_CONFIG")}
    env["RUST_LOG"] = "error"
    r = subprocess.run([BIN, "--config", path, "rotate", "--dry-run", "--token", "__none__"], capture_output=True,
                       text=True, timeout=60, env=env)
    out = (r.stdout + r.stderr).strip()
    ok = r.returncode == 2 and re.search(r"no token named `__none__`", out) is not None
    hint = ""
    if re.search(r"unknown (field|variant) `kubernetes`", out):
        hint = " [this binary has no `kubernetes` backend yet]"
    check(ok, f"{label}: config.toml loads in {os.path.relpath(BIN, ROOT)} "
          "(rotate --dry-run --token __none__ stops at the unknown token)", f"exit {r.returncode}: {out}{hint}")


# ---------------------------------------------------------------------------------------------
# per-overlay policy checks


def check_overlay(label, objs, tmp):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)

    def named(kind, name):
        return next((o for o in by_kind.get(kind, []) if o["metadata"]["name"] == name), None)

    # Namespace
    nss = by_kind.get("Namespace", [])
    check(len(nss) == 1 and nss[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
          f"{label}: one Namespace, labelled pod-security.kubernetes.io/enforce=restricted",
          f"{[n['metadata'] for n in nss]}")
    ns = nss[0]["metadata"]["name"] if nss else None
    stray = [kn(o) for o in objs if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")
             and o["metadata"].get("namespace") != ns]
    check(not stray, f"{label}: every namespaced object is in namespace {ns}", f"{stray}")
    check(not by_kind.get("ClusterRole") and not by_kind.get("ClusterRoleBinding"),
          f"{label}: no ClusterRole / ClusterRoleBinding")

    # Config
    configs = [(o, o.get("data", {}).get("config.toml")) for o in by_kind.get("ConfigMap", [])]
    configs = [(o, t) for o, t in configs if t is not None]
    workloads = [o for o in objs if o["kind"] in WORKLOAD_KINDS]
    cfg = {}
    if workloads:
        check(len(configs) == 1, f"{label}: one ConfigMap with config.toml", f"found {len(configs)}")
    if configs:
        cm, text = configs[0]
        try:
            cfg = tomllib.loads(text)
            check(True, f"{label}: {kn(cm)} config.toml is valid TOML with {len(cfg.get('tokens', []))} token(s), "
                  f"backends {sorted(backends(cfg))}")
        except tomllib.TOMLDecodeError as e:
            check(False, f"{label}: {kn(cm)} config.toml is valid TOML", str(e))
        keys = secret_keys_in(cfg)
        check(not keys, f"{label}: config.toml holds no secret-looking key", f"{keys}")
        daemon = cfg.get("daemon", {})
        if by_kind.get("Deployment"):
            check(daemon.get("listen") == f"0.0.0.0:{METRICS_PORT}" and daemon.get("status_endpoints") is not True
                  and daemon.get("metrics_endpoint") is not False,
                  f"{label}: [daemon] listen = 0.0.0.0:{METRICS_PORT}, status_endpoints left off, /metrics on",
                  f"{daemon}")
        binary_loads(label, text, tmp)

    # ServiceAccount and identity annotations
    sa = named("ServiceAccount", SA_NAME)
    if workloads:
        check(sa is not None, f"{label}: ServiceAccount {SA_NAME}")
    if sa is not None and cfg:
        ann = sa["metadata"].get("annotations", {}) or {}
        b = backends(cfg)
        want = set()
        if "aws" in b:
            want.add("eks.amazonaws.com/role-arn")
            check(re.match(r"^arn:aws:iam::\d{12}:role/.+", ann.get("eks.amazonaws.com/role-arn", "")),
                  f"{label}: ServiceAccount annotated eks.amazonaws.com/role-arn (IRSA)", f"{ann}")
        if "gcp" in b:
            want.add("iam.gke.io/gcp-service-account")
            check(ann.get("iam.gke.io/gcp-service-account", "").endswith(".iam.gserviceaccount.com"),
                  f"{label}: ServiceAccount annotated iam.gke.io/gcp-service-account (Workload Identity)", f"{ann}")
        extra = {k for k in ann if k.startswith(("eks.amazonaws.com/", "iam.gke.io/"))} - want
        check(not extra, f"{label}: no cloud identity annotation the config does not use", f"{sorted(extra)}")

    # Workloads
    for o in workloads:
        for plabel, pod, plabels in pod_specs(o):
            where = f"{label}: {plabel}"
            probs = restricted_problems(pod)
            check(not probs, f"{where}: pod is Pod Security restricted (non-root {pod.get('securityContext', {}).get('runAsUser')}, "
                  "RO rootfs, no privilege escalation, drop ALL, seccomp RuntimeDefault) with requests/limits",
                  "; ".join(probs))
            sa_auto = sa.get("automountServiceAccountToken", True) if sa else True
            auto = pod.get("automountServiceAccountToken", sa_auto)
            need = needs_api_token(cfg)
            check(auto is need, f"{where}: service-account token mounted: {auto} (needed by the config: {need})")
            check(pod.get("serviceAccountName") == SA_NAME, f"{where}: runs as ServiceAccount {SA_NAME}")
            rot = [c for c in pod.get("containers", []) if c.get("image", "").split("@")[0].rsplit(":", 1)[0] == IMAGE]
            if not check(len(rot) == 1, f"{where}: one rotator container, image {IMAGE}",
                         f"{[c.get('image') for c in pod.get('containers', [])]}"):
                continue
            c = rot[0]
            args = c.get("args", []) or []
            env = {e["name"]: e for e in c.get("env", []) or []}
            by_flag = args[:2] == ["--config", CONFIG_PATH]
            by_env = env.get("DEEPVUE_ROTATOR_CONFIG", {}).get("value") == CONFIG_PATH
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", []) or []}
            vols = {v["name"]: v for v in pod.get("volumes", []) or []}
            m = mounts.get(CONFIG_DIR)
            cm_name = vols.get(m["name"], {}).get("configMap", {}).get("name") if m else None
            check((by_flag or by_env) and cm_name is not None and any(cm["metadata"]["name"] == cm_name for cm, _ in configs)
                  and (m or {}).get("readOnly") is True,
                  f"{where}: ConfigMap {cm_name} mounted read-only at {CONFIG_DIR}, named by "
                  f"{'--config' if by_flag else 'DEEPVUE_ROTATOR_CONFIG'}", f"args {args}, mounts {list(mounts)}")
            secret_env = [e["name"] for e in env.values() if "secretKeyRef" in (e.get("valueFrom") or {})
                          or e["name"].startswith("DEEPVUE_CLIENT_")]
            secret_env += [f"envFrom {x}" for x in c.get("envFrom", []) or [] if "secretRef" in x]
            check(not secret_env, f"{where}: no Deepvue credentials in env vars (read by the credentials backend)",
                  f"{secret_env}")
            if o["kind"] == "CronJob":
                s, js = o["spec"], o["spec"]["jobTemplate"]["spec"]
                check(s.get("concurrencyPolicy") == "Forbid" and isinstance(s.get("startingDeadlineSeconds"), int)
                      and isinstance(js.get("backoffLimit"), int) and isinstance(s.get("successfulJobsHistoryLimit"), int)
                      and isinstance(s.get("failedJobsHistoryLimit"), int)
                      and pod.get("restartPolicy") in ("Never", "OnFailure") and args[-1:] == ["rotate"],
                      f"{where}: runs `rotate`, concurrencyPolicy Forbid, startingDeadlineSeconds "
                      f"{s.get('startingDeadlineSeconds')}, backoffLimit {js.get('backoffLimit')}, history limits "
                      f"{s.get('successfulJobsHistoryLimit')}/{s.get('failedJobsHistoryLimit')}",
                      f"{s}")
            if o["kind"] == "Deployment":
                check(o["spec"].get("replicas") == 2 and args[-1:] == ["daemon"],
                      f"{where}: runs `daemon` with 2 replicas", f"replicas {o['spec'].get('replicas')}, args {args}")
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", []) or []}

                def probe_ok(probe, path):
                    g = (c.get(probe) or {}).get("httpGet", {})
                    port = g.get("port")
                    return g.get("path") == path and ports.get(port, port) == METRICS_PORT

                check(probe_ok("livenessProbe", "/healthz") and probe_ok("readinessProbe", "/readyz"),
                      f"{where}: liveness /healthz and readiness /readyz on port {METRICS_PORT}",
                      f"{c.get('livenessProbe')} {c.get('readinessProbe')}")
                pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
                        if selects(p["spec"].get("selector", {}).get("matchLabels"), plabels)]
                check(len(pdbs) == 1 and (pdbs[0]["spec"].get("minAvailable") == 1 or pdbs[0]["spec"].get("maxUnavailable") == 1),
                      f"{where}: a PodDisruptionBudget keeps 1 of the 2 replicas", f"{[p['spec'] for p in pdbs]}")
                svcs = [s for s in by_kind.get("Service", []) if selects(s["spec"].get("selector"), plabels)]
                svc_ok = any(ports.get(p.get("targetPort"), p.get("targetPort")) == METRICS_PORT
                             for s in svcs for p in s["spec"].get("ports", []))
                check(svc_ok, f"{where}: a Service exposes the metrics port {METRICS_PORT}",
                      f"{[s['spec'] for s in svcs]}")

    # RBAC: exactly what the kubernetes backend needs, by name
    creds, stores = kubernetes_secret_names(cfg)
    roles = by_kind.get("Role", [])
    if stores or creds:
        want = set()
        for s in stores:
            want |= {("", "secrets", s, v) for v in ("get", "update", "patch")}
        for s in creds:
            want.add(("", "secrets", s, "get"))
        got, unnamed = set(), []
        for r in roles:
            for rule in r.get("rules", []):
                if not rule.get("resourceNames"):
                    unnamed.append(rule)
                for g in rule.get("apiGroups", []):
                    for res in rule.get("resources", []):
                        for n in rule.get("resourceNames", []) or ["*"]:
                            for v in rule.get("verbs", []):
                                got.add((g, res, n, v))
        check(got == want and not unnamed,
              f"{label}: Role grants exactly get/update/patch on secrets {sorted(stores)} and get on {sorted(creds)}, "
              "by resourceNames (no create, list, watch, delete)",
              f"extra {sorted(got - want)}, missing {sorted(want - got)}, rules without resourceNames {unnamed}")
        rbs = [b for b in by_kind.get("RoleBinding", []) if b["roleRef"].get("kind") == "Role"
               and b["roleRef"].get("name") in {r["metadata"]["name"] for r in roles}]
        check(any(s.get("kind") == "ServiceAccount" and s.get("name") == SA_NAME and s.get("namespace") == ns
                  for b in rbs for s in b.get("subjects", [])) and len(rbs) == len(by_kind.get("RoleBinding", [])),
              f"{label}: RoleBinding binds the Role to ServiceAccount {ns}/{SA_NAME}")
    else:
        check(not roles and not by_kind.get("RoleBinding"), f"{label}: no Role / RoleBinding (no kubernetes backend)")

    # Secrets: only the empty token Secret(s) of the kubernetes store
    secrets = by_kind.get("Secret", [])
    bad = [kn(s) for s in secrets if s["metadata"]["name"] not in stores or s.get("type", "Opaque") != "Opaque"
           or s.get("data") or s.get("stringData")]
    missing = sorted(stores - {s["metadata"]["name"] for s in secrets})
    check(not bad and not missing, f"{label}: Secrets: only the empty Opaque token Secret(s) {sorted(stores) or '(none)'}",
          f"with data or unexpected: {bad}; token Secret not shipped: {missing}")

    # NetworkPolicy
    if workloads:
        pols = by_kind.get("NetworkPolicy", [])
        pod_labels = [pl for o in workloads for _, _, pl in pod_specs(o)]
        pol = [p for p in pols if all(selects(p["spec"].get("podSelector", {}).get("matchLabels"), pl) for pl in pod_labels)]
        if check(len(pol) == 1 and set(pol[0]["spec"].get("policyTypes", [])) == {"Ingress", "Egress"},
                 f"{label}: one NetworkPolicy selects every rotator pod, for Ingress and Egress", f"{len(pol)} found"):
            spec = pol[0]["spec"]
            ing = [(p.get("protocol", "TCP"), p.get("port")) for r in spec.get("ingress", []) for p in r.get("ports", []) or [None] if p]
            check(ing == [("TCP", METRICS_PORT)] and all(r.get("ports") for r in spec.get("ingress", [])),
                  f"{label}: NetworkPolicy ingress: TCP {METRICS_PORT} only", f"{spec.get('ingress')}")
            dns, other, problems = set(), set(), []
            for r in spec.get("egress", []):
                if not r.get("ports"):
                    problems.append(f"rule without ports: {r}")
                    continue
                to = r.get("to", [])
                is_dns = len(to) == 1 and to[0].get("namespaceSelector", {}).get("matchLabels") == {
                    "kubernetes.io/metadata.name": "kube-system"} and to[0].get("podSelector", {}).get("matchLabels") == {
                    "k8s-app": "kube-dns"}
                for p in r["ports"]:
                    key = (p.get("protocol", "TCP"), p.get("port"))
                    if is_dns:
                        dns.add(key)
                    elif not to:
                        other.add(key + (None,))
                    elif all(set(t) == {"ipBlock"} and not t["ipBlock"].get("except") for t in to):
                        for t in to:
                            other.add(key + (t["ipBlock"]["cidr"],))
                    else:
                        problems.append(f"unexpected peer {to}")
            want = {("TCP", 443, None)} | expected_egress_extras(cfg)
            check(dns == {("UDP", 53), ("TCP", 53)} and other == want and not problems,
                  f"{label}: NetworkPolicy egress: DNS (UDP/TCP 53) to kube-dns, "
                  + ", ".join(f"{pr} {po}" + (f" to {c}" if c else "") for pr, po, c in sorted(want, key=str)) + " only",
                  f"dns {sorted(dns)}, other {sorted(other, key=str)}, want {sorted(want, key=str)}, {problems}")

    # Monitoring components
    metrics = systemd_metrics()
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"].get("selector", {}).get("matchLabels")
        svcs = [s for s in by_kind.get("Service", []) if selects(sel, s["metadata"].get("labels", {}))]
        port_names = {p.get("name") for s in svcs for p in s["spec"].get("ports", [])}
        eps = sm["spec"].get("endpoints", [])
        check(len(svcs) == 1 and eps and all(e.get("port") in port_names and e.get("path", "/metrics") == "/metrics" for e in eps),
              f"{label}: {kn(sm)} selects Service {[s['metadata']['name'] for s in svcs]} and scrapes its metrics port at /metrics",
              f"selector {sel}, endpoints {eps}")
    for pr in by_kind.get("PrometheusRule", []):
        rules = [r for g in pr["spec"].get("groups", []) for r in g.get("rules", [])]
        used = {m for r in rules for m in re.findall(r"deepvue_rotator_[a-z_]+", r.get("expr", ""))}
        check(rules and used <= metrics, f"{label}: {kn(pr)}: {len(rules)} rules use only metrics of "
              f"deploy/systemd/README.md ({len(used)} of {len(metrics)})", f"unknown: {sorted(used - metrics)}")
        shape = [r.get("alert") for r in rules if not (r.get("alert") and r.get("expr")
                 and r.get("labels", {}).get("severity") in ("critical", "warning", "info")
                 and r.get("annotations", {}).get("summary"))]
        check(not shape, f"{label}: {kn(pr)}: every rule has alert, expr, severity and a summary", f"{shape}")
        names = {r.get("alert") for r in rules}
        check({"DeepvueTokenExpiringSoon", "DeepvueReplicaBehind"} <= names,
              f"{label}: {kn(pr)} carries deploy/systemd/README.md's DeepvueTokenExpiringSoon and DeepvueReplicaBehind")
        if PROMTOOL:
            f = os.path.join(tmp, re.sub(r"[^A-Za-z0-9]+", "-", label) + ".rules.yaml")
            with open(f, "w") as fh:
                yaml.safe_dump(pr["spec"], fh)
            r = subprocess.run([PROMTOOL, "check", "rules", f], capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"{label}: {kn(pr)}: promtool check rules (PromQL syntax)",
                  (r.stdout + r.stderr).strip())
        else:
            print(f"note {label}: {kn(pr)}: promtool not found (apt-get install prometheus, or set PROMTOOL): "
                  "PromQL syntax not checked")
        svc_names = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
        jobs = {j for r in rules for j in re.findall(r'job="([^"]+)"', r.get("expr", ""))}
        check(jobs <= svc_names, f"{label}: {kn(pr)}: job labels {sorted(jobs)} name the scraped Service",
              f"services {sorted(svc_names)}")
    return cfg


# ---------------------------------------------------------------------------------------------
# examples


def check_examples(configs, tmp, meta_validator):
    files = sorted(f for f in glob.glob(os.path.join(K8S, "examples", "**", "*.yaml"), recursive=True)
                   if os.path.basename(f) != "kustomization.yaml")
    renew = min((duration_secs(c.get("rotation", {}).get("renew_before", "12h")) for c in configs.values()), default=43200)
    store_ids = {"aws": set(), "gcpsm": set(), "vault": set(), "kubernetes": set()}
    for c in configs.values():
        for t in c.get("tokens", []):
            for s in ([t["store"]] if "store" in t else []) + list(t.get("stores", [])):
                b = s.get("backend")
                if b == "aws":
                    store_ids["aws"].add(s["secret_id"])
                elif b == "gcp":
                    store_ids["gcpsm"].add(s["secret_id"])
                elif b == "vault":
                    store_ids["vault"].add(s["path"])
                elif b == "kubernetes":
                    store_ids["kubernetes"].add(s["secret_name"])
    check(files, "examples/: YAML files present", K8S)
    for f in files:
        label = rel(f)
        try:
            docs = [d for d in yaml.safe_load_all(open(f)) if d]
        except yaml.YAMLError as e:
            check(False, f"{label}: parses as YAML", str(e))
            continue
        check(docs, f"{label}: parses as YAML ({len(docs)} documents: {', '.join(kn(d) for d in docs)})")
        validate_objects(label, docs, tmp, meta_validator)
        stores = {d["metadata"]["name"]: d for d in docs if d.get("kind") in ("SecretStore", "ClusterSecretStore")}
        for d in docs:
            if d.get("kind") == "ExternalSecret":
                s = d["spec"]
                ri = duration_secs(s.get("refreshInterval", ""))
                check(ri is not None and 0 < ri <= renew / 4,
                      f"{label}: {kn(d)} refreshInterval {s.get('refreshInterval')} is well below renew_before "
                      f"({renew / 3600:g}h; at most a quarter of it)")
                st = stores.get(s.get("secretStoreRef", {}).get("name"))
                provider = next(iter((st or {}).get("spec", {}).get("provider", {})), None)
                keys = {x.get("remoteRef", {}).get("key") for x in s.get("data", [])}
                props = {x.get("remoteRef", {}).get("property") for x in s.get("data", [])}
                check(st is not None and provider in store_ids and keys and keys <= store_ids[provider]
                      and "access_token" in props,
                      f"{label}: {kn(d)} reads access_token of the token the {provider} overlay's rotator writes "
                      f"({sorted(k for k in keys if k)})", f"store {st and st['metadata']['name']}, keys {keys}, "
                      f"overlay stores {store_ids.get(provider)}")
            elif d.get("kind") in WORKLOAD_KINDS:
                for plabel, pod, _ in pod_specs(d):
                    probs = restricted_problems(pod)
                    check(not probs, f"{label}: {plabel}: pod is Pod Security restricted with requests/limits",
                          "; ".join(probs))
                    refs = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod.get("containers", [])
                            for e in c.get("env", []) or [] if "secretKeyRef" in (e.get("valueFrom") or {})}
                    vols = {v["secret"]["secretName"] for v in pod.get("volumes", []) or [] if "secret" in v}
                    items = {i.get("key") for v in pod.get("volumes", []) or [] if "secret" in v
                             for i in v["secret"].get("items", [])}
                    reload = d["metadata"].get("annotations", {}).get("secret.reloader.stakater.com/reload")
                    check(refs and refs == vols == {reload} and refs <= store_ids["kubernetes"] and items == {"access_token"},
                          f"{label}: {plabel} reads the kubernetes store's token Secret {sorted(refs)} by env "
                          "secretKeyRef and by a volume item access_token, with Reloader's annotation",
                          f"env {refs}, volumes {vols}, items {items}, reload {reload!r}")


# ---------------------------------------------------------------------------------------------


def main():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        print(f"FAIL {BIN} not found: build it with `cargo build` (not done by this script), or set DEEPVUE_ROTATOR_BIN")
        return 1
    kustomizations = sorted(glob.glob(os.path.join(K8S, "**", "kustomization.yaml"), recursive=True))
    buildable = [os.path.dirname(k) for k in kustomizations if yaml.safe_load(open(k)).get("kind", "Kustomization") == "Kustomization"]
    expected = [os.path.join(K8S, "overlays", i, m) for i in IDENTITIES for m in ("daemon", "cronjob")]
    missing = [rel(e) for e in expected if e not in buildable]
    check(not missing, f"overlays: {len(IDENTITIES)} identities x (daemon, cronjob) present; "
          f"{len(buildable)} buildable kustomizations", f"missing {missing}")
    for i in IDENTITIES:
        check(os.path.isfile(os.path.join(K8S, "overlays", i, "common", "config.toml")),
              f"overlays/{i}: has its own config.toml (common/)")
    meta_validator = object_meta_validator()
    configs = {}
    with tempfile.TemporaryDirectory(prefix="k8s-manifests-") as tmp:
        for d in buildable:
            label = rel(d)
            objs, err = render(d)
            if not check(objs, f"{label}: kubectl kustomize renders it ({len(objs or [])} objects)", err):
                continue
            validate_objects(label, objs, tmp, meta_validator)
            cfg = check_overlay(label, objs, tmp)
            if cfg:
                configs[label] = cfg
        check_examples(configs, tmp, meta_validator)
    passed, failed = RESULTS.count(True), RESULTS.count(False)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
