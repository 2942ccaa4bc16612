"""A failed host's log holding a secret in disguise (base64, hex, URL-encoded, upper-case, split, cut): neither the
failure digest nor the uploaded Logs file shows any of its forms, over real HTTP (v2 and v3)."""

from __future__ import annotations

import base64
import json

from bot.fakes.bkjob import HostOutcome
from bot.slack.blocks.results import LOGS_ACTION
from tests.conftest import Bot
from tests.test_flow_logs import (
    CHANNEL_USER,
    FULL,
    PASSWORD,
    add_rollout,
    answer,
    failed_reply,
    launch,
    lbot,
    logs_button,
)

__all__ = ["lbot"]  # the fixture, imported for the tests below

API_KEY = "key-abc-123456"  # plan 200's api_key, a secret variable in the FULL channel (tests/test_flow_logs.py)


def disguises(secret: str) -> dict[str, str]:
    """Each form of the secret, as one line of a host's log would hold it."""
    return {
        "upper-case": f"auth failed for {secret.upper()} (case-insensitive store)",
        "URL-encoded": "GET /login?token=" + "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in secret) + " 401",
        "base64": "Authorization: Basic " + base64.b64encode(f"deploy:{secret}".encode()).decode(),
        "hex": f"key bytes: {secret.encode().hex()}",
        "split": f"echo {secret[:5]}\n{secret[5:]} >> ~/.netrc",
        "cut": f"a line cut by the terminal at {secret[:-2]}",
    }


def fragments(secret: str) -> list[str]:
    """What must not be shown: every disguise's secret part."""
    basic = base64.b64encode(f"deploy:{secret}".encode()).decode()
    url = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in secret)
    return [secret, secret.upper(), url, basic, basic[12:], secret.encode().hex(), secret[:5], secret[5:], secret[:-2]]


async def test_a_secret_in_disguise_reaches_neither_the_digest_nor_the_logs_file(lbot: Bot) -> None:
    add_rollout(lbot.bk, 2)
    instance_id, ts = await launch(lbot, channel=FULL)
    # BK-JOB reveals a password's default on v2 only: on v3 the bot cannot know it, so cannot mask it.
    second = PASSWORD if lbot.bk.api_version == "v2" else API_KEY
    logs = {
        ip: "starting\n" + "\n".join(disguises(secret).values()) + "\nexit 1\n"
        for ip, secret in (("10.0.0.0", API_KEY), ("10.0.0.1", second))
    }
    lbot.bk.set_host_outcomes(
        instance_id,
        0,
        {
            "10.0.0.0": HostOutcome(status=104, exit_code=1, log=logs["10.0.0.0"]),
            "10.0.0.1": HostOutcome(status=104, exit_code=2, log=logs["10.0.0.1"]),
        },
    )
    reply = await failed_reply(lbot, instance_id, ts, channel=FULL)
    digest = json.dumps(reply)
    assert "Authorization: Basic ******" in digest and "exit 1" in digest  # the logs are shown, masked

    await lbot.click(LOGS_ACTION, logs_button(reply), user=CHANNEL_USER, channel=FULL, message_ts=reply["ts"])
    await answer(lbot, "Attached")
    (upload,) = lbot.slack.files()
    assert upload.data is not None
    content = upload.data.decode()
    assert content.count("Authorization: Basic ******") == 2 and "~/.netrc" in content

    for secret in {API_KEY, second}:
        for fragment in fragments(secret):
            assert fragment not in digest, f"{fragment!r} in the digest"
            assert fragment not in content, f"{fragment!r} in the Logs file"
