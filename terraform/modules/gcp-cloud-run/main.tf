################################################################################
# deepvue-rotator on Cloud Run: Secret Manager secrets, least-privilege identity, a job on
# Cloud Scheduler (mode = job) or a service fed by Secret Manager's rotation schedule through
# Pub/Sub push (mode = push), and Direct VPC egress through Cloud NAT on static addresses.
# The token secret's custom role is checked by tests/terraform/test_iam.py.
################################################################################

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  job  = var.mode == "job"
  push = var.mode == "push"

  # Per token: the Secret Manager ids of its two secrets.
  credentials_secret_ids = { for name, t in var.tokens : name => coalesce(t.credentials_secret_id, "deepvue-${lower(replace(name, ".", "-"))}-credentials") }
  token_secret_ids       = { for name, t in var.tokens : name => coalesce(t.token_secret_id, "deepvue-${lower(replace(name, ".", "-"))}-token") }
  token_names            = join(", ", keys(var.tokens))

  project_number = data.google_project.this.number
  # Secret Manager's service agent publishes SECRET_ROTATE to the topic.
  secretmanager_agent = "service-${local.project_number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
  pubsub_agent        = "service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # The service's deterministic URL, known before the service exists (so the config, which
  # names its own push audience, does not depend on the service).
  service_url   = "https://${var.name}-${local.project_number}.${var.region}.run.app"
  push_endpoint = "${local.service_url}/pubsub"

  first_rotation_time = local.push ? coalesce(var.first_rotation_time, try(timeadd(time_static.first_rotation[0].rfc3339, "15m"), null)) : null

  run_every = var.run_every != null ? var.run_every : (local.push ? var.rotation_period : (var.schedule == "0 * * * *" ? "1h" : null))

  # Cloud Run takes resource names (projects/P/global/networks/N); Cloud Router / NAT self links.
  network         = var.create_network ? google_compute_network.this[0].id : var.network
  subnetwork      = var.create_network ? google_compute_subnetwork.this[0].id : var.subnetwork
  network_link    = var.create_network ? google_compute_network.this[0].self_link : var.network
  subnetwork_link = var.create_network ? google_compute_subnetwork.this[0].self_link : var.subnetwork
  egress_ips      = var.create_nat ? google_compute_address.nat[*].address : var.expected_egress_ips

  # Exactly what the rotator does on the token secret: an etag-guarded lease in the secret's
  # annotations (get, update), add versions, read them (access, get, list), and destroy or
  # disable versions beyond keep_versions.
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

  config_toml = templatefile("${path.module}/templates/config.toml.tftpl", {
    project      = var.project_id
    renew_before = var.renew_before
    run_every    = local.run_every
    expected_ips = local.egress_ips
    tokens = {
      for name, t in var.tokens : name => {
        credentials_secret_id = local.credentials_secret_ids[name]
        token_secret_id       = local.token_secret_ids[name]
        replicas              = t.replicas
      }
    }
    keep_versions        = var.keep_versions
    alert_environment    = var.alert_environment
    push                 = local.push
    audience             = local.push_endpoint
    push_service_account = local.push ? google_service_account.push[0].email : ""
    extra_config_toml    = trimspace(var.extra_config_toml)
  })
}

################################################################################
# Secrets
################################################################################

# Client credentials: JSON {"client_id": "...", "client_secret": "..."}. No version is created
# here: the value is added out of band (README) and never enters the Terraform state.
resource "google_secret_manager_secret" "credentials" {
  for_each = var.tokens

  project   = var.project_id
  secret_id = local.credentials_secret_ids[each.key]
  labels    = var.labels

  replication {
    auto {}
  }
}

# The token document apps read at versions/latest. Created without versions: the first run
# mints. In push mode Secret Manager publishes SECRET_ROTATE for every token secret every
# rotation_period.
resource "google_secret_manager_secret" "token" {
  for_each = var.tokens

  project             = var.project_id
  secret_id           = local.token_secret_ids[each.key]
  labels              = var.labels
  version_destroy_ttl = var.version_destroy_ttl

  replication {
    auto {}
  }

  dynamic "topics" {
    for_each = local.push ? [1] : []
    content {
      name = google_pubsub_topic.rotation[0].id
    }
  }

  dynamic "rotation" {
    for_each = local.push ? [1] : []
    content {
      next_rotation_time = local.first_rotation_time
      rotation_period    = var.rotation_period
    }
  }

  lifecycle {
    # The rotator keeps its lease and run state in the secret's annotations, and Secret
    # Manager advances next_rotation_time after every SECRET_ROTATE.
    ignore_changes = [annotations, rotation[0].next_rotation_time]
  }

  depends_on = [google_pubsub_topic_iam_member.secretmanager_publisher]
}

resource "time_static" "first_rotation" {
  count = local.push && var.first_rotation_time == null ? 1 : 0
}

################################################################################
# The rotator's identity
################################################################################

