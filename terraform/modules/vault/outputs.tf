output "policy_name" {
  description = "Name of the rotator's Vault policy."
  value       = vault_policy.rotator.name
}

output "policy_hcl" {
  description = "The policy text: per token, read on P/credentials, create/read/update on the token's data, read/update on its metadata."
  value       = data.vault_policy_document.rotator.hcl
}

output "approle_role_id" {
  description = "(enable_approle) The AppRole role_id (not a secret on its own; the secret_id is generated out of band), else null."
  value       = one(vault_approle_auth_backend_role.rotator[*].role_id)
}

output "approle_role_name" {
  description = "(enable_approle) The AppRole role name (for `vault write -f auth/<mount>/role/<name>/secret-id`), else null."
  value       = one(vault_approle_auth_backend_role.rotator[*].role_name)
}

output "kubernetes_role_name" {
  description = "(enable_kubernetes) The Kubernetes auth role name, else null."
  value       = one(vault_kubernetes_auth_backend_role.rotator[*].role_name)
}

output "kv_mount" {
  description = "The KV v2 mount path."
  value       = local.mount
}

output "paths" {
  description = "Keyed by token name: the credentials and token paths (relative to the mount, as the config takes them), the policy paths, and the API path apps read the token at."
  value       = local.paths
}

output "config_toml" {
  description = "A `[vault]` + `[[tokens]]` config snippet for the rotator (no secrets: the secret_id is read from secret_id_file)."
  value       = local.config_toml
}
