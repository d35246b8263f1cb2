"""Cross-check of the Secret Manager fake (tests/it/gcp_fake.rs) with Google's official Python
client (PyPI google-cloud-secret-manager, REST transport), for the calls deepvue-rotator makes.

Run by tests/it/gcp_fake.rs (installed into .tools/venv by ./scripts/test.sh):

    python gcp_fake_check.py ENDPOINT PROJECT calls
    python gcp_fake_check.py ENDPOINT PROJECT fault PERMISSION_DENIED|RESOURCE_EXHAUSTED|ABORTED SECRET

Prints one line per check and exits non-zero on the first disagreement.
"""

import sys

from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager_v1 as sm
from google.protobuf import duration_pb2, field_mask_pb2


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def check(what: str, cond: bool, detail: object = "") -> None:
    if not cond:
        print(f"FAIL {what}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {what}", flush=True)


def status_of(e: exceptions.GoogleAPICallError) -> str:
    """The google.rpc status name the answer carried (the client picks its exception class by
    HTTP code: FAILED_PRECONDITION and INVALID_ARGUMENT are both HTTP 400, BadRequest)."""
    try:
        return e.response.json()["error"]["status"]
    except Exception:  # noqa: BLE001
        return ""


def raises(what: str, status: str, call) -> exceptions.GoogleAPICallError:
    try:
        call()
    except exceptions.GoogleAPICallError as e:
        check(what, status_of(e) == status, f"{type(e).__name__} {status_of(e)}: {e}")
        return e
    except Exception as e:  # noqa: BLE001
        check(what, False, f"{type(e).__name__}: {e}")
    check(what, False, "no error")
    raise AssertionError  # unreachable


