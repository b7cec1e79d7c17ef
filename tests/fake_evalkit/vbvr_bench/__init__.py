"""A stand-in for VBVR-EvalKit's package (module names and call signatures only), for tests on machines without it."""
