# deepvue-rotator as a Cloud Run service: Secret Manager publishes SECRET_ROTATE for the token
# secret every 8 hours to a Pub/Sub topic whose push subscription (OIDC) reaches the service.

provider "google" {
  project = var.project_id
  region  = var.region
}

module "deepvue_rotator" {
  source = "../../modules/gcp-cloud-run"

  project_id = var.project_id
  region     = var.region
  image      = var.image

  mode            = "push"
  rotation_period = "28800s"

  # One entry per Deepvue token: secrets deepvue-<name>-credentials and deepvue-<name>-token.
  tokens = {
    prod = {}
  }
}
