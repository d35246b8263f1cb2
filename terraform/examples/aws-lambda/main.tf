# deepvue-rotator on Lambda, run hourly by EventBridge Scheduler (the recommended trigger),
# in a small VPC whose NAT gateway Elastic IP is the address Deepvue whitelists.

provider "aws" {
  region = var.region

  # The rotator keeps its alert state in tags under this prefix on the token secret.
  ignore_tags {
    key_prefixes = ["deepvue-rotator:"]
  }

  default_tags {
    tags = { Service = "deepvue-rotator" }
  }
}

module "deepvue_rotator" {
  source = "../../modules/aws-lambda"

  name            = "deepvue-rotator"
  lambda_zip_path = var.lambda_zip_path

  # One entry per Deepvue token: secrets deepvue/<name>/credentials and deepvue/<name>/token.
  tokens = {
    prod = {}
  }

  trigger             = "schedule"
  schedule_expression = "rate(1 hour)"

  alert_environment = "prod"
}
