output "egress_ips" {
  description = "Send these to Deepvue support (support@deepvue.tech) to whitelist."
  value       = module.deepvue_rotator.egress_ips
}

output "tokens" {
  description = "Per token: credentials_secret_id (add the client credentials there out of band: gcloud secrets versions add) and token_secret_id (the secret apps read, versions/latest)."
  value       = module.deepvue_rotator.tokens
}

output "job_name" {
  description = "Run it by hand: gcloud run jobs execute <job_name> --region <region> --wait"
  value       = module.deepvue_rotator.job_name
}
