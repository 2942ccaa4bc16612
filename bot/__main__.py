"""`python -m bot`: read the settings, then serve Slack and BK-JOB's callbacks until stopped.

`python -m bot demo` starts the local simulator instead (see bot.demo); it needs no settings.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from bot.app import create_app
from bot.config import load_settings
from bot.errors import ConfigError
from bot.logs import RedactingAccessLogger, SecretFilter, configure
from bot.web.connections import serve


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["demo"]:
        # Imported only here: the real bot never loads the simulator or its fakes.
        from bot.demo.cli import main as demo

        return demo(args[1:])
    try:
        settings = load_settings()
        app = create_app(settings)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"bkjob-bot: {line}", file=sys.stderr)
        return 2
    configure(settings.log_level, fmt=settings.log_format, secrets=settings.secrets(), log_sql=settings.log_sql)
    # Heroku sends SIGTERM and waits 30 s: in-flight work gets most of that (see Background.close). The site bounds
    # open connections (see bot.web.connections).
    try:
        serve(
            app,
            host=settings.host,
            port=settings.port,
            limit=settings.max_connections,
            shutdown_timeout=25,
            access_log_class=RedactingAccessLogger,
        )
    except ConfigError as exc:
        scrub = SecretFilter([*settings.secrets(), urlsplit(settings.database_url).password or ""]).scrub
        print(f"bkjob-bot: {scrub(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
