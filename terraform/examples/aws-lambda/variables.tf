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
