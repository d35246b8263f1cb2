output "approle_role_id" {
  description = "Put in the rotator's [vault] auth; generate the secret_id out of band."
  value       = module.deepvue_rotator.approle_role_id
}

output "policy_name" {
  description = "The rotator's policy."
  value       = module.deepvue_rotator.policy_name
}

output "paths" {
  description = "Where to write the credentials and where apps read the tokens."
  value       = module.deepvue_rotator.paths
}

output "config_toml" {
  description = "Config snippet for the rotator."
  value       = module.deepvue_rotator.config_toml
}
