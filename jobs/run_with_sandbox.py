"""`make run`: the whole job against the sandbox Wootric API, no account needed.

Starts the sandbox on a free loopback port, points the config's `${WOOTRIC_*}` variables at it (and, unless set,
gives the personal data policy a demo salt), runs the same `main()` as every other entry point, prints the last
months' NPS from the gold tables (when the config has an `nps` section), and stops the sandbox.
"""

import argparse
import os
import sys

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.cli import main
from wootric_ingest.config import load_config


def run_with_sandbox(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument("--end-users", type=int, default=2000)
    parser.add_argument("--responses", type=int, default=5000)
    parser.add_argument("--declines", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    options = SandboxOptions(end_users=args.end_users, responses=args.responses, declines=args.declines, seed=args.seed)
    with Sandbox(options) as sandbox:
        print(f"sandbox Wootric API at {sandbox.base_url}")
        os.environ.update(
            WOOTRIC_BASE_URL=sandbox.base_url,
            WOOTRIC_USERNAME=sandbox.credentials.username,
            WOOTRIC_PASSWORD=sandbox.credentials.password,
        )
        os.environ.setdefault("WOOTRIC_PII_SALT", "sandbox-demo-salt-not-a-secret")
        status = main(["run", "--config", args.config])
        if status == 0 and load_config(args.config).nps is not None:
            print()
            status = main(["nps", "--config", args.config, "--last", "6"])
        return status


if __name__ == "__main__":
    sys.exit(run_with_sandbox(sys.argv[1:]))
