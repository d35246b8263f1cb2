variable "region" {
  description = "AWS Region of the rotator (Lambda, Secrets Manager, the NAT gateway)."
  type        = string
  default     = "eu-west-1"
}

variable "lambda_zip_path" {
  description = "The zip from deploy/lambda/build.sh, built with the gcp feature (the default build; not LEAN=1). Relative to this directory by default."
  type        = string
  default     = "../../../target/lambda/deepvue-rotator/bootstrap.zip"
}

variable "gcp_project_id" {
  description = "GCP project of the replica secret and the workload identity pool."
  type        = string
}

variable "gcp_replica_secret_id" {
  description = "Secret Manager id of the replica token secret GCP apps read (versions/latest)."
  type        = string
  default     = "deepvue-prod-token"
}

variable "replica_keep_versions" {
  description = "`keep_versions` of the GCP replica: the rotator destroys older versions after each copy (destroyed versions are not billed)."
  type        = number
  default     = 5

  validation {
    condition     = var.replica_keep_versions >= 2 && var.replica_keep_versions <= 1000
    error_message = "replica_keep_versions must be 2-1000."
  }
}

variable "workload_identity_pool_id" {
  description = "Id of the workload identity pool the Lambda's AWS identity federates into (4-32 lowercase letters, digits, hyphens; a deleted pool's id stays reserved for 30 days)."
  type        = string
  default     = "deepvue-rotator-aws"
}

variable "workload_identity_provider_id" {
  description = "Id of the AWS provider in that pool (4-32 lowercase letters, digits, hyphens)."
  type        = string
  default     = "aws-lambda"
}
