# deepvue-rotator as a Cloud Run job started hourly by Cloud Scheduler, leaving through Cloud
# NAT on a reserved static address (the address Deepvue whitelists).

provider "google" {
  project = var.project_id
  region  = var.region
}

module "deepvue_rotator" {
  source = "../../modules/gcp-cloud-run"

  project_id = var.project_id
  region     = var.region
  image      = var.image

  mode     = "job"
  schedule = "0 * * * *"

  # One entry per Deepvue token: secrets deepvue-<name>-credentials and deepvue-<name>-token.
  tokens = {
    prod = {}
  }
}
