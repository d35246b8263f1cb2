#!/usr/bin/env python3
"""`moto_server` that authorises Secrets Manager and SNS requests against their resource ARN.

  python3 tests/terraform/moto_resource_arns.py [moto_server args]   (used by test_moto_iam.py)

moto's IAM emulation (INITIAL_NO_AUTH_ACTION_COUNT) evaluates every statement's Action and
Resource, but it only learns a request's resource from services that define
`_determine_resource` (IAM, SQS, STS); Secrets Manager and SNS requests are authorised against
"*", which no ARN-scoped statement matches. This launcher adds that method to moto's Secrets
Manager and SNS response classes, then runs moto's own server unchanged:

- Secrets Manager: the ARN of the secret named by `SecretId` (a name, full or partial ARN, as
  moto resolves it); a secret moto does not know gets
  `arn:aws:secretsmanager:<region>:<account>:secret:<id>` (an ARN is kept as given); requests
  without `SecretId` (CreateSecret, ListSecrets) stay "*".
- SNS: the request's `TopicArn`, else "*".

The decision (allow / deny) stays moto's: statement matching, wildcards and the explicit-deny
rules are moto/iam/access_control.py's. Conditions are still only what moto evaluates.
"""

import sys

from moto.secretsmanager.responses import SecretsManagerResponse
from moto.server import main
from moto.sns.responses import SNSResponse


def _secret_resource(self):
    secret_id = self._get_param("SecretId")
    if not secret_id:
        return "*"
    secret = self.backend.secrets.get(secret_id)
    if secret is not None:
        return secret.arn
    if secret_id.startswith("arn:"):
        return secret_id
    return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"


def _topic_resource(self):
    return self._get_param("TopicArn") or "*"


for cls, fn in ((SecretsManagerResponse, _secret_resource), (SNSResponse, _topic_resource)):
    if hasattr(cls, "_determine_resource"):  # a newer moto resolves it itself: keep moto's
        print(f"moto_resource_arns.py: moto defines {cls.__name__}._determine_resource itself; not patched",
              file=sys.stderr)
        continue
    cls._determine_resource = fn

if __name__ == "__main__":
    sys.exit(main())
