output "egress_ips" {
  description = "The static external addresses Cloud NAT uses for the rotator (or expected_egress_ips): send these to Deepvue support for the whitelist."
  value       = local.egress_ips
}

output "tokens" {
  description = "Per token name: credentials_secret_id (full id projects/P/secrets/S; add its value out of band: `gcloud secrets versions add`) and token_secret_id (full id of the secret apps read at versions/latest)."
  value = {
    for name in keys(var.tokens) : name => {
      credentials_secret_id = google_secret_manager_secret.credentials[name].id
      token_secret_id       = google_secret_manager_secret.token[name].id
    }
  }
}

output "service_account_email" {
  description = "The rotator's service account (grant apps roles/secretmanager.secretAccessor on the token secrets, not this; bind custom_role_id to it on GCP replica secrets outside the module)."
  value       = google_service_account.rotator.email
}

output "job_name" {
  description = "(mode = job) Name of the Cloud Run job (`gcloud run jobs execute <name> --region <region>`), else null."
  value       = one(google_cloud_run_v2_job.rotator[*].name)
}

output "scheduler_job_name" {
  description = "(mode = job) Name of the Cloud Scheduler job, else null."
  value       = one(google_cloud_scheduler_job.rotator[*].name)
}

output "service_name" {
  description = "(mode = push) Name of the Cloud Run service, else null."
  value       = one(google_cloud_run_v2_service.rotator[*].name)
}

output "service_url" {
  description = "(mode = push) The service's deterministic URL (the push audience is this + /pubsub), else null."
  value       = local.push ? local.service_url : null
}

output "push_subscription" {
  description = "(mode = push) The Pub/Sub push subscription id, else null."
  value       = one(google_pubsub_subscription.push[*].id)
}

output "rotation_topic" {
  description = "(mode = push) The Pub/Sub topic Secret Manager publishes SECRET_ROTATE to, else null."
  value       = one(google_pubsub_topic.rotation[*].id)
}

output "custom_role_id" {
  description = "The custom role granted on each token secret (bind it for the service account on any GCP replica secret outside the module)."
  value       = google_project_iam_custom_role.token_rotator.name
}

output "config_toml" {
  description = "The rendered DEEPVUE_ROTATOR_CONFIG_TOML (no secrets)."
  value       = local.config_toml
}
