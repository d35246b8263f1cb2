################################################################################
# Project, naming, image
################################################################################

variable "project_id" {
  description = "GCP project id for every resource (secrets, Cloud Run, Scheduler, Pub/Sub, network)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run job or service, the Scheduler job, the subnet, Cloud Router and NAT."
  type        = string
}

variable "name" {
  description = "Name of the Cloud Run job or service and prefix of the other resources. Lowercase letters, digits and hyphens; at most 25 characters (service-account ids get suffixes)."
  type        = string
  default     = "deepvue-rotator"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{4,23}[a-z0-9])$", var.name))
    error_message = "name must be 6-25 characters: a lowercase letter, then lowercase letters, digits or hyphens, not ending in a hyphen."
  }
}

variable "image" {
  description = "Container image of deepvue-rotator (built from deploy/cloudrun/, pushed to Artifact Registry), e.g. `europe-docker.pkg.dev/my-project/tools/deepvue-rotator:1.4.0`. Pin a digest in production."
  type        = string
}

variable "command" {
  description = "Container entrypoint override; null keeps the image's (which must be the deepvue-rotator binary: the module passes `rotate` or `daemon` as args)."
  type        = list(string)
  default     = null
}

variable "mode" {
  description = "`job` (default): a Cloud Run job running `deepvue-rotator rotate`, started by Cloud Scheduler. `push`: a Cloud Run service running `deepvue-rotator daemon` that Secret Manager's rotation schedule reaches through Pub/Sub push (SECRET_ROTATE)."
  type        = string
  default     = "job"

  validation {
    condition     = contains(["job", "push"], var.mode)
    error_message = "mode must be job or push."
  }
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Cloud Run deletion protection on the job or service (Terraform refuses to destroy it while true)."
  type        = bool
  default     = true
}

################################################################################
# The tokens and their secrets
################################################################################

variable "tokens" {
  description = "The Deepvue tokens this rotator keeps fresh, `[[tokens]] name` => settings. Per token the module creates a credentials secret (JSON {\"client_id\", \"client_secret\"}, value set out of band; id default `deepvue-<name>-credentials`) and a token secret apps read at `versions/latest` (default `deepvue-<name>-token`; the name lowercased, dots as hyphens). `replicas` (fan-out): further stores that get a copy of the token, each a flat map rendered as a TOML inline table, e.g. `{ backend = \"aws\", secret_id = \"arn:aws:secretsmanager:...\" }` (`keep_versions` and `create_if_missing` are rendered unquoted). The module grants nothing on replicas: grant the rotator's service account access yourself (see README)."
  type = map(object({
    credentials_secret_id = optional(string)
    token_secret_id       = optional(string)
    replicas              = optional(list(map(string)), [])
  }))
  default = { prod = {} }

  validation {
    condition     = length(var.tokens) >= 1 && alltrue([for name in keys(var.tokens) : can(regex("^[A-Za-z0-9._-]{1,64}$", name))])
    error_message = "tokens needs at least one entry; names are 1-64 characters of A-Z a-z 0-9 . _ -."
  }

  validation {
    condition = length(distinct(flatten([for name, t in var.tokens : [
      coalesce(t.credentials_secret_id, "deepvue-${lower(replace(name, ".", "-"))}-credentials"),
      coalesce(t.token_secret_id, "deepvue-${lower(replace(name, ".", "-"))}-token"),
    ]]))) == 2 * length(var.tokens)
    error_message = "Every token needs its own credentials and token secret ids: two tokens (or a token's two secrets) would share one. Names differing only in case or in . vs - get the same default ids; set credentials_secret_id / token_secret_id."
  }

  validation {
    condition = alltrue(flatten([for t in values(var.tokens) : concat([length(t.replicas) <= 7], [
      for r in t.replicas : trimspace(lookup(r, "backend", "")) != "" && alltrue([for k in keys(r) : can(regex("^[a-z_]{1,64}$", k))])
    ])]))
    error_message = "Each token takes at most 7 replicas (1 primary + 7 = the rotator's limit of 8 stores); every replica needs a `backend` and its keys are lowercase store fields (backend, secret_id, path, mount, keep_versions, ...)."
  }
}

variable "keep_versions" {
  description = "`store.keep_versions`: the rotator destroys token versions older than the newest N (destroyed versions are not billed)."
  type        = number
  default     = 5

  validation {
    condition     = var.keep_versions >= 2 && var.keep_versions <= 1000
    error_message = "keep_versions must be 2-1000."
  }
}

