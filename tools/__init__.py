"""Load generators and benchmark drivers run against the service from outside (not shipped in it).

Run them with the project's environment from the repository root, e.g.
`.venv/bin/python -m tools.bench_peer`; the Makefile targets `bench-peer`, `bench-100k`,
`synth-faq` and `soak` do that.
"""
