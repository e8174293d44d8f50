"""The local Orqen stack (`orqen up`): embedded infrastructure, the five services, the `orqen` command."""
