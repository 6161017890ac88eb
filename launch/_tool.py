"""What every launcher's main shares (imported by the scripts beside it)."""

import functools
import sys

from absl import app, logging


def tool_main(main):
    """Wraps `main()` for absl's app.run: stray arguments are a usage error, orbax's
    per-save log lines are filtered out, and a UserError (bad flags, config or data)
    ends the program with one line on stderr and exit status 1."""

    @functools.wraps(main)
    def run(argv: list[str]) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        logging.get_absl_handler().addFilter(lambda record: "/orbax/" not in record.pathname)
        from jaxdl.errors import UserError

        try:
            return main()
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    return run
