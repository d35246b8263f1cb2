output "egress_ips" {
  description = "Send these to Deepvue support (support@deepvue.tech) to whitelist."
  value       = module.deepvue_rotator.egress_ips
}

output "credentials_secret_arn" {
  description = "Set the client credentials here out of band (aws secretsmanager put-secret-value)."
  value       = module.deepvue_rotator.credentials_secret_arn
}

output "token_secret_arn" {
  description = "The secret apps read (AWSCURRENT)."
  value       = module.deepvue_rotator.token_secret_arn
}

output "function_arn" {
  description = "The rotator function."
  value       = module.deepvue_rotator.function_arn
}

output "sns_topic_arn" {
  description = "Subscribe on-call to this alert topic."
  value       = module.deepvue_rotator.sns_topic_arn
}
