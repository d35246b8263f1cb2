################################################################################
# deepvue-rotator on AWS Lambda: secrets, KMS, function, trigger, static egress IP,
# alerts. IAM follows deploy/lambda/README.md per trigger mode; the lists are checked by
# tests/terraform/test_iam.py.
################################################################################

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zone names are used (slice below), so a zone AWS adds later never enlarges the set; pass availability_zones to pin the zones explicitly.
  count = var.create_vpc && length(var.availability_zones) == 0 ? 1 : 0
  state = "available"
}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  # Permission gates (also read by tests/terraform/test_iam.py).
  scheduled       = var.trigger == "schedule"
  native_rotation = var.trigger == "secretsmanager_rotation"
  alerting        = var.enable_rotator_alerts

  # Per token: the Secrets Manager name prefix of its two secrets.
  secret_prefixes = { for name, t in var.tokens : name => coalesce(t.secret_name_prefix, "deepvue/${name}") }
  has_replicas    = anytrue([for t in values(var.tokens) : length(t.replicas) > 0])

  # Every statement that grants on the secrets lists exactly these ARNs: one per token of
  # var.tokens (the secrets' for_each), never a wildcard.
  credentials_secret_arns = [for s in aws_secretsmanager_secret.credentials : s.arn]
  token_secret_arns       = [for s in aws_secretsmanager_secret.token : s.arn]

  lambda_log_group_name = "/aws/lambda/${var.name}"
  flow_log_group_name   = "/aws/vpc-flow-logs/${var.name}"
  # Built from names so the key policy does not depend on the log groups it encrypts.
  lambda_log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.lambda_log_group_name}"
  flow_log_group_arn   = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.flow_log_group_name}"

  # `[rotation] run_every` from a rate(...) expression: rate(1 hour) -> "60m".
  trigger_expression = local.scheduled ? var.schedule_expression : var.rotation_schedule_expression
  rate_parts         = try(regex("^rate\\((\\d+) (minutes?|hours?|days?)\\)$", local.trigger_expression), null)
  rate_minutes       = local.rate_parts == null ? null : tonumber(local.rate_parts[0]) * lookup({ minute = 1, minutes = 1, hour = 60, hours = 60, day = 1440, days = 1440 }, local.rate_parts[1])
  run_every          = var.run_every != null ? var.run_every : (local.rate_minutes == null ? null : "${local.rate_minutes}m")

  # Network
  azs          = var.create_vpc ? (length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available[0].names, 0, 2)) : []
  nat_count    = var.create_vpc ? (var.nat_gateway_per_az ? length(local.azs) : 1) : 0
  vpc_id       = var.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  subnet_ids   = var.create_vpc ? aws_subnet.private[*].id : var.subnet_ids
  egress_ips   = var.create_vpc ? aws_eip.nat[*].public_ip : var.expected_egress_ips
  flow_logs_on = var.create_vpc && var.enable_flow_logs

  config_toml = templatefile("${path.module}/templates/config.toml.tftpl", {
    renew_before = var.renew_before
    run_every    = local.run_every
    expected_ips = local.egress_ips
    tokens = {
      for name, t in var.tokens : name => {
        credentials_secret_arn = aws_secretsmanager_secret.credentials[name].arn
        token_secret_arn       = aws_secretsmanager_secret.token[name].arn
        replicas               = t.replicas
      }
    }
    alert_environment = var.alert_environment
    sns_topic_arn     = local.alerting ? aws_sns_topic.alerts.arn : null
    extra_config_toml = trimspace(var.extra_config_toml)
  })

  # The function's environment: the caller's extras, then the rendered config.
  environment = merge(var.environment, { DEEPVUE_ROTATOR_CONFIG_TOML = local.config_toml })
}

################################################################################
# KMS: one customer-managed key for the secrets, the alert topic, the logs, the
# function's environment and the schedule.
################################################################################

