"""The wire formats Orqen speaks, typed: one module each, shared by the edge and dispatch."""
