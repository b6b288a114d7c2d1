"""Pure builders: a validated spec in, plain Kubernetes object dicts out. No I/O here."""
