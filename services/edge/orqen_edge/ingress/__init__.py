"""SDK ingress: each SDK's chat format translated to and from the canonical shape, and the one chat path."""
