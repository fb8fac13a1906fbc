"""Exit non-zero, naming what is missing and how to start it, when infrastructure is down."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from stack import check_infra, default_env  # noqa: E402

if __name__ == "__main__":
    env = {**default_env(), **{k: v for k, v in os.environ.items() if k in default_env()}}
    problems = check_infra(env)
    for p in problems:
        sys.stderr.write(f"- {p}\n")
    sys.exit(2 if problems else 0)
