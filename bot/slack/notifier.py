"""The only poster to Slack outside a request's own response: channel messages, thread replies, edits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack.blocks.text import Message, fit_text
from bot.slack.errors import SlackError

__all__ = ["Notifier"]

_MAX_RETRY_AFTER = 3600.0

log = logging.getLogger(__name__)


class Notifier:
    """Turns slack_sdk failures into SlackError; 429s, 5xx and resets are retried by the client's handlers."""

    def __init__(self, *, client: AsyncWebClient) -> None:
        self._client = client
        # A message's permalink never changes: cached (bounded) so `/bkjob pending` does not ask Slack each time.
        self._permalinks: TTLCache[tuple[str, str], str] = TTLCache(maxsize=2048, ttl=24 * 3600)

    async def permalink(self, channel: str, ts: str) -> str | None:
        """Slack's own link to a message (chat.getPermalink): it carries the workspace's domain, so a person
        signed into several workspaces lands in the right one. None when Slack cannot give one."""
        key = (channel, ts)
        if (cached := self._permalinks.get(key)) is not None:
            return cached
        try:
            response = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        except SlackError as exc:
            log.info("no permalink for %s/%s: %s", channel, ts, exc.error)
            return None
        link = response.get("permalink")
        if not isinstance(link, str) or not link.startswith("https://"):
            return None
        self._permalinks[key] = link
        return link

    async def post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> str:
        """Post to a channel (or a thread, shown in the channel too when the message says so) and return the new
        message's ts."""
        broadcast = {"reply_broadcast": True} if message.broadcast and thread_ts else {}
        response = await self._call(
            "chat.postMessage",
            channel=channel,
            text=message.text,
            blocks=message.blocks,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
            **broadcast,
        )
        return str(response["ts"])

    async def update(self, channel: str, ts: str, message: Message) -> None:
        await self._call("chat.update", channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    async def tell(self, channel: str, user: str, text: str) -> None:
        """Say something only `user` sees; a DM from the app when the bot cannot post in the channel."""
        text = fit_text(text)
        try:
            await self._call("chat.postEphemeral", channel=channel, user=user, text=text)
        except SlackError as exc:
            log.info("ephemeral message in %s failed (%s); sending a direct message instead", channel, exc.error)
            await self._call("chat.postMessage", channel=user, text=text)

    def responder(self, response_url: str) -> Callable[..., Awaitable[None]]:
        """Answer through a request's `response_url` (ephemeral by default) on the bot's shared connection pool.

        Bolt's own `respond()` opens a new HTTP client, and in production a new TLS connection, for every answer.
        A click inside a modal comes without a `response_url`: there is nothing to answer through, and that is
        not a failure. Texts are fitted to what Slack shows, never cut inside a link or a mention.
        """
        if not response_url:

            async def nowhere(**message: Any) -> None:
                log.info("no response_url to answer through (a click inside a modal); not answered")

            return nowhere
        webhook: AsyncWebhookClient | None = None

        async def respond(**message: Any) -> None:
            # Built at the first answer, after the ack: the client reads the proxy settings and builds its
            # user agent, a tenth of what acking a command costs.
            nonlocal webhook
            if webhook is None:
                webhook = AsyncWebhookClient(
                    url=response_url,
                    session=self._client.session,
                    timeout=15,
                    retry_handlers=self._client.retry_handlers,
                )
            if isinstance(message.get("text"), str):
                message["text"] = fit_text(message["text"])
            try:
                reply = await webhook.send_dict(message)
            except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("answer through response_url failed: %s", type(exc).__name__)
                return
            if reply.status_code != 200:
                log.warning("answer through response_url refused: HTTP %s %s", reply.status_code, reply.body[:200])

        return respond

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> tuple[str, str]:
        """Open a modal; returns its (view_id, hash) for the update that follows."""
        response = await self._call("views.open", trigger_id=trigger_id, view=view)
        return str(response["view"]["id"]), str(response["view"]["hash"])

    async def update_view(self, view_id: str, view: dict[str, Any], *, view_hash: str | None = None) -> None:
        await self._call("views.update", view_id=view_id, view=view, hash=view_hash)

    async def upload(
        self, channel: str, *, thread_ts: str | None, filename: str, title: str, content: str, comment: str
    ) -> None:
        """Attach a text file to a thread: files.getUploadURLExternal, the upload, files.completeUploadExternal
        (slack_sdk's files_upload_v2; the old files.upload is retired)."""
        try:
            await self._client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                filename=filename,
                title=title,
                content=content.encode("utf-8"),
                initial_comment=comment,
            )
        except SlackApiError as exc:
            raise SlackError("files_upload_v2", str(exc.response.get("error", "unknown_error"))) from exc
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SlackError("files_upload_v2", type(exc).__name__) from exc

    async def _call(self, method: str, **kwargs: Any) -> Any:
        args = {k: v for k, v in kwargs.items() if v is not None}
        try:
            return await self._client.api_call(method, json=args)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "unknown_error"))
            raise SlackError(method, error, retry_after=_retry_after(exc)) from exc
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SlackError(method, type(exc).__name__) from exc


def _retry_after(exc: SlackApiError) -> float | None:
    """Slack's `Retry-After` on a 429 that slack_sdk's own retries did not get past: whoever retries next must
    wait at least this long, or Slack answers 429 again."""
    if exc.response.status_code != 429:
        return None
    headers = exc.response.headers or {}
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    try:
        seconds = float(str(raw))
    except ValueError:
        return 1.0  # a 429 without a usable Retry-After: Slack's documented minimum wait
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER) if seconds == seconds else 1.0
