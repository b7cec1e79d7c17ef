"""A stand-in for VBVR-Pro-Bench's package (module names and call signatures only), for tests on machines without it."""
