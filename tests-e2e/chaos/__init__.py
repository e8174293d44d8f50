"""Fault runs through the whole stack: service faults, provider faults and the soak."""
