output "egress_ips" {
  description = "The static public IPs the function reaches Deepvue from (the NAT gateways' Elastic IPs, or expected_egress_ips): send these to Deepvue support for the whitelist."
  value       = local.egress_ips
}

output "tokens" {
  description = "Per token name: credentials_secret_arn (Terraform leaves it without a value: set {\"client_id\", \"client_secret\"} with `aws secretsmanager put-secret-value`), token_secret_arn and token_secret_name (the secret apps read at AWSCURRENT: {\"access_token\", \"token_type\", \"expiry\", \"issued_at\"})."
  value = {
    for name in keys(var.tokens) : name => {
      credentials_secret_arn = aws_secretsmanager_secret.credentials[name].arn
      token_secret_arn       = aws_secretsmanager_secret.token[name].arn
      token_secret_name      = aws_secretsmanager_secret.token[name].name
    }
  }
}

output "function_arn" {
  description = "ARN of the rotator Lambda function."
  value       = aws_lambda_function.rotator.arn
}

output "function_name" {
  description = "Name of the rotator Lambda function (for `aws lambda invoke`)."
  value       = aws_lambda_function.rotator.function_name
}

output "sns_topic_arn" {
  description = "ARN of the alert topic (rotator alerts and CloudWatch alarms); subscribe your on-call to it."
  value       = aws_sns_topic.alerts.arn
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue for failed asynchronous invocations and undeliverable schedule events."
  value       = aws_sqs_queue.dlq.arn
}

output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key encrypting the secrets, topic, logs, environment and schedule. Apps reading the token secret need kms:Decrypt on it."
  value       = aws_kms_key.this.arn
}

output "execution_role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.lambda.arn
}

output "execution_role_name" {
  description = "Name of the function's execution role: attach grants on replica stores outside the module to it, or match it in a GCP workload identity provider (arn:<partition>:sts::<account>:assumed-role/<name>)."
  value       = aws_iam_role.lambda.name
}

output "schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule (trigger = schedule), else null."
  value       = one(aws_scheduler_schedule.rotator[*].arn)
}

output "vpc_id" {
  description = "The VPC the function runs in."
  value       = local.vpc_id
}

output "private_subnet_ids" {
  description = "The private subnets the function is attached to."
  value       = local.subnet_ids
}

output "security_group_id" {
  description = "The function's security group (egress TCP 443 only)."
  value       = aws_security_group.lambda.id
}

output "config_toml" {
  description = "The rendered DEEPVUE_ROTATOR_CONFIG_TOML (no secrets; names the secrets and the topic)."
  value       = local.config_toml
}
