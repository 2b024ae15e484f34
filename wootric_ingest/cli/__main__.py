"""`python -m wootric_ingest.cli`: the same `main()` as the `wootric-ingest` command."""

import sys

from wootric_ingest.cli import main

sys.exit(main(sys.argv[1:]))
