# deepvue-rotator as the native Secrets Manager rotation function of the token secret
# (rotation every 8 hours), attached to existing private subnets behind your NAT gateway.

provider "aws" {
  region = var.region

  ignore_tags {
    key_prefixes = ["deepvue-rotator:"]
  }
}

module "deepvue_rotator" {
  source = "../../modules/aws-lambda"

  name            = "deepvue-rotator-sm"
  lambda_zip_path = var.lambda_zip_path

  # One entry per Deepvue token: secrets deepvue/<name>/credentials and deepvue/<name>/token.
  tokens = {
    prod = {}
  }

  trigger                      = "secretsmanager_rotation"
  rotation_schedule_expression = "rate(8 hours)"
  rotation_window              = "2h"

  create_vpc          = false
  vpc_id              = var.vpc_id
  subnet_ids          = var.private_subnet_ids
  expected_egress_ips = var.nat_egress_ips
}