resource "aws_kms_key" "this" {
  description             = "${var.name}: Deepvue token and credentials secrets, alert topic, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The account's IAM policies decide who else may use the key (the rotator's role
        # gets Decrypt/GenerateDataKey via Secrets Manager and SNS only; see below). In a
        # key policy, "Resource": "*" means this key.
        Sid       = "EnableIamPolicies"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt",
          "kms:Decrypt",
          "kms:ReEncryptFrom",
          "kms:ReEncryptTo",
          "kms:GenerateDataKey",
          "kms:GenerateDataKeyWithoutPlaintext",
          "kms:DescribeKey",
        ]
        Resource = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = [local.lambda_log_group_arn, local.flow_log_group_arn]
          }
        }
      },
      {
        # CloudWatch alarms publish to the KMS-encrypted alert topic.
        Sid       = "CloudWatchAlarmsToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

################################################################################
# Secrets
################################################################################

# Client credentials: JSON {"client_id": "...", "client_secret": "..."}. Terraform creates
# the secret only; its value is set out of band (README) and never enters the state.
resource "aws_secretsmanager_secret" "credentials" {
  #checkov:skip=CKV2_AWS_57:Deepvue client credentials are issued by Deepvue and changed by hand (put-secret-value); there is no rotation function that could mint new ones.
  for_each = var.tokens

  name                    = "${local.secret_prefixes[each.key]}/credentials"
  description             = "Deepvue client credentials for token ${each.key}: {\"client_id\", \"client_secret\"}. Set out of band."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_in_days
  tags                    = var.tags
}

# The token document apps read (AWSCURRENT). Created empty: the first run mints.
resource "aws_secretsmanager_secret" "token" {
  for_each = var.tokens

  name                    = "${local.secret_prefixes[each.key]}/token"
  description             = "Deepvue access token ${each.key} kept fresh by ${var.name}: {\"access_token\", \"token_type\", \"expiry\", \"issued_at\"}. Apps read AWSCURRENT."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_in_days
  tags                    = var.tags

  lifecycle {
    # The rotator keeps its alert state in tags `deepvue-rotator:state:*` on this secret;
    # Terraform must not strip them. (Or set the provider's
    # ignore_tags { key_prefixes = ["deepvue-rotator:"] }, as the examples do.)
    ignore_changes = [tags]
  }
}

# Native rotation: one rotation schedule per token secret, each invoking the function with
# that secret's id.
resource "aws_secretsmanager_secret_rotation" "token" {
  for_each = local.native_rotation ? var.tokens : {}

  secret_id           = aws_secretsmanager_secret.token[each.key].id
  rotation_lambda_arn = aws_lambda_function.rotator.arn
  rotate_immediately  = var.rotate_immediately

  rotation_rules {
    schedule_expression = var.rotation_schedule_expression
    duration            = var.rotation_window
  }

  depends_on = [aws_lambda_permission.secretsmanager]
}

################################################################################
# Alerts: SNS topic (KMS), CloudWatch alarms, dead-letter queue
################################################################################

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = aws_kms_key.this.arn
  tags              = var.tags
}

# Failed asynchronous invocations (Lambda) and undeliverable schedule events (EventBridge
# Scheduler) land here. The messages are invocation metadata, never a token.
resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${var.name}-errors"
  alarm_description   = "deepvue-rotator invocations failed (errorType is the classification: Config, Forbidden, CredentialsRejected, Transient, Permanent). See the function's logs."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.rotator.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq" {
  alarm_name          = "${var.name}-dlq"
  alarm_description   = "Events reached the deepvue-rotator dead-letter queue: the function could not be invoked or failed after all retries."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

################################################################################
# Execution role: exactly deploy/lambda/README.md per trigger mode
################################################################################

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "LambdaAssume"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-lambda"
  description        = "Execution role of ${var.name}: reads the Deepvue credentials, writes the token secret, publishes alerts."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

# Both modes: read the client credentials.
data "aws_iam_policy_document" "read_credentials" {
  statement {
    sid       = "ReadClientCredentials"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.credentials_secret_arns
  }
}

# trigger = schedule: PutSecretValue without staging labels moves AWSCURRENT.
data "aws_iam_policy_document" "rotate_token_scheduled" {
  count = local.scheduled ? 1 : 0

  statement {
    sid    = "RotateToken"
    effect = "Allow"
    actions = [
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:DescribeSecret",
    ]
    resources = local.token_secret_arns
  }
}

