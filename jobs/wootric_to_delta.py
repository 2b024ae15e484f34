"""spark-submit entry point: `spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/wootric_to_delta.py
--config conf/local.yaml` (ship the package with `--py-files dist/wootric_ingest-*.whl`, built by `make dist`)."""
import sys

from wootric_ingest.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv if argv and argv[0] in {"run", "check", "plan", "discover", "docs"} else ["run", *argv]))
