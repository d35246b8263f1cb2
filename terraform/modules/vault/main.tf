################################################################################
# deepvue-rotator on Vault / OpenBao: a KV v2 mount, a policy with exactly the rotator's
# capabilities per token path, and an AppRole and/or Kubernetes auth role bound to it.
# The capabilities are checked by tests/terraform/test_iam.py.
################################################################################

locals {
  mount = trim(var.kv_mount, "/")

  # Per token prefix P, exactly these rules (format(path, P)):
  #   credentials: read;  token data: create, read, update (cas writes);
  #   token metadata: read, update (max_versions = keep_versions, run state in custom_metadata).
  rule_templates = {
    credentials_data = { path = "data/%s/credentials", capabilities = ["read"] }
    token_data       = { path = "data/%s/token", capabilities = ["create", "read", "update"] }
    token_metadata   = { path = "metadata/%s/token", capabilities = ["read", "update"] }
  }

  policy_rules = flatten([
    for name, prefix in var.tokens : [
      for key in ["credentials_data", "token_data", "token_metadata"] : {
        path         = "${local.mount}/${format(local.rule_templates[key].path, prefix)}"
        capabilities = local.rule_templates[key].capabilities
        description  = "deepvue-rotator token ${name}: ${key}"
      }
    ]
  ])

  # backend = "vault" replicas (fan-out): the token rules on their own path and mount.
  replica_rules = flatten([
    for name, rs in var.replicas : [
      for r in rs : [
        for key in ["token_data", "token_metadata"] : {
          path         = "${trim(lookup(r, "mount", "secret"), "/")}/${replace(local.rule_templates[key].path, "%s/token", r.path)}"
          capabilities = local.rule_templates[key].capabilities
          description  = "deepvue-rotator token ${name}: replica ${key}"
        }
      ] if r.backend == "vault"
    ]
  ])

  paths = {
    for name, prefix in var.tokens : name => {
      credentials   = "${prefix}/credentials"
      token         = "${prefix}/token"
      policy_paths  = [for key in ["credentials_data", "token_data", "token_metadata"] : "${local.mount}/${format(local.rule_templates[key].path, prefix)}"]
      read_token_at = "${local.mount}/data/${prefix}/token"
    }
  }

  config_toml = templatefile("${path.module}/templates/config.toml.tftpl", {
    vault_address    = var.vault_address
    approle_role_id  = var.enable_approle ? vault_approle_auth_backend_role.rotator[0].role_id : null
    approle_mount    = var.approle_mount
    secret_id_file   = var.secret_id_file
    kubernetes_role  = var.enable_kubernetes ? var.kubernetes_role_name : null
    kubernetes_mount = var.kubernetes_mount
    tokens           = var.tokens
    replicas         = var.replicas
    mount            = local.mount
    keep_versions    = var.keep_versions
  })
}

################################################################################
# KV v2
################################################################################

resource "vault_mount" "kv" {
  count = var.create_kv_mount ? 1 : 0

  path        = local.mount
  type        = "kv"
  options     = { version = "2" }
  description = "KV v2: Deepvue client credentials and the tokens deepvue-rotator keeps fresh"
}

resource "vault_kv_secret_backend_v2" "kv" {
  count = var.create_kv_mount || var.manage_existing_mount_config ? 1 : 0

  mount        = var.create_kv_mount ? vault_mount.kv[0].path : local.mount
  max_versions = var.max_versions
  cas_required = var.cas_required
}

################################################################################
# Policy
################################################################################

data "vault_policy_document" "rotator" {
  dynamic "rule" {
    for_each = concat(local.policy_rules, local.replica_rules)
    content {
      path         = rule.value.path
      capabilities = rule.value.capabilities
      description  = rule.value.description
    }
  }
}

resource "vault_policy" "rotator" {
  name   = var.policy_name
  policy = data.vault_policy_document.rotator.hcl

  lifecycle {
    precondition {
      condition     = alltrue([for name in keys(var.replicas) : contains(keys(var.tokens), name)])
      error_message = "replicas is keyed by token name: every key must also be a key of tokens."
    }
  }
}

################################################################################
# AppRole
################################################################################

resource "vault_auth_backend" "approle" {
  count = var.enable_approle && var.create_approle_backend ? 1 : 0

  type        = "approle"
  path        = var.approle_mount
  description = "AppRole (deepvue-rotator)"
}

resource "vault_approle_auth_backend_role" "rotator" {
  count = var.enable_approle ? 1 : 0

  backend               = var.create_approle_backend ? vault_auth_backend.approle[0].path : var.approle_mount
  role_name             = var.approle_role_name
  token_policies        = [vault_policy.rotator.name]
  token_ttl             = var.token_ttl
  token_max_ttl         = var.token_max_ttl
  token_bound_cidrs     = var.token_bound_cidrs
  bind_secret_id        = true
  secret_id_ttl         = var.secret_id_ttl
  secret_id_bound_cidrs = var.secret_id_bound_cidrs
}

################################################################################
# Kubernetes auth
################################################################################

resource "vault_kubernetes_auth_backend_role" "rotator" {
  count = var.enable_kubernetes ? 1 : 0

  backend                          = var.kubernetes_mount
  role_name                        = var.kubernetes_role_name
  bound_service_account_names      = var.kubernetes_service_account_names
  bound_service_account_namespaces = var.kubernetes_namespaces
  audience                         = var.kubernetes_audience
  token_policies                   = [vault_policy.rotator.name]
  token_ttl                        = var.token_ttl
  token_max_ttl                    = var.token_max_ttl
  token_bound_cidrs                = var.token_bound_cidrs
}
