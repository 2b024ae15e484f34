"""The chaos suite: `make chaos` (or `python -m chaos`) runs the job over and over against the sandbox with
random faults and SIGKILLs, and checks that nothing is lost and nothing lands twice. See `chaos.harness`."""
