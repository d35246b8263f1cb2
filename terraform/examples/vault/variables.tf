variable "vault_address" {
  description = "Vault / OpenBao address (the provider also reads VAULT_ADDR and VAULT_TOKEN)."
  type        = string
  default     = "https://vault.example.com:8200"
}
