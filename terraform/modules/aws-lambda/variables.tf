################################################################################
# Naming and the tokens
################################################################################

variable "name" {
  description = "Name of the function and prefix of every resource this module creates (IAM roles, KMS alias, SNS topic, DLQ, schedule, VPC)."
  type        = string
  default     = "deepvue-rotator"

  validation {
    condition     = can(regex("^[A-Za-z0-9-_]{1,48}$", var.name))
    error_message = "name must be 1-48 characters of A-Z a-z 0-9 - _ (it prefixes IAM role and queue names)."
  }
}

variable "tokens" {
  description = "The Deepvue tokens this function keeps fresh, `[[tokens]] name` => settings. Per token the module creates `<prefix>/credentials` (client id and secret, value set out of band) and `<prefix>/token` (what apps read); `secret_name_prefix` defaults to `deepvue/<name>`. `replicas` (fan-out, trigger = schedule only): further stores that get a copy of the token, each a flat map rendered as a TOML inline table, e.g. `{ backend = \"gcp\", secret_id = \"projects/P/secrets/S\", keep_versions = \"5\" }` (`keep_versions` and `create_if_missing` are rendered unquoted). The module grants nothing on replicas: give the execution role (or the replica's platform) access yourself."
  type = map(object({
    secret_name_prefix = optional(string)
    replicas           = optional(list(map(string)), [])
  }))
  default = { prod = {} }

  validation {
    condition     = length(var.tokens) >= 1 && length(var.tokens) <= 20 && alltrue([for name in keys(var.tokens) : can(regex("^[A-Za-z0-9._-]{1,64}$", name))])
    error_message = "tokens needs 1-20 entries (the execution role's inline policy lists every secret ARN, and IAM caps a role's inline policies at 10,240 characters); names are 1-64 characters of A-Z a-z 0-9 . _ -."
  }

  validation {
    condition     = length(distinct([for name, t in var.tokens : coalesce(t.secret_name_prefix, "deepvue/${name}")])) == length(var.tokens)
    error_message = "Two tokens would share a secret_name_prefix (and so the same secrets): give each token its own prefix."
  }

  validation {
    condition = alltrue(flatten([for t in values(var.tokens) : concat([length(t.replicas) <= 7], [
      for r in t.replicas : trimspace(lookup(r, "backend", "")) != "" && alltrue([for k in keys(r) : can(regex("^[a-z_]{1,64}$", k))])
    ])]))
    error_message = "Each token takes at most 7 replicas (1 primary + 7 = the rotator's limit of 8 stores); every replica needs a `backend` and its keys are lowercase store fields (backend, secret_id, path, mount, keep_versions, ...)."
  }
}

variable "secret_recovery_window_in_days" {
  description = "Days Secrets Manager keeps a deleted secret recoverable (0 deletes at once; 7-30 otherwise)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_in_days == 0 || (var.secret_recovery_window_in_days >= 7 && var.secret_recovery_window_in_days <= 30)
    error_message = "secret_recovery_window_in_days must be 0 or 7-30."
  }
}

################################################################################
# The function
################################################################################

variable "lambda_zip_path" {
  description = "Path to the zip built by `deploy/lambda/build.sh` (the deepvue-rotator binary as `bootstrap`), e.g. `target/lambda/deepvue-rotator/bootstrap.zip`."
  type        = string
}

variable "architecture" {
  description = "Lambda architecture the zip was built for: `x86_64` (build.sh default) or `arm64` (`ARCH=arm64 deploy/lambda/build.sh`)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "code_signing_config_arn" {
  description = "ARN of an aws_lambda_code_signing_config to enforce, if you sign the zip with AWS Signer (then upload the signed object yourself). Null: no code signing."
  type        = string
  default     = null
}

variable "memory_size" {
  description = "Function memory in MB (128 is enough for the rotator)."
  type        = number
  default     = 128
}

variable "timeout" {
  description = "Function timeout in seconds. A rotation's retries are bounded by `deepvue.retry_deadline` (120 s by default), so 180 s leaves room."
  type        = number
  default     = 180
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions. 1 keeps scheduled runs from overlapping (overlaps are safe, just wasteful). Set -1 for unreserved when the account's concurrency quota is too small to reserve any."
  type        = number
  default     = 1
}

variable "log_retention_in_days" {
  description = "Retention of the function's CloudWatch log group (and the VPC flow-log group)."
  type        = number
  default     = 365
}

variable "renew_before" {
  description = "`[rotation] renew_before`: re-mint once the stored token has this little time left (Deepvue tokens live 24 h)."
  type        = string
  default     = "12h"
}

variable "environment" {
  description = "Extra environment variables of the function (e.g. `GOOGLE_APPLICATION_CREDENTIALS` for a GCP replica via workload identity federation). Not secrets: the environment is readable by anyone who may read the function's configuration. `DEEPVUE_ROTATOR_CONFIG_TOML` (set by the module) and `DEEPVUE_ROTATOR_CONFIG` are refused."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.environment), "DEEPVUE_ROTATOR_CONFIG_TOML") && !contains(keys(var.environment), "DEEPVUE_ROTATOR_CONFIG")
    error_message = "environment must not contain DEEPVUE_ROTATOR_CONFIG_TOML (the module renders it) or DEEPVUE_ROTATOR_CONFIG (it would compete with it); use extra_config_toml to add config."
  }
}

