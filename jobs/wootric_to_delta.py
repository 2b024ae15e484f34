"""spark-submit entry point: the same `main()` as the `wootric-ingest` command, on the cluster's session.

    make dist
    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 \\
      --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \\
      --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \\
      --py-files dist/wootric_ingest-0.1.0-py3-none-any.whl jobs/wootric_to_delta.py --config conf/example.yaml

Arguments are `wootric-ingest` arguments; without a command (`run`, `check`, `plan`, ...) it is `run`.
"""

import sys

from wootric_ingest.cli import COMMANDS, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv if set(argv) & set(COMMANDS) else ["run", *argv]))