def calls(client: sm.SecretManagerServiceClient, project: str) -> None:
    parent = f"projects/{project}"
    secret = client.create_secret(
        parent=parent, secret_id="py-check", secret={"replication": {"automatic": {}}}
    )
    check("CreateSecret names the project by number", secret.name.split("/")[1].isdigit(), secret.name)
    name = secret.name
    got = client.get_secret(name=name)
    check("GetSecret has an etag", got.etag.startswith('"'), got.etag)

    # UpdateSecret with the etag; a stale etag is FAILED_PRECONDITION.
    updated = client.update_secret(
        secret={"name": name, "annotations": {"deepvue-rotator.lease": "x"}, "etag": got.etag},
        update_mask=field_mask_pb2.FieldMask(paths=["annotations"]),
    )
    check("UpdateSecret keeps the annotation", dict(updated.annotations) == {"deepvue-rotator.lease": "x"})
    check("UpdateSecret changes the etag", updated.etag != got.etag)
    raises(
        "a stale etag is FailedPrecondition",
        "FAILED_PRECONDITION",
        lambda: client.update_secret(
            secret={"name": name, "annotations": {}, "etag": got.etag},
            update_mask=field_mask_pb2.FieldMask(paths=["annotations"]),
        ),
    )

    # AddSecretVersion with a checksum; AccessSecretVersion returns it.
    for i in range(3):
        data = f'{{"n":{i}}}'.encode()
        v = client.add_secret_version(parent=name, payload={"data": data, "data_crc32c": crc32c(data)})
        check(f"AddSecretVersion {i + 1}", v.name.endswith(f"/versions/{i + 1}"), v.name)
        check(f"version {i + 1} is ENABLED", v.state == sm.SecretVersion.State.ENABLED, v.state)
    latest = client.access_secret_version(name=f"{name}/versions/latest")
    check("latest is the newest", latest.payload.data == b'{"n":2}', latest.payload.data)
    check("the checksum comes back", latest.payload.data_crc32c == crc32c(b'{"n":2}'))
    raises(
        "a wrong checksum is InvalidArgument",
        "INVALID_ARGUMENT",
        lambda: client.add_secret_version(parent=name, payload={"data": b"x", "data_crc32c": 1}),
    )

    # ListSecretVersions: newest first, pages, totalSize only without a filter.
    pager = client.list_secret_versions(request={"parent": name, "page_size": 2})
    first = next(iter(pager.pages))
    check("a page holds page_size versions", len(first.versions) == 2, len(first.versions))
    check("totalSize without a filter", first.total_size == 3, first.total_size)
    check("a next page token", first.next_page_token != "")
    numbers = [v.name.rsplit("/", 1)[1] for v in client.list_secret_versions(request={"parent": name, "page_size": 2})]
    check("all pages, newest first", numbers == ["3", "2", "1"], numbers)
    filtered = next(iter(client.list_secret_versions(request={"parent": name, "filter": "state:ENABLED"}).pages))
    check("totalSize is 0 with a filter", filtered.total_size == 0, filtered.total_size)
    check("the filter lists the enabled versions", len(filtered.versions) == 3)
    raises(
        "a bad page token is InvalidArgument",
        "INVALID_ARGUMENT",
        lambda: list(client.list_secret_versions(request={"parent": name, "page_token": "garbage"})),
    )
    raises(
        "a token of another filter is InvalidArgument",
        "INVALID_ARGUMENT",
        lambda: list(
            client.list_secret_versions(
                request={"parent": name, "page_token": first.next_page_token, "filter": "state:ENABLED"}
            )
        ),
    )

    # Disable / enable / destroy with etags; a disabled version cannot be accessed.
    v1 = client.get_secret_version(name=f"{name}/versions/1")
    d = client.disable_secret_version(request={"name": v1.name, "etag": v1.etag})
    check("DisableSecretVersion", d.state == sm.SecretVersion.State.DISABLED, d.state)
    raises(
        "accessing a disabled version is FailedPrecondition",
        "FAILED_PRECONDITION",
        lambda: client.access_secret_version(name=v1.name),
    )
    raises(
        "a stale version etag is FailedPrecondition",
        "FAILED_PRECONDITION",
        lambda: client.enable_secret_version(request={"name": v1.name, "etag": v1.etag}),
    )
    e = client.enable_secret_version(request={"name": v1.name, "etag": d.etag})
    check("EnableSecretVersion", e.state == sm.SecretVersion.State.ENABLED, e.state)
    x = client.destroy_secret_version(request={"name": v1.name, "etag": e.etag})
    check("DestroySecretVersion", x.state == sm.SecretVersion.State.DESTROYED, x.state)
    check("a destroy time", x.destroy_time is not None and x.destroy_time.year > 2000)

    # Delayed destruction: a destroy disables and schedules; enabling cancels it.
    delayed = client.create_secret(
        parent=parent,
        secret_id="py-check-delayed",
        secret={"replication": {"automatic": {}}, "version_destroy_ttl": duration_pb2.Duration(seconds=86400)},
    )
    check("versionDestroyTtl round-trips", delayed.version_destroy_ttl.total_seconds() == 86400, delayed.version_destroy_ttl)
    v = client.add_secret_version(parent=delayed.name, payload={"data": b"d"})
    s = client.destroy_secret_version(request={"name": v.name})
    check("a delayed destroy disables", s.state == sm.SecretVersion.State.DISABLED, s.state)
    check("and schedules", s.scheduled_destroy_time.year > 2000, s.scheduled_destroy_time)
    r = client.enable_secret_version(request={"name": v.name})
    check("enabling restores it", r.state == sm.SecretVersion.State.ENABLED, r.state)
    check(
        "and cancels the destruction",
        not r._pb.HasField("scheduled_destroy_time"),
        r.scheduled_destroy_time,
    )
    raises(
        "a missing secret is NotFound",
        "NOT_FOUND",
        lambda: client.get_secret(name=f"{parent}/secrets/py-check-missing"),
    )


def fault(client: sm.SecretManagerServiceClient, project: str, kind: str, secret: str) -> None:
    want = {
        "PERMISSION_DENIED": (exceptions.Forbidden, "IAM_PERMISSION_DENIED"),
        "RESOURCE_EXHAUSTED": (exceptions.TooManyRequests, "RATE_LIMIT_EXCEEDED"),
        "ABORTED": (exceptions.Conflict, "ABORTED"),
    }[kind]
    e = raises(
        f"an injected {kind}",
        kind,
        lambda: client.add_secret_version(
            parent=f"projects/{project}/secrets/{secret}", payload={"data": b"x"}
        ),
    )
    check(f"{kind} is {want[0].__name__}", isinstance(e, want[0]), type(e).__name__)
    check(f"{kind} details name the reason", e.reason == want[1], (e.reason, e.details))


def main() -> None:
    endpoint, project, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    client = sm.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )
    if mode == "calls":
        calls(client, project)
    else:
        fault(client, project, sys.argv[4], sys.argv[5])


if __name__ == "__main__":
    main()
