################################################################################
# KV v2 mount and the token paths
################################################################################

variable "kv_mount" {
  description = "Path of the KV v2 secrets engine holding the credentials and tokens."
  type        = string
  default     = "secret"
}

variable "create_kv_mount" {
  description = "Create the KV v2 mount at `kv_mount` (and set its max_versions). False uses an existing KV v2 mount."
  type        = bool
  default     = true
}

variable "manage_existing_mount_config" {
  description = "(create_kv_mount = false) Also set max_versions / cas_required on the existing mount's config (affects every secret in it). Off by default: the rotator's `keep_versions` sets the token path's own max_versions."
  type        = bool
  default     = false
}

variable "max_versions" {
  description = "KV v2 `max_versions` of the mount: versions kept per secret (0 means Vault's default of 10)."
  type        = number
  default     = 10
}

variable "cas_required" {
  description = "KV v2 `cas_required` on the mount. The rotator always writes with `cas`, so it works either way."
  type        = bool
  default     = false
}

variable "tokens" {
  description = "Deepvue tokens, `[[tokens]] name` => KV path prefix P. Each P gets `P/credentials` (client id and secret, written out of band) and `P/token` (what apps read), and one policy rule pair."
  type        = map(string)
  default     = { prod = "deepvue/prod" }

  validation {
    condition     = length(var.tokens) > 0 && alltrue([for p in values(var.tokens) : can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", p))])
    error_message = "tokens needs at least one entry; prefixes are slash-separated segments of A-Z a-z 0-9 . _ - (no leading/trailing slash, no globs)."
  }
}

variable "replicas" {
  description = "Fan-out (optional): per token name (a key of `tokens`), further stores that get a copy of its token, each a flat map rendered as a TOML inline table, e.g. `{ backend = \"gcp\", secret_id = \"projects/P/secrets/S\", keep_versions = \"5\" }` (`keep_versions` and `create_if_missing` are rendered unquoted). Only `config_toml` and, for `backend = \"vault\"` replicas, the policy change: each gets the token rules on its `path` (data create/read/update, metadata read/update) in its `mount` (default `secret`, as the rotator's). Other backends' grants are yours to make."
  type        = map(list(map(string)))
  default     = {}

  validation {
    condition = alltrue(flatten([for rs in values(var.replicas) : concat([length(rs) <= 7], [
      for r in rs : trimspace(lookup(r, "backend", "")) != "" && alltrue([for k in keys(r) : can(regex("^[a-z_]{1,64}$", k))])
      && (lookup(r, "backend", "") != "vault" || (can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", lookup(r, "path", ""))) && can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", trim(lookup(r, "mount", "secret"), "/")))))
    ])]))
    error_message = "Each token takes at most 7 replicas (1 primary + 7 = the rotator's limit of 8 stores); every replica needs a `backend`, its keys are lowercase store fields, and a vault replica needs a `path` (and optional `mount`) of slash-separated segments of A-Z a-z 0-9 . _ - (no globs)."
  }
}

variable "keep_versions" {
  description = "`store.keep_versions` rendered into the config snippet (the rotator sets it as the token path's max_versions)."
  type        = number
  default     = 10
}

variable "policy_name" {
  description = "Name of the Vault policy granting exactly the rotator's capabilities."
  type        = string
  default     = "deepvue-rotator"
}

################################################################################
# AppRole
################################################################################

variable "enable_approle" {
  description = "Create an AppRole role bound to the policy."
  type        = bool
  default     = true
}

variable "create_approle_backend" {
  description = "Enable the AppRole auth method at `approle_mount`. False uses an existing one."
  type        = bool
  default     = false
}

variable "approle_mount" {
  description = "Path of the AppRole auth method."
  type        = string
  default     = "approle"
}

variable "approle_role_name" {
  description = "Name of the AppRole role."
  type        = string
  default     = "deepvue-rotator"
}

variable "secret_id_ttl" {
  description = "AppRole secret_id TTL in seconds (default 30 days; 0 would never expire, so a leaked secret_id would log in forever). Issue a new secret_id before it ends. The secret_id is generated out of band, never by Terraform (it would land in the state)."
  type        = number
  default     = 2592000

  validation {
    condition     = var.secret_id_ttl > 0 && var.secret_id_ttl <= 31536000
    error_message = "secret_id_ttl must be between 1 second and 1 year: a secret_id that never expires is refused."
  }
}

variable "secret_id_bound_cidrs" {
  description = "CIDRs allowed to log in with a secret_id of this role: set it to the rotator's own addresses (its static egress range or subnet), so a leaked secret_id is useless elsewhere. Empty: any address."
  type        = list(string)
  default     = []
}

################################################################################
# Kubernetes auth
################################################################################

variable "enable_kubernetes" {
  description = "Create a Kubernetes auth role bound to the policy, on an existing, configured Kubernetes auth mount."
  type        = bool
  default     = false
}

variable "kubernetes_mount" {
  description = "Path of the (existing) Kubernetes auth method."
  type        = string
  default     = "kubernetes"
}

variable "kubernetes_role_name" {
  description = "Name of the Kubernetes auth role."
  type        = string
  default     = "deepvue-rotator"
}

variable "kubernetes_service_account_names" {
  description = "Service accounts allowed to log in with the Kubernetes role."
  type        = list(string)
  default     = ["deepvue-rotator"]
}

variable "kubernetes_namespaces" {
  description = "Namespaces of those service accounts."
  type        = list(string)
  default     = ["deepvue-rotator"]
}

variable "kubernetes_audience" {
  description = "Optional audience the service-account token must carry."
  type        = string
  default     = null
}

################################################################################
# Tokens issued to the rotator, rendered config
################################################################################

variable "token_ttl" {
  description = "TTL (seconds) of Vault tokens issued to the rotator by either role. One-shot runs log in each time; the daemon renews at about 2/3 of it."
  type        = number
  default     = 3600
}

variable "token_max_ttl" {
  description = "Max TTL (seconds) of those tokens; the daemon logs in again when it is reached."
  type        = number
  default     = 86400
}

variable "token_bound_cidrs" {
  description = "CIDRs allowed to use tokens issued by either role. Empty: any."
  type        = list(string)
  default     = []
}

variable "vault_address" {
  description = "`[vault] address` for the rendered config snippet; null leaves it to $VAULT_ADDR."
  type        = string
  default     = null
}

variable "secret_id_file" {
  description = "Where the rotator reads its AppRole secret_id from, for the rendered config snippet."
  type        = string
  default     = "/run/secrets/vault-secret-id"
}
