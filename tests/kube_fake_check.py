#!/usr/bin/env python3
"""Check the Kubernetes API fake (tests/it/kube_fake.rs) with the official Python client.

  python3 tests/kube_fake_check.py URL ADMIN_TOKEN CA_FILE     (run by the `it` test
  kubernetes::kubectl_and_the_official_python_client_agree_with_the_fake)

Every call the rotator makes (get, replace with and without a resourceVersion, a patch with a
resourceVersion — the client sends dicts as strategic merge patches, which for a Secret merge
as the rotator's JSON merge patch does —, create, dry-run) and the answers it relies on (409 Conflict for a stale
resourceVersion, 409 AlreadyExists, 404 NotFound, 422 Invalid, 400 for bad base64, 401) as the
client library sees them. Prints `ok <what>` per check, `FAIL <what>` and exits 1 on the first
failure.
"""

import base64
import json
import sys

from kubernetes import client
from kubernetes.client.rest import ApiException

URL, TOKEN, CA = sys.argv[1], sys.argv[2], sys.argv[3]
NS = "check"


def api(token=TOKEN):
    cfg = client.Configuration()
    cfg.host = URL
    cfg.ssl_ca_cert = CA
    cfg.verify_ssl = True
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.CoreV1Api(client.ApiClient(cfg))


def check(cond, what, detail=""):
    if not cond:
        print(f"FAIL {what} {detail}")
        sys.exit(1)
    print(f"ok {what}")


def fails(fn, code, reason, what):
    try:
        fn()
    except ApiException as e:
        body = json.loads(e.body or "{}")
        check(e.status == code and body.get("kind") == "Status" and body.get("reason") == reason
              and body.get("status") == "Failure" and body.get("code") == code,
              what, f"got {e.status} {e.body}")
        return body
    check(False, what, "no error")


def b64(s):
    return base64.b64encode(s.encode()).decode()


v1 = api()
created = v1.create_namespaced_secret(NS, client.V1Secret(
    metadata=client.V1ObjectMeta(name="tok", labels={"app": "x"}), string_data={"access_token": "t1"}))
check(created.data == {"access_token": b64("t1")} and created.string_data is None,
      "create: stringData lands in data (base64) and is not returned")
check(created.type == "Opaque" and created.metadata.resource_version and created.metadata.uid,
      "create: type Opaque, resourceVersion and uid set by the server")
got = v1.read_namespaced_secret("tok", NS)
check(got.data == created.data and got.metadata.resource_version == created.metadata.resource_version,
      "get: what create stored")
fails(lambda: v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="tok"))),
      409, "AlreadyExists", "create twice: 409 AlreadyExists")
fails(lambda: v1.read_namespaced_secret("missing", NS), 404, "NotFound", "get missing: 404 NotFound")
body = fails(lambda: v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="Bad_Name"))),
             422, "Invalid", "invalid name: 422 Invalid")
check(body["details"]["causes"][0]["field"] == "metadata.name", "422 names the field in details.causes")

rv1 = got.metadata.resource_version
got.data = {"access_token": b64("t2")}
replaced = v1.replace_namespaced_secret("tok", NS, got)
check(replaced.metadata.resource_version != rv1, "replace with the current resourceVersion: a new one")
stale = v1.read_namespaced_secret("tok", NS)
stale.metadata.resource_version = rv1
stale.data = {"access_token": b64("t3")}
fails(lambda: v1.replace_namespaced_secret("tok", NS, stale), 409, "Conflict",
      "replace with a stale resourceVersion: 409 Conflict")
check(v1.read_namespaced_secret("tok", NS).data["access_token"] == b64("t2"), "the stale replace wrote nothing")
same = v1.read_namespaced_secret("tok", NS)
again = v1.replace_namespaced_secret("tok", NS, same)
check(again.metadata.resource_version == same.metadata.resource_version,
      "a replace that changes nothing keeps the resourceVersion")
dry = v1.read_namespaced_secret("tok", NS)
dry.data = {"access_token": b64("dry")}
v1.replace_namespaced_secret("tok", NS, dry, dry_run="All")
check(v1.read_namespaced_secret("tok", NS).data["access_token"] == b64("t2"), "dryRun=All stores nothing")

cur = v1.read_namespaced_secret("tok", NS)
patched = v1.patch_namespaced_secret(
    "tok", NS, {"metadata": {"resourceVersion": cur.metadata.resource_version, "annotations": {"a": "1"}}})
check(patched.metadata.annotations == {"a": "1"} and patched.data == cur.data,
      "merge patch with the current resourceVersion: annotations set, data kept")
fails(lambda: v1.patch_namespaced_secret(
    "tok", NS, {"metadata": {"resourceVersion": cur.metadata.resource_version, "annotations": {"a": None}}}), 409, "Conflict", "merge patch with a stale resourceVersion: 409")
removed = v1.patch_namespaced_secret("tok", NS, {"metadata": {"annotations": {"a": None}}})
check(not removed.metadata.annotations, "merge patch null removes the annotation")

v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="other")))
listed = v1.list_namespaced_secret(NS, label_selector="app=x")
check([s.metadata.name for s in listed.items] == ["tok"], "list by labelSelector")

imm = v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="imm"), immutable=True,
                                                      data={"k": b64("v")}))
imm.data = {"k": b64("w")}
fails(lambda: v1.replace_namespaced_secret("imm", NS, imm), 422, "Invalid", "immutable data: 422")

bad = v1.read_namespaced_secret("tok", NS)
bad.data = {"access_token": "!!not-base64!!"}
fails(lambda: v1.replace_namespaced_secret("tok", NS, bad), 400, "BadRequest", "data that is not base64: 400")

fails(lambda: api("wrong-token").read_namespaced_secret("tok", NS), 401, "Unauthorized", "a wrong token: 401")
v1.delete_namespaced_secret("tok", NS)
fails(lambda: v1.read_namespaced_secret("tok", NS), 404, "NotFound", "delete, then get: 404")
print("kube_fake_check: all checks passed")
