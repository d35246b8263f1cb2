output "egress_ips" {
  description = "The one address to whitelist: send it to Deepvue support (support@deepvue.tech). GCP API calls leave through it too."
  value       = module.deepvue_rotator.egress_ips
}

output "tokens" {
  description = "Per token: credentials_secret_arn (set the client credentials there out of band), token_secret_arn and token_secret_name (the AWS primary apps on AWS read, AWSCURRENT)."
  value       = module.deepvue_rotator.tokens
}

output "gcp_replica_secret" {
  description = "The GCP replica (projects/P/secrets/S): apps on GCP read versions/latest with roles/secretmanager.secretAccessor on it."
  value       = google_secret_manager_secret.replica.id
}

output "workload_identity_provider" {
  description = "The workload identity provider the Lambda federates through (the credential configuration's audience, without the //iam.googleapis.com/ prefix)."
  value       = google_iam_workload_identity_pool_provider.aws.name
}

output "function_name" {
  description = "The rotator function (aws lambda invoke --function-name <this> --payload '{}' out.json runs one pass)."
  value       = module.deepvue_rotator.function_name
}

output "config_toml" {
  description = "The rendered rotator config (no secrets): token prod with stores = [AWS primary, GCP replica]."
  value       = module.deepvue_rotator.config_toml
}
