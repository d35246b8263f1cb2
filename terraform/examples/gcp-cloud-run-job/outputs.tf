output "egress_ips" {
  description = "Send these to Deepvue support (support@deepvue.tech) to whitelist."
  value       = module.deepvue_rotator.egress_ips
}

output "credentials_secret_id" {
  description = "Add the client credentials here out of band (gcloud secrets versions add)."
  value       = module.deepvue_rotator.credentials_secret_id
}

output "token_secret_id" {
  description = "The secret apps read (versions/latest)."
  value       = module.deepvue_rotator.token_secret_id
}

output "job_name" {
  description = "Run it by hand: gcloud run jobs execute <job_name> --region <region> --wait"
  value       = module.deepvue_rotator.job_name
}
