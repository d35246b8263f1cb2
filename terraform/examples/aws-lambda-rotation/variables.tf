variable "region" {
  description = "AWS Region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "lambda_zip_path" {
  description = "The zip from deploy/lambda/build.sh (relative to this directory by default)."
  type        = string
  default     = "../../../target/lambda/deepvue-rotator/bootstrap.zip"
}

variable "vpc_id" {
  description = "Existing VPC of the private subnets."
  type        = string
}

variable "private_subnet_ids" {
  description = "Existing private subnets whose 0.0.0.0/0 route points at a NAT gateway with an Elastic IP."
  type        = list(string)
}

variable "nat_egress_ips" {
  description = "The NAT gateway's Elastic IP(s): what Deepvue whitelists."
  type        = list(string)
}