variable "version_destroy_ttl" {
  description = "Optional `version_destroy_ttl` of every token secret (e.g. `86400s`): destroys then only disable and schedule the destruction (billed until then). Null: destroy at once."
  type        = string
  default     = null
}

variable "renew_before" {
  description = "`[rotation] renew_before`: re-mint once the stored token has this little time left (tokens live 24 h)."
  type        = string
  default     = "12h"
}

variable "alert_environment" {
  description = "`[alerting] environment`: the label in every alert and dedup key."
  type        = string
  default     = "prod"
}

variable "extra_config_toml" {
  description = "Extra TOML appended to the rendered config (e.g. `[[alerts]]` sinks by reference, `[deepvue]` overrides). Never secrets: the config is a plain environment variable."
  type        = string
  default     = ""
}

################################################################################
# mode = job
################################################################################

variable "schedule" {
  description = "(mode = job) Cloud Scheduler unix-cron schedule of the job."
  type        = string
  default     = "0 * * * *"
}

variable "schedule_time_zone" {
  description = "(mode = job) Time zone of `schedule`."
  type        = string
  default     = "Etc/UTC"
}

variable "run_every" {
  description = "`[rotation] run_every` (only used by `check`). Null: `1h` for the default hourly schedule, the rotation period in push mode, omitted otherwise."
  type        = string
  default     = null
}

variable "job_timeout" {
  description = "(mode = job) Task timeout; a rotation's retries are bounded by `deepvue.retry_deadline` (120 s by default)."
  type        = string
  default     = "300s"
}

variable "job_max_retries" {
  description = "(mode = job) Retries of a failed task (non-zero exit) within one execution."
  type        = number
  default     = 1
}

################################################################################
# mode = push
################################################################################

variable "rotation_period" {
  description = "(mode = push) Secret Manager `rotation_period` of every token secret: how often SECRET_ROTATE is published (>= 3600s). Tokens live 24 h: 8-12 h is right."
  type        = string
  default     = "28800s"
}

variable "first_rotation_time" {
  description = "(mode = push) RFC 3339 `next_rotation_time` for the first SECRET_ROTATE (>= 5 min in the future at apply). Null: 15 minutes after the first apply."
  type        = string
  default     = null
}

variable "ingress" {
  description = "(mode = push) Cloud Run ingress of the service. The push endpoint must be reachable by Pub/Sub; requests are authenticated by the app (OIDC), not by Cloud Run IAM (see README)."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "pubsub_kms_key_name" {
  description = "(mode = push) Cloud KMS key for the SECRET_ROTATE topic (CMEK); the Pub/Sub service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it. Null: Google-managed encryption."
  type        = string
  default     = null
}

variable "grant_pubsub_token_creator" {
  description = "(mode = push) Grant the Pub/Sub service agent roles/iam.serviceAccountTokenCreator on the push service account only, which Pub/Sub needs to mint the OIDC tokens in projects created before 2021-04-08 (harmless otherwise)."
  type        = bool
  default     = true
}

################################################################################
# Network: Direct VPC egress through Cloud NAT on reserved static addresses
################################################################################

variable "create_network" {
  description = "Create a VPC network and subnet for Direct VPC egress. False uses `network` and `subnetwork`."
  type        = bool
  default     = true
}

variable "subnet_cidr" {
  description = "(create_network) Primary range of the subnet Cloud Run instances take addresses from (/26 or larger recommended for Direct VPC egress)."
  type        = string
  default     = "10.43.0.0/24"
}

variable "network" {
  description = "(create_network = false) Existing VPC network (id or self link)."
  type        = string
  default     = null
}

variable "subnetwork" {
  description = "(create_network = false) Existing subnetwork in `region` (id or self link)."
  type        = string
  default     = null
}

variable "create_nat" {
  description = "Create a Cloud Router and Cloud NAT (manual static addresses) for the subnet. False when the subnet is already NATed through static addresses: then set expected_egress_ips."
  type        = bool
  default     = true
}

variable "nat_ip_count" {
  description = "(create_nat) Reserved static external addresses for the NAT: every one must be whitelisted by Deepvue. One serves 64k concurrent connections, plenty here."
  type        = number
  default     = 1

  validation {
    condition     = var.nat_ip_count >= 1 && var.nat_ip_count <= 4
    error_message = "nat_ip_count must be 1-4."
  }
}

variable "expected_egress_ips" {
  description = "(create_nat = false) The static egress IPs of your existing NAT, for `[egress] expected_ips` and the egress_ips output."
  type        = list(string)
  default     = []
}
