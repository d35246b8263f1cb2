#!/usr/bin/env bash
# Checks of deploy/prometheus/: the alert rules load (`promtool check rules`) and pass their unit
# tests (`promtool test rules`), the Kubernetes PrometheusRule carries the same group, and the
# Grafana dashboard is valid JSON naming only metrics the rotator exports (deploy/systemd/
# README.md's table, which tests/it/metrics.rs checks against the real /metrics).
# Needs promtool: Debian's `prometheus` package (apt-get install prometheus); set $PROMTOOL
# to use another.
set -euo pipefail
cd "$(dirname "$0")/.."
PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
if [ -z "$PROMTOOL" ]; then
  echo "FAIL test-prometheus.sh: promtool not found: apt-get install prometheus (Debian), or set PROMTOOL" >&2
  exit 1
fi
"$PROMTOOL" check rules deploy/prometheus/rules.yml
(cd deploy/prometheus && "$PROMTOOL" test rules rules.test.yml)
PY="${PYTHON:-.tools/venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" - <<'PYEOF'
import json, re, sys
import yaml

fail = []
rules = yaml.safe_load(open("deploy/prometheus/rules.yml"))
pr = yaml.safe_load(open("deploy/kubernetes/components/prometheusrule/prometheusrule.yaml"))
shared = {g["name"]: g for g in rules["groups"]}
mine = {g["name"]: g for g in pr["spec"]["groups"]}
for name, g in shared.items():
    if mine.get(name) != g:
        fail.append(f"PrometheusRule group {name} differs from deploy/prometheus/rules.yml")
table = open("deploy/systemd/README.md").read()
metrics = set(re.findall(r"^\| `(deepvue_rotator_[a-z_]+)` \|", table, re.M))
def used(expr):
    return {re.sub(r"_(bucket|sum|count)$", "", m) if re.sub(r"_(bucket|sum|count)$", "", m) in metrics else m
            for m in re.findall(r"deepvue_rotator_[a-z_]+", expr)}
for g in rules["groups"]:
    for r in g["rules"]:
        unknown = used(r["expr"]) - metrics
        if unknown:
            fail.append(f"rule {r['alert']}: unknown metrics {sorted(unknown)}")
        if not r.get("annotations", {}).get("runbook"):
            fail.append(f"rule {r['alert']}: no runbook annotation")
d = json.load(open("deploy/prometheus/dashboard.json"))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
if not exprs:
    fail.append("dashboard: no queries")
for e in exprs:
    unknown = used(e) - metrics
    if unknown:
        fail.append(f"dashboard query {e!r}: unknown metrics {sorted(unknown)}")
ids = [p["id"] for p in d["panels"]]
if len(ids) != len(set(ids)):
    fail.append("dashboard: panel ids repeat")
for f in fail:
    print("FAIL", f)
print(f"test-prometheus: {len(shared)} shared rule group(s) match, {len(exprs)} dashboard queries use only exported metrics ({len(metrics)} known)"
      if not fail else f"test-prometheus: {len(fail)} failure(s)")
sys.exit(1 if fail else 0)
PYEOF
