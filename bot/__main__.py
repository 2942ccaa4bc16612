"""`python -m bot`: read the settings, then serve Slack and BK-JOB's callbacks until stopped.

`python -m bot demo` starts the local simulator instead (see bot.demo); it needs no settings. `python -m bot --help`
prints the usage: the sub-commands, every setting the bot reads and where the README is.
"""

from __future__ import annotations

import contextlib
import io
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pydantic.fields import FieldInfo

from bot.app import create_app
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logs import RedactingAccessLogger, SecretFilter, configure
from bot.web.connections import serve


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["demo"]:
        # Imported only here: the real bot never loads the simulator or its fakes.
        from bot.demo.cli import main as demo

        return demo(args[1:])
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if args:
        print(SYNOPSIS, file=sys.stderr)
        print(
            f"bkjob-bot: unknown command {args[0]!r} (python -m bot --help lists the commands and settings)",
            file=sys.stderr,
        )
        return 2
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


SYNOPSIS = """usage: python -m bot                 run the bot
       python -m bot demo [options]  try it without Slack or BK-JOB
       python -m bot -h | --help     print this help"""


def usage() -> str:
    """The help: sub-commands, the demo's options, every setting (from `Settings`, so none is missed) and the README."""
    settings = "\n".join(f"  {name.upper():<26}{_setting(field)}" for name, field in Settings.model_fields.items())
    readme = Path(__file__).resolve().parent.parent / "README.md"
    where = str(readme) if readme.is_file() else "README.md at the root of bkjob-bot's source"
    return f"""{SYNOPSIS}

bkjob-bot: Slack chat-ops for Tencent BlueKing JOB (BK-JOB).

commands:
  (none)  read the settings below, then serve Slack and BK-JOB's callbacks until stopped; a missing or invalid
          setting is reported on its own line and the exit code is 2
  demo    the real bot, a simulated BK-JOB and a page that plays a Slack channel, all on this machine; it reads
          none of the settings
{_demo_options()}
settings (environment variables, or a .env file in the working directory; names are case-insensitive):
{settings}

README (what each setting means and when it is needed, the Slack app, BK-JOB's credentials):
  {where}"""


def _setting(field: FieldInfo) -> str:
    """`required`, or the allowed values and the default, as the environment would spell them."""
    choices = [arg for arg in typing.get_args(field.annotation) if typing.get_origin(arg) is typing.Literal]
    if typing.get_origin(field.annotation) is typing.Literal:
        choices = [field.annotation]
    allowed = " | ".join(str(value) for choice in choices for value in typing.get_args(choice))
    if field.is_required():
        said = "required"
    elif field.default is None:
        said = "unset by default"
    elif isinstance(field.default, bool):
        said = f"default {str(field.default).lower()}"
    elif isinstance(field.default, float):
        said = f"default {field.default:g}"
    elif field.default == "":
        said = "empty by default"
    else:
        said = f"default {field.default}"
    return f"{allowed}; {said}" if allowed else said


def _demo_options() -> str:
    """The demo's own option list, as its parser prints it (so this help cannot drift from it)."""
    # Imported only here, as for `demo` itself: the real bot never loads the simulator or its fakes.
    from bot.demo.cli import main as demo

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        demo(["--help"])
    text = out.getvalue()
    options = text[text.find("options:") :].splitlines()[1:]
    return "".join(f"        {line}\n" for line in options if line.strip() and "--help" not in line)


if __name__ == "__main__":
    sys.exit(main())