resource "google_service_account" "rotator" {
  project      = var.project_id
  account_id   = var.name
  display_name = substr("deepvue-rotator (${local.token_names})", 0, 100)
  description  = "Runs deepvue-rotator: reads the Deepvue credentials secrets, rotates the token secrets."

  lifecycle {
    precondition {
      condition     = var.create_network || (var.network != null && var.subnetwork != null)
      error_message = "With create_network = false, set network and subnetwork (Direct VPC egress needs both)."
    }
    precondition {
      condition     = var.create_nat || length(var.expected_egress_ips) > 0
      error_message = "With create_nat = false, set expected_egress_ips to the static addresses your NAT uses: they are what Deepvue must whitelist."
    }
  }
}

# Per token: secretAccessor on that token's credentials secret only.
resource "google_secret_manager_secret_iam_member" "credentials_accessor" {
  for_each = var.tokens

  project   = var.project_id
  secret_id = google_secret_manager_secret.credentials[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.rotator.email}"
}

# No predefined role fits: secretVersionManager lacks secrets.update (annotations) and
# versions.access, secretAccessor lacks the rest. Granted on each token secret only.
resource "google_project_iam_custom_role" "token_rotator" {
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_token_rotator"
  title       = "deepvue-rotator token secret (${var.name})"
  description = "Rotate Deepvue token secrets: lease in annotations, add/read versions, destroy old versions. Bound per secret."
  permissions = local.token_secret_permissions
  stage       = "GA"
}

resource "google_secret_manager_secret_iam_member" "token_rotator" {
  for_each = var.tokens

  project   = var.project_id
  secret_id = google_secret_manager_secret.token[each.key].secret_id
  role      = google_project_iam_custom_role.token_rotator.name
  member    = "serviceAccount:${google_service_account.rotator.email}"
}

################################################################################
# mode = job: Cloud Run job + Cloud Scheduler (OAuth token, roles/run.invoker on the job)
################################################################################

resource "google_cloud_run_v2_job" "rotator" {
  count = local.job ? 1 : 0

  project             = var.project_id
  name                = var.name
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.rotator.email
      timeout         = var.job_timeout
      max_retries     = var.job_max_retries

      containers {
        image   = var.image
        command = var.command
        args    = ["rotate"]

        env {
          name  = "DEEPVUE_ROTATOR_CONFIG_TOML"
          value = local.config_toml
        }

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }
      }

      vpc_access {
        network_interfaces {
          network    = local.network
          subnetwork = local.subnetwork
        }
        egress = "ALL_TRAFFIC"
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.credentials_accessor,
    google_secret_manager_secret_iam_member.token_rotator,
    google_compute_router_nat.this,
  ]
}

resource "google_service_account" "scheduler" {
  count = local.job ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-sch"
  display_name = substr("deepvue-rotator scheduler (${local.token_names})", 0, 100)
  description  = "Cloud Scheduler identity that starts the deepvue-rotator job."
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_invoker" {
  count = local.job ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.rotator[0].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"
}

resource "google_cloud_scheduler_job" "rotator" {
  count = local.job ? 1 : 0

  project          = var.project_id
  region           = var.region
  name             = var.name
  description      = "Runs the deepvue-rotator Cloud Run job (rotates tokens with less than ${var.renew_before} left)"
  schedule         = var.schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "320s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    # jobs:run is a Google API, so an OAuth access token (not OIDC) authenticates the call.
    uri = "https://${var.region}-run.googleapis.com/apis/run.googleapis.com/v1/namespaces/${var.project_id}/jobs/${google_cloud_run_v2_job.rotator[0].name}:run"

    oauth_token {
      service_account_email = google_service_account.scheduler[0].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_invoker]
}

################################################################################
# mode = push: Cloud Run service + Pub/Sub push (OIDC verified by the app)
################################################################################

