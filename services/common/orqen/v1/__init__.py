"""Generated stubs of proto/orqen/v1; regenerate with `make proto`, never edit by hand."""