variable "layers" {
  description = "Lambda layer version ARNs to attach to the function (at most 5), e.g. one shipping a GCP workload identity federation credential configuration under /opt."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.layers) <= 5
    error_message = "Lambda takes at most 5 layers."
  }
}

variable "extra_config_toml" {
  description = "Extra TOML appended verbatim to the rendered config (e.g. `[deepvue]` overrides or more `[[alerts]]` sinks). Never put secrets here: the config is a Lambda environment variable."
  type        = string
  default     = ""
}

################################################################################
# Trigger: EventBridge Scheduler (default) or Secrets Manager native rotation
################################################################################

variable "trigger" {
  description = "How the function is run: `schedule` (EventBridge Scheduler, one pass every `schedule_expression`; recommended) or `secretsmanager_rotation` (native Secrets Manager rotation of each token secret every `rotation_schedule_expression`; no replicas)."
  type        = string
  default     = "schedule"

  validation {
    condition     = contains(["schedule", "secretsmanager_rotation"], var.trigger)
    error_message = "trigger must be schedule or secretsmanager_rotation."
  }
}

variable "schedule_expression" {
  description = "(trigger = schedule) EventBridge Scheduler expression, in UTC. A `rate(...)` also sets `[rotation] run_every`."
  type        = string
  default     = "rate(1 hour)"
}

variable "schedule_retry_attempts" {
  description = "(trigger = schedule) Retries of a failed delivery by EventBridge Scheduler and of a failed asynchronous invocation by Lambda, before the event goes to the dead-letter queue."
  type        = number
  default     = 2
}

variable "rotation_schedule_expression" {
  description = "(trigger = secretsmanager_rotation) Secrets Manager `rotation_rules.schedule_expression`: `rate(N hours|days)` or `cron(...)`, at most every 4 hours. The token lives 24 h, so rotate every 8-12 h."
  type        = string
  default     = "rate(8 hours)"
}

variable "rotation_window" {
  description = "(trigger = secretsmanager_rotation) Secrets Manager `rotation_rules.duration`: the window in which the rotation runs, e.g. `2h`."
  type        = string
  default     = "2h"
}

variable "rotate_immediately" {
  description = "(trigger = secretsmanager_rotation) Rotate as soon as rotation is configured. Off by default: the credentials secret has no value until you set it (see README), so an immediate rotation would fail."
  type        = bool
  default     = false
}

variable "run_every" {
  description = "`[rotation] run_every` (how often the trigger fires; only used by `check`). Null derives it from a `rate(...)` expression and omits it for `cron(...)`."
  type        = string
  default     = null
}

################################################################################
# Alerts
################################################################################

variable "enable_rotator_alerts" {
  description = "Render `[[alerts]] kind = \"sns\"` into the config so the rotator itself alerts (and resolves) on the module's SNS topic, and grant the alert-state permissions it needs (sns:Publish, tags `deepvue-rotator:state:*`, the `DEEPVUE_ROTATOR_ALERTS` staging label). The CloudWatch alarms publish to the topic either way."
  type        = bool
  default     = true
}

variable "alert_environment" {
  description = "`[alerting] environment`: the label in every alert and dedup key."
  type        = string
  default     = "prod"
}

################################################################################
# Network: static egress IP for Deepvue's whitelist
################################################################################

variable "create_vpc" {
  description = "Create a small VPC (public subnets with NAT gateway + Elastic IP, private subnets for the function). False attaches the function to existing private subnets (`subnet_ids`, `vpc_id`) whose default route already leaves through a NAT with a static IP."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "(create_vpc) CIDR of the VPC; split into /27s (public 0-3, private 4-7), so a /24 covers up to 4 AZs."
  type        = string
  default     = "10.42.0.0/24"
}

variable "availability_zones" {
  description = "(create_vpc) AZs for the subnets; empty uses the region's first two available AZs."
  type        = list(string)
  default     = []
}

variable "nat_gateway_per_az" {
  description = "(create_vpc) One NAT gateway (and Elastic IP) per AZ instead of a single one. More IPs to whitelist and more NAT-hours, but no cross-AZ dependency."
  type        = bool
  default     = false
}

variable "enable_flow_logs" {
  description = "(create_vpc) VPC flow logs (ALL traffic) to a KMS-encrypted CloudWatch log group."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "(create_vpc = false) The existing VPC of `subnet_ids`, for the function's security group."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "(create_vpc = false) Existing private subnets whose 0.0.0.0/0 route points at a NAT gateway with an Elastic IP."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Extra security groups for the function, on top of the module's own (egress TCP 443 only)."
  type        = list(string)
  default     = []
}

variable "expected_egress_ips" {
  description = "(create_vpc = false) The static egress IPs of your NAT, rendered into `[egress] expected_ips` and returned as `egress_ips`. Ignored when the module creates the NAT (its Elastic IPs are used)."
  type        = list(string)
  default     = []
}

################################################################################
# Misc
################################################################################

variable "tags" {
  description = "Tags for every resource that takes them. Keys starting with `deepvue-rotator:` are reserved for the rotator's alert state on the token secret."
  type        = map(string)
  default     = {}
}
