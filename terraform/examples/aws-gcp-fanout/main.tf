# Fan-out across clouds: one rotator on AWS Lambda (hourly schedule, one NAT gateway whose
# Elastic IP is the only address Deepvue whitelists) mints the token `prod` into AWS Secrets
# Manager (the primary) and copies it to a GCP Secret Manager replica. The Lambda reaches GCP
# with workload identity federation: its execution role's AWS credentials are exchanged at
# Google's STS for a federated token that may write that one secret, and nothing else.

provider "aws" {
  region = var.region

  # The rotator keeps its alert state in tags under this prefix on the primary token secret.
  ignore_tags {
    key_prefixes = ["deepvue-rotator:"]
  }

  default_tags {
    tags = { Service = "deepvue-rotator" }
  }
}

provider "google" {
  project = var.gcp_project_id
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "google_project" "this" {
  project_id = var.gcp_project_id
}

locals {
  # How GCP sees the function: its execution role as an STS assumed-role ARN (the attribute
  # mapping below drops the session name).
  lambda_assumed_role = "arn:${data.aws_partition.current.partition}:sts::${data.aws_caller_identity.current.account_id}:assumed-role/${module.deepvue_rotator.execution_role_name}"

  # The federated identity of exactly that role, granted on the replica secret only.
  federated_rotator = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.aws.name}/attribute.aws_role/${local.lambda_assumed_role}"

  # Known at plan time (project number + ids), so the credential configuration is too.
  wif_audience = "//iam.googleapis.com/projects/${data.google_project.this.number}/locations/global/workloadIdentityPools/${var.workload_identity_pool_id}/providers/${var.workload_identity_provider_id}"

  # Google's credential configuration for AWS workloads (what
  # `gcloud iam workload-identity-pools create-cred-config --aws` writes). No secret in it:
  # the client signs an STS GetCallerIdentity request with the Lambda's own AWS credentials
  # (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN and AWS_REGION, which
  # Lambda sets) and exchanges it at sts.googleapis.com. No IMDS URLs: Lambda has no IMDS.
  gcp_credential_config = {
    type               = "external_account"
    audience           = local.wif_audience
    subject_token_type = "urn:ietf:params:aws:token-type:aws4_request"
    token_url          = "https://sts.googleapis.com/v1/token"
    credential_source = {
      environment_id                 = "aws1"
      regional_cred_verification_url = "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    }
  }

  # Exactly what the rotator does on a GCP token store (primary or replica); the same list as
  # terraform/modules/gcp-cloud-run's token_secret_permissions.
  token_secret_permissions = [
    "secretmanager.secrets.get",
    "secretmanager.secrets.update",
    "secretmanager.versions.add",
    "secretmanager.versions.access",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
    "secretmanager.versions.destroy",
    "secretmanager.versions.disable",
  ]
}

################################################################################
# AWS: the rotator (primary store: Secrets Manager)
################################################################################

module "deepvue_rotator" {
  source = "../../modules/aws-lambda"

  name            = "deepvue-rotator"
  lambda_zip_path = var.lambda_zip_path

  # Fan-out needs the scheduled trigger (the native rotation function rotates one secret).
  trigger             = "schedule"
  schedule_expression = "rate(1 hour)"

  tokens = {
    prod = {
      # Primary: deepvue/prod/token in Secrets Manager (created by the module).
      replicas = [
        {
          backend       = "gcp"
          secret_id     = google_secret_manager_secret.replica.id # projects/P/secrets/S
          keep_versions = tostring(var.replica_keep_versions)
        },
      ]
    }
  }

  # Google's client library finds the credential configuration through ADC.
  layers      = [aws_lambda_layer_version.gcp_wif.arn]
  environment = { GOOGLE_APPLICATION_CREDENTIALS = "/opt/gcp-wif.json" }

  alert_environment = "prod"
}

# The credential configuration as a Lambda layer: layers are extracted under /opt.
data "archive_file" "gcp_wif" {
  type             = "zip"
  output_path      = "${path.module}/build/gcp-wif-layer.zip"
  output_file_mode = "0644"

  source {
    content  = jsonencode(local.gcp_credential_config)
    filename = "gcp-wif.json"
  }
}

resource "aws_lambda_layer_version" "gcp_wif" {
  layer_name               = "deepvue-rotator-gcp-wif"
  description              = "GCP workload identity federation credential configuration (no secret) at /opt/gcp-wif.json"
  filename                 = data.archive_file.gcp_wif.output_path
  source_code_hash         = data.archive_file.gcp_wif.output_base64sha256
  compatible_runtimes      = ["provided.al2023"]
  compatible_architectures = ["x86_64", "arm64"]

  # The function should not run before its GCP identity may write the replica.
  depends_on = [
    google_iam_workload_identity_pool_provider.aws,
    google_secret_manager_secret_iam_member.replica_writer,
  ]
}

################################################################################
# GCP: the replica secret and the federated identity that may write it
################################################################################

# The replica apps on GCP read at versions/latest. Created without versions: the rotator's
# first pass copies the primary's token into it.
resource "google_secret_manager_secret" "replica" {
  project   = var.gcp_project_id
  secret_id = var.gcp_replica_secret_id
  labels    = { service = "deepvue-rotator", role = "replica" }

  replication {
    auto {}
  }

  lifecycle {
    # The rotator keeps its lease in the secret's annotations.
    ignore_changes = [annotations]
  }
}

resource "google_iam_workload_identity_pool" "aws" {
  project                   = var.gcp_project_id
  workload_identity_pool_id = var.workload_identity_pool_id
  display_name              = "deepvue-rotator on AWS"
  description               = "AWS identities of the deepvue-rotator Lambda (token fan-out to Secret Manager)"
}

resource "google_iam_workload_identity_pool_provider" "aws" {
  #checkov:skip=CKV_GCP_125:GitHub Actions OIDC check; this is an AWS provider (no oidc block, on which checkov 3.2 throws and reports FAILED). Trust is pinned by attribute_condition to the Lambda's execution role.
  project                            = var.gcp_project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.aws.workload_identity_pool_id
  workload_identity_pool_provider_id = var.workload_identity_provider_id
  display_name                       = "deepvue-rotator Lambda"
  description                        = "Only the deepvue-rotator Lambda's execution role of AWS account ${data.aws_caller_identity.current.account_id}"

  # Google's default mapping for AWS: the subject is the caller's ARN; aws_role is the
  # assumed-role ARN without the session name.
  attribute_mapping = {
    "google.subject"     = "assertion.arn"
    "attribute.aws_role" = "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
  }

  # Reject every other identity of the account at the token exchange already.
  attribute_condition = "attribute.aws_role == '${local.lambda_assumed_role}'"

  aws {
    account_id = data.aws_caller_identity.current.account_id
  }
}

# The eight token-store permissions, granted on the replica secret only (the role is defined at
# project level, as custom roles are; the binding is on the one secret).
resource "google_project_iam_custom_role" "replica_writer" {
  project     = var.gcp_project_id
  role_id     = "deepvue_rotator_replica_writer"
  title       = "deepvue-rotator replica writer"
  description = "Write a Deepvue token replica: lease in annotations, add/read versions, destroy old versions. Bound per secret."
  permissions = local.token_secret_permissions
  stage       = "GA"
}

resource "google_secret_manager_secret_iam_member" "replica_writer" {
  project   = var.gcp_project_id
  secret_id = google_secret_manager_secret.replica.secret_id
  role      = google_project_iam_custom_role.replica_writer.name
  member    = local.federated_rotator
}
