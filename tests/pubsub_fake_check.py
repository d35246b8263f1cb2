#!/usr/bin/env python3
"""Cross-check the tests' Pub/Sub REST fake (tests/it/pubsub_fake.rs) with Google's own
discovery-based REST client (google-api-python-client, its bundled pubsub v1 discovery
document; no network): publish with data and attributes, publish with attributes only, the
message ids, topics.get, and an unknown topic's 404 and an empty publish's 400 as HttpError.

Usage: pubsub_fake_check.py ENDPOINT TOPIC   (TOPIC: projects/P/topics/T, existing)
"""
import base64, sys

import httplib2
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

endpoint, topic = sys.argv[1], sys.argv[2]
svc = build("pubsub", "v1", http=httplib2.Http(), static_discovery=True,
            client_options={"api_endpoint": endpoint})
topics = svc.projects().topics()

ids = topics.publish(topic=topic, body={"messages": [{
    "data": base64.b64encode(b"hello").decode(),
    "attributes": {"event_type": "token.rotated"}}]}).execute()["messageIds"]
assert len(ids) == 1, ids
ids2 = topics.publish(topic=topic, body={"messages": [{"attributes": {"only": "x"}}]}).execute()["messageIds"]
assert len(ids2) == 1 and ids2 != ids, (ids, ids2)
assert topics.get(topic=topic).execute()["name"] == topic

missing = topic.rsplit("/", 1)[0] + "/nope"
for call, status in [(lambda: topics.get(topic=missing).execute(), 404),
                     (lambda: topics.publish(topic=missing, body={"messages": [{"data": "aGk="}]}).execute(), 404),
                     (lambda: topics.publish(topic=topic, body={"messages": []}).execute(), 400),
                     (lambda: topics.publish(topic=topic, body={"messages": [{}]}).execute(), 400)]:
    try:
        call()
        sys.exit(f"expected HTTP {status}")
    except HttpError as e:
        assert e.resp.status == status, (e.resp.status, status)
        assert e.error_details is not None or e.reason, e
print("ok")
