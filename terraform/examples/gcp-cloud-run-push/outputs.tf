output "egress_ips" {
  description = "Send these to Deepvue support (support@deepvue.tech) to whitelist."
  value       = module.deepvue_rotator.egress_ips
}

output "tokens" {
  description = "Per token: credentials_secret_id (add the client credentials there out of band: gcloud secrets versions add) and token_secret_id (the secret apps read, versions/latest)."
  value       = module.deepvue_rotator.tokens
}

output "service_url" {
  description = "The Cloud Run service; Pub/Sub pushes to <service_url>/pubsub."
  value       = module.deepvue_rotator.service_url
}
