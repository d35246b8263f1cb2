output "egress_ips" {
  description = "Send these to Deepvue support (support@deepvue.tech) to whitelist."
  value       = module.deepvue_rotator.egress_ips
}

output "tokens" {
  description = "Per token: credentials_secret_arn (set the client credentials there out of band: aws secretsmanager put-secret-value), token_secret_arn and token_secret_name (the secret apps read, AWSCURRENT)."
  value       = module.deepvue_rotator.tokens
}

output "function_arn" {
  description = "The rotator function."
  value       = module.deepvue_rotator.function_arn
}

output "sns_topic_arn" {
  description = "Subscribe on-call to this alert topic."
  value       = module.deepvue_rotator.sns_topic_arn
}