# trigger = secretsmanager_rotation: the four rotation steps on each token secret.
data "aws_iam_policy_document" "rotate_token_native" {
  count = local.native_rotation ? 1 : 0

  statement {
    sid    = "RotateTokenSecret"
    effect = "Allow"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = local.token_secret_arns
  }
}

# With [[alerts]]: dedup state in tags deepvue-rotator:state:* on each token secret.
data "aws_iam_policy_document" "alert_state_tags" {
  count = local.alerting ? 1 : 0

  statement {
    sid       = "AlertStateTags"
    effect    = "Allow"
    actions   = ["secretsmanager:TagResource", "secretsmanager:UntagResource"]
    resources = local.token_secret_arns

    condition {
      test     = "ForAllValues:StringLike"
      variable = "aws:TagKeys"
      values   = ["deepvue-rotator:state:*"]
    }
  }
}

# With [[alerts]] in the scheduled mode: the DEEPVUE_ROTATOR_ALERTS staging label (the
# native mode's RotateTokenSecret already has UpdateSecretVersionStage).
data "aws_iam_policy_document" "alert_state_marker" {
  count = local.scheduled && local.alerting ? 1 : 0

  statement {
    sid       = "AlertStateMarker"
    effect    = "Allow"
    actions   = ["secretsmanager:UpdateSecretVersionStage"]
    resources = local.token_secret_arns
  }
}

data "aws_iam_policy_document" "alerts" {
  count = local.alerting ? 1 : 0

  statement {
    sid       = "Alerts"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
}

# The customer-managed key, only through Secrets Manager (and SNS: publishing to a
# KMS-encrypted topic needs the publisher to generate and decrypt the data key).
data "aws_iam_policy_document" "kms" {
  statement {
    sid       = "SecretsKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = concat(["secretsmanager.${local.region}.amazonaws.com"], local.alerting ? ["sns.${local.region}.amazonaws.com"] : [])
    }
  }
}

data "aws_iam_policy_document" "rotator" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.read_credentials.json],
    [for d in data.aws_iam_policy_document.rotate_token_scheduled : d.json],
    [for d in data.aws_iam_policy_document.rotate_token_native : d.json],
    [for d in data.aws_iam_policy_document.alert_state_tags : d.json],
    [for d in data.aws_iam_policy_document.alert_state_marker : d.json],
    [for d in data.aws_iam_policy_document.alerts : d.json],
    [data.aws_iam_policy_document.kms.json],
  )
}

resource "aws_iam_role_policy" "rotator" {
  name   = "deepvue-rotator"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.rotator.json
}

