variable "project_id" {
  description = "GCP project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of Cloud Run, the subnet and Cloud NAT."
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "deepvue-rotator container image (from deploy/cloudrun/), pinned by digest in production."
  type        = string
}
