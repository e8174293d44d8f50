"""Generated protobuf and gRPC stubs of the orqen.* proto packages (see `make proto`)."""
