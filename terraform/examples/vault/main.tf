# A KV v2 mount, the rotator's least-privilege policy for two tokens, and an AppRole role
# bound to it. Works against OpenBao too (same API).

provider "vault" {
  address = var.vault_address
}

module "deepvue_rotator" {
  source = "../../modules/vault"

  kv_mount        = "deepvue"
  create_kv_mount = true
  max_versions    = 10

  tokens = {
    prod    = "prod"
    staging = "staging"
  }

  enable_approle         = true
  create_approle_backend = false
  vault_address          = var.vault_address
}