resource "google_cloud_run_v2_service" "rotator" {
  count = local.push ? 1 : 0

  project             = var.project_id
  name                = var.name
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels
  ingress             = var.ingress

  # The app verifies the Google-signed OIDC token of every push itself (signature, issuer,
  # audience, service-account email). With Cloud Run's invoker IAM check on, Cloud Run would
  # verify it first and forward it with the signature replaced by SIGNATURE_REMOVED_BY_GOOGLE,
  # so the app could not. See README "Why the invoker IAM check is off".
  invoker_iam_disabled = true

  template {
    service_account                  = google_service_account.rotator.email
    timeout                          = "300s"
    max_instance_request_concurrency = 10

    scaling {
      min_instance_count = 0
      max_instance_count = 1
    }

    containers {
      image   = var.image
      command = var.command
      args    = ["daemon"]

      ports {
        container_port = 8080
      }

      env {
        name  = "DEEPVUE_ROTATOR_CONFIG_TOML"
        value = local.config_toml
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle = true
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }

    vpc_access {
      network_interfaces {
        network    = local.network
        subnetwork = local.subnetwork
      }
      egress = "ALL_TRAFFIC"
    }
  }

  lifecycle {
    precondition {
      condition     = length("${var.name}-${local.project_number}") <= 63
      error_message = "The service's deterministic URL needs \"<name>-<project number>\" to fit one 63-character DNS label; shorten name."
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.credentials_accessor,
    google_secret_manager_secret_iam_member.token_rotator,
    google_compute_router_nat.this,
  ]
}

resource "google_pubsub_topic" "rotation" {
  #checkov:skip=CKV_GCP_83:The topic carries only Secret Manager notifications (event type, secret name and metadata, never a secret value) under Google-managed encryption at rest; set pubsub_kms_key_name for CMEK.
  count = local.push ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-secret-rotate"
  labels                     = var.labels
  message_retention_duration = "86400s"
  kms_key_name               = var.pubsub_kms_key_name
}

resource "google_pubsub_topic_iam_member" "secretmanager_publisher" {
  count = local.push ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.rotation[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.secretmanager_agent}"
}

# The identity Pub/Sub signs push OIDC tokens as; the app accepts only this email.
resource "google_service_account" "push" {
  count = local.push ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-push"
  display_name = substr("deepvue-rotator push (${local.token_names})", 0, 100)
  description  = "OIDC identity of the SECRET_ROTATE push subscription to deepvue-rotator."
}

resource "google_service_account_iam_member" "pubsub_token_creator" {
  count = local.push && var.grant_pubsub_token_creator ? 1 : 0

  service_account_id = google_service_account.push[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_agent}"
}

resource "google_pubsub_subscription" "push" {
  count = local.push ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-push"
  topic                      = google_pubsub_topic.rotation[0].id
  labels                     = var.labels
  ack_deadline_seconds       = 300
  message_retention_duration = "86400s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  push_config {
    push_endpoint = local.push_endpoint

    oidc_token {
      service_account_email = google_service_account.push[0].email
      audience              = local.push_endpoint
    }
  }

  depends_on = [google_cloud_run_v2_service.rotator, google_service_account_iam_member.pubsub_token_creator]
}

################################################################################
# Network: Direct VPC egress (all traffic) -> Cloud NAT on reserved static addresses
################################################################################

resource "google_compute_network" "this" {
  count = var.create_network ? 1 : 0

  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

# Nothing may reach the rotator's instances; they may only leave on HTTPS (Deepvue, Google
# APIs, egress probes). DNS goes to the metadata server, which firewall rules do not filter.
resource "google_compute_firewall" "deny_ingress" {
  count = var.create_network ? 1 : 0

  project       = var.project_id
  name          = "${var.name}-deny-ingress"
  network       = google_compute_network.this[0].id
  direction     = "INGRESS"
  priority      = 65000
  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "allow_https_egress" {
  count = var.create_network ? 1 : 0

  project            = var.project_id
  name               = "${var.name}-allow-https-egress"
  network            = google_compute_network.this[0].id
  direction          = "EGRESS"
  priority           = 1000
  destination_ranges = ["0.0.0.0/0"]

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "deny_other_egress" {
  count = var.create_network ? 1 : 0

  project            = var.project_id
  name               = "${var.name}-deny-other-egress"
  network            = google_compute_network.this[0].id
  direction          = "EGRESS"
  priority           = 65000
  destination_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "this" {
  count = var.create_network ? 1 : 0

  project                  = var.project_id
  name                     = "${var.name}-${var.region}"
  region                   = var.region
  network                  = google_compute_network.this[0].id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_address" "nat" {
  count = var.create_nat ? var.nat_ip_count : 0

  project      = var.project_id
  name         = "${var.name}-nat-${count.index}"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  description  = "deepvue-rotator static egress IP: whitelisted by Deepvue"
  labels       = var.labels
}

resource "google_compute_router" "this" {
  count = var.create_nat ? 1 : 0

  project = var.project_id
  name    = var.name
  region  = var.region
  network = local.network_link
}

resource "google_compute_router_nat" "this" {
  count = var.create_nat ? 1 : 0

  project                            = var.project_id
  name                               = var.name
  region                             = var.region
  router                             = google_compute_router.this[0].name
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = google_compute_address.nat[*].self_link
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = local.subnetwork_link
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

################################################################################
# Upgrade from the single-token module (token_name, default "prod"): the secrets and their
# grants move to the "prod" instance. Another former token_name: move them by hand (README
# "Upgrading from one token").
################################################################################

moved {
  from = google_secret_manager_secret.credentials
  to   = google_secret_manager_secret.credentials["prod"]
}

moved {
  from = google_secret_manager_secret.token
  to   = google_secret_manager_secret.token["prod"]
}

moved {
  from = google_secret_manager_secret_iam_member.credentials_accessor
  to   = google_secret_manager_secret_iam_member.credentials_accessor["prod"]
}

moved {
  from = google_secret_manager_secret_iam_member.token_rotator
  to   = google_secret_manager_secret_iam_member.token_rotator["prod"]
}