# What the Lambda service itself does with the execution role: logs (inline equivalent of
# AWSLambdaBasicExecutionRole, scoped to the module's log group), VPC ENIs (inline
# equivalent of AWSLambdaVPCAccessExecutionRole) and the async dead-letter queue.
data "aws_iam_policy_document" "platform" {
  statement {
    sid       = "Logs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }

  statement {
    # AWS requires "*": EC2 Describe* actions support no resource-level permissions, and
    # Lambda's ENI management only works if DescribeNetworkInterfaces is allowed on "*".
    sid       = "VpcEniDescribe"
    effect    = "Allow"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  statement {
    # Lambda creates and deletes the function's ENIs; AWS documents that DeleteNetworkInterface
    # needs either the ENI's id (unknown in advance) or all ids of the account and Region.
    sid = "VpcEniManage"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    effect    = "Allow"
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:*/*"]
  }

  statement {
    sid       = "DeadLetterQueue"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

resource "aws_iam_role_policy" "platform" {
  name   = "lambda-platform"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.platform.json
}

################################################################################
# The function
################################################################################

resource "aws_cloudwatch_log_group" "lambda" {
  name              = local.lambda_log_group_name
  retention_in_days = var.log_retention_in_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_security_group" "lambda" {
  name_prefix = "${var.name}-"
  description = "deepvue-rotator Lambda: no inbound; outbound HTTPS only (Deepvue, Secrets Manager, SNS, egress probes)"
  vpc_id      = local.vpc_id

  egress {
    description = "HTTPS through the NAT gateway (DNS to the VPC resolver is not filtered by security groups)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(var.tags, { Name = "${var.name}-lambda" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lambda_function" "rotator" {
  #checkov:skip=CKV_AWS_272:The zip from deploy/lambda/build.sh is unsigned (signing needs an AWS Signer job on an S3 object, outside this module); pass code_signing_config_arn to enforce signatures when you sign it.
  function_name    = var.name
  description      = substr("deepvue-rotator: keeps the Deepvue token(s) ${join(", ", keys(var.tokens))} fresh", 0, 256)
  role             = aws_iam_role.lambda.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  memory_size      = var.memory_size
  timeout          = var.timeout
  kms_key_arn      = aws_kms_key.this.arn

  code_signing_config_arn        = var.code_signing_config_arn
  reserved_concurrent_executions = var.reserved_concurrency
  layers                         = var.layers

  environment {
    variables = local.environment
  }

  vpc_config {
    subnet_ids         = local.subnet_ids
    security_group_ids = concat([aws_security_group.lambda.id], var.security_group_ids)
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  tracing_config {
    mode = "PassThrough"
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.create_vpc || (length(var.subnet_ids) > 0 && var.vpc_id != null)
      error_message = "With create_vpc = false, set subnet_ids (private subnets behind a NAT with a static IP) and vpc_id."
    }
    precondition {
      condition     = var.create_vpc || length(var.expected_egress_ips) > 0
      error_message = "With create_vpc = false, set expected_egress_ips to the NAT's Elastic IP(s): they are what Deepvue must whitelist."
    }
    precondition {
      condition     = local.scheduled || !local.has_replicas
      error_message = "tokens[*].replicas need trigger = \"schedule\": the native Secrets Manager rotation function rotates only the one secret Secrets Manager invokes it for, so it never fans out. Use the scheduled trigger for fan-out."
    }
    precondition {
      condition     = length(join("", concat(keys(local.environment), values(local.environment)))) <= 4096
      error_message = "The function's environment (the rendered config plus `environment`) exceeds Lambda's 4 KB limit: split the tokens over several module instances, or shorten names and replicas."
    }
  }

  depends_on = [
    aws_iam_role_policy.rotator,
    aws_iam_role_policy.platform,
    aws_cloudwatch_log_group.lambda,
  ]
}

resource "aws_lambda_function_event_invoke_config" "rotator" {
  function_name                = aws_lambda_function.rotator.function_name
  maximum_retry_attempts       = min(var.schedule_retry_attempts, 2)
  maximum_event_age_in_seconds = 3600
}

################################################################################
# Trigger 1 (default): EventBridge Scheduler
################################################################################

data "aws_iam_policy_document" "scheduler_assume" {
  count = local.scheduled ? 1 : 0

  statement {
    sid     = "SchedulerAssume"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count = local.scheduled ? 1 : 0

  name               = "${var.name}-scheduler"
  description        = "EventBridge Scheduler role of ${var.name}: invokes the function, dead-letters undeliverable events."
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume[0].json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  count = local.scheduled ? 1 : 0

  statement {
    sid       = "InvokeRotator"
    effect    = "Allow"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.rotator.arn, "${aws_lambda_function.rotator.arn}:*"]
  }

  statement {
    sid       = "DeadLetterQueue"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    # The schedule is encrypted with the module's key; Scheduler decrypts it with this role.
    sid       = "ScheduleKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count = local.scheduled ? 1 : 0

  name   = "invoke-deepvue-rotator"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler[0].json
}

resource "aws_scheduler_schedule" "rotator" {
  count = local.scheduled ? 1 : 0

  name                         = var.name
  description                  = "One deepvue-rotator pass (rotates tokens with less than ${var.renew_before} left)"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = aws_kms_key.this.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.rotator.arn
    role_arn = aws_iam_role.scheduler[0].arn
    input    = jsonencode({})

    retry_policy {
      maximum_retry_attempts       = var.schedule_retry_attempts
      maximum_event_age_in_seconds = 3600
    }

    dead_letter_config {
      arn = aws_sqs_queue.dlq.arn
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}

################################################################################
# Trigger 2: Secrets Manager native rotation of each token secret
################################################################################

# One permission per token secret, each scoped to that secret (source_arn). The statement id
# keeps the token name readable and is unique by the hash (Lambda statement ids take no dots).
resource "aws_lambda_permission" "secretsmanager" {
  for_each = local.native_rotation ? var.tokens : {}

  statement_id   = "AllowSecretsManagerRotation-${replace(each.key, ".", "_")}-${substr(md5(each.key), 0, 8)}"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.rotator.function_name
  principal      = "secretsmanager.amazonaws.com"
  source_account = local.account_id
  source_arn     = aws_secretsmanager_secret.token[each.key].arn
}

################################################################################
# Network: private subnets behind a NAT gateway with an Elastic IP (the address Deepvue
# whitelists)
################################################################################

resource "aws_vpc" "this" {
  count = var.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.tags, { Name = var.name })
}

# Take over the default security group and leave it without rules.
resource "aws_default_security_group" "this" {
  count = var.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  count = var.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 3, count.index)
  map_public_ip_on_launch = false
  tags                    = merge(var.tags, { Name = "${var.name}-public-${local.azs[count.index]}" })
}

resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 3, count.index + 4)
  tags              = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_eip" "nat" {
  count = local.nat_count

  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat-${count.index}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  count = local.nat_count

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(var.tags, { Name = "${var.name}-${count.index}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  count = var.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  count = var.create_vpc ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = length(local.azs)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table" "private" {
  count = length(local.azs)

  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_route" "private_nat" {
  count = length(local.azs)

  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[var.nat_gateway_per_az ? count.index : 0].id
}

resource "aws_route_table_association" "private" {
  count = length(local.azs)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# VPC flow logs
resource "aws_cloudwatch_log_group" "flow_logs" {
  count = local.flow_logs_on ? 1 : 0

  name              = local.flow_log_group_name
  retention_in_days = var.log_retention_in_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

data "aws_iam_policy_document" "flow_logs_assume" {
  count = local.flow_logs_on ? 1 : 0

  statement {
    sid     = "FlowLogsAssume"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  count = local.flow_logs_on ? 1 : 0

  name               = "${var.name}-flow-logs"
  description        = "VPC flow logs of ${var.name} into their log group"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume[0].json
  tags               = var.tags
}

data "aws_iam_policy_document" "flow_logs" {
  count = local.flow_logs_on ? 1 : 0

  statement {
    sid       = "FlowLogsDelivery"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [aws_cloudwatch_log_group.flow_logs[0].arn, "${aws_cloudwatch_log_group.flow_logs[0].arn}:*"]
  }

  statement {
    # DescribeLogGroups is authorised against the account's log groups, not one group.
    sid       = "FlowLogsDescribeGroups"
    effect    = "Allow"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  count = local.flow_logs_on ? 1 : 0

  name   = "flow-logs-delivery"
  role   = aws_iam_role.flow_logs[0].id
  policy = data.aws_iam_policy_document.flow_logs[0].json
}

resource "aws_flow_log" "this" {
  count = local.flow_logs_on ? 1 : 0

  vpc_id               = aws_vpc.this[0].id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs[0].arn
  iam_role_arn         = aws_iam_role.flow_logs[0].arn
  tags                 = var.tags
}

################################################################################
# Upgrade from the single-token module (token_name, default "prod"): the secrets and the
# native-rotation resources move to the "prod" instance. Another former token_name: move them
# by hand (README "Upgrading from one token").
################################################################################

moved {
  from = aws_secretsmanager_secret.credentials
  to   = aws_secretsmanager_secret.credentials["prod"]
}

moved {
  from = aws_secretsmanager_secret.token
  to   = aws_secretsmanager_secret.token["prod"]
}

moved {
  from = aws_secretsmanager_secret_rotation.token[0]
  to   = aws_secretsmanager_secret_rotation.token["prod"]
}
