"""The Slack outbox: messages are stored first, then delivered in order, paced per channel, until Slack says ok."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from bot.core.background import failure_delay
from bot.metrics import RESULTS_DELIVERED
from bot.slack.blocks.approvals import approval_message
from bot.slack.blocks.launch import launch_message
from bot.slack.blocks.text import Message
from bot.slack.errors import SlackError
from bot.slack.notifier import Notifier
from bot.store import ApprovalRecord, LaunchRecord, OutboxKind, OutboxMessage, Store

__all__ = ["Outbox"]

log = logging.getLogger(__name__)

# Slack will never accept these for this message: retrying cannot help, so the message is set aside and logged.
_PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "invalid_blocks",
        "no_text",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "missing_scope",
    }
)
_LEASE_S = 60.0
_BATCH = 500  # a round can hold one post for each of hundreds of channels, and their edits
_EDITS_PER_CHANNEL = 3
_MAX_BACKOFF_S = 300.0
_SEND_NOW_PATIENCE_S = 120.0  # how long a launch or approval message may wait for its channel before refusing
_QUEUED_NOTICE_S = 5.0  # a wait this long is told to the person, so that a quiet bot does not look broken


class _Stopped(Exception):
    """The worker is stopping: a post still waiting for its channel's slot is not sent."""


class _Lane:
    """One channel's posts, or its edits: leased messages delivered one after another by one task."""

    def __init__(self) -> None:
        self.queue: deque[OutboxMessage] = deque()
        self.task: asyncio.Task[None]


class Outbox:
    """slack_sdk's retry handlers already wait out 429 Retry-After, 5xx and resets within one delivery;
    the outbox adds what they cannot: persistence across restarts, order per thread, pacing per channel,
    and retry with back-off after the client gives up."""

    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        web_root: str | None,
        channel_interval: float,
        poll_interval: float = 1.0,
        lease: float = _LEASE_S,
        heartbeat: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._heartbeat = heartbeat
        self._lease = lease
        self._store = store
        self._notifier = notifier
        self._web_root = web_root
        self._channel_interval = channel_interval
        self._poll_interval = poll_interval
        self._clock = clock
        self._owner = f"outbox-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._next_slot: dict[str, float] = defaultdict(float)
        self._fastest = math.inf  # the fastest chat.postMessage round trip seen (see _post_paced)
        self._started = 0  # rounds of the worker loop begun
        self._idle_round = 0  # the last round that found nothing due
        self._round_done = asyncio.Condition()
        self._stopping = False
        self._stopped = asyncio.Event()  # the same, for a post waiting for its channel's slot to wake on
        # Each channel's posts (paced) and its edits go out in a lane of their own, one message after another. A
        # lane holds the message in hand and at most one lease's worth more (one post, a few edits): when it takes
        # its last queued message, the worker leases that lane's next at once, so a post is ready when its
        # channel's slot opens, and no lane waits for any other (a batch used to wait for its slowest channel).
        self._lanes: dict[tuple[str, bool], _Lane] = {}
        # Messages in the lanes (queued or in hand). One held past its lease (a database locked while its send is
        # recorded) can come back from a lease: it is not handed over twice.
        self._held: set[str] = set()
        self._posts_per_channel = None if channel_interval <= 0 else 1
        self._edits_per_channel = None if channel_interval <= 0 else _EDITS_PER_CHANNEL

    # -- what callers queue ---------------------------------------------------------------------------------

    def reply(
        self, channel: str, message: Message, *, thread_ts: str | None, on_sent: dict[str, Any] | None = None
    ) -> OutboxMessage:
        """A post, built but not stored: `Store.record_result` stores it in the same transaction as the result."""
        payload: dict[str, Any] = {"text": message.text, "blocks": message.blocks, "thread_ts": thread_ts}
        if message.broadcast and thread_ts:
            payload["reply_broadcast"] = True
        if on_sent:
            payload["on_sent"] = on_sent
        return self._message(channel, f"{channel}:{thread_ts or ''}", OutboxKind.POST, payload)

    async def post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> None:
        await self._enqueue(self.reply(channel, message, thread_ts=thread_ts))

    async def refresh_launch(self, launch: LaunchRecord) -> None:
        """Re-render the launch message from the store when sent; pending refreshes of it coalesce."""
        if launch.message_ts is None:
            return
        await self._enqueue(
            self._message(
                launch.channel,
                f"{launch.channel}:edit:{launch.message_ts}",
                OutboxKind.REFRESH_LAUNCH,
                {"launch_id": launch.id},
                dedupe_key=f"refresh-launch:{launch.id}",
            )
        )

    async def refresh_approval(self, approval: ApprovalRecord) -> None:
        if approval.message_ts is None:
            return
        await self._enqueue(
            self._message(
                approval.channel,
                f"{approval.channel}:edit:{approval.message_ts}",
                OutboxKind.REFRESH_APPROVAL,
                {"approval_id": approval.id},
                dedupe_key=f"refresh-approval:{approval.id}",
            )
        )

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Shutting down: `run` ends after the message in hand and leases nothing more; the batch's messages not
        yet tried are released, so another replica sends them at once rather than when this lease runs out (a
        message cancelled mid-send keeps its lease: Slack may have it)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()

    async def flush(self) -> None:
        """Return once every message already due has been handed to Slack (tests and shutdown use this)."""
        async with self._round_done:
            want = self._started + 1
            self._wake.set()
            await self._round_done.wait_for(lambda: self._idle_round >= want)

    def _message(
        self, channel: str, order_key: str, kind: OutboxKind, payload: dict[str, Any], dedupe_key: str | None = None
    ) -> OutboxMessage:
        now = self._clock()
        # No seq: the store numbers messages as it stores them, so order per thread does not rest on clocks.
        return OutboxMessage(
            id=uuid.uuid4().hex,
            created_at=now,
            channel=channel,
            order_key=order_key,
            kind=kind,
            payload=payload,
            dedupe_key=dedupe_key,
            next_attempt_at=now,
        )

    async def _enqueue(self, message: OutboxMessage) -> None:
        await self._store.enqueue(message)
        self._wake.set()

    # -- the worker -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Ends on `stop()` once every lane has finished the message in hand (or on cancellation, which cancels
        the lanes): a failed round (a locked database, a lost connection) is logged at ERROR and retried with
        back-off; what it had leased is retried once its lease runs out."""
        failures = 0
        try:
            while not self._stopping:
                try:
                    full = await self._round()
                except Exception:
                    failures += 1
                    delay = failure_delay(failures, base=self._poll_interval)
                    log.error("outbox round failed (%d in a row); next try in %.1f s", failures, delay, exc_info=True)
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                self._heartbeat()
                if full:
                    continue
                # Woken by a message queued, a lane taking its last queued message, or a lane ending; the timeout
                # finds retries come due and messages whose lease another replica let run out.
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
                except TimeoutError:
                    pass
            await asyncio.gather(*(lane.task for lane in list(self._lanes.values())), return_exceptions=True)
        finally:
            lanes = [lane.task for lane in self._lanes.values() if not lane.task.done()]
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def _round(self) -> bool:
        """Lease what is due for the lanes with room and hand it to them; True when the batch was full (more may
        be due at once). A round that finds nothing due and no lane at work releases flush() waiters."""
        self._started += 1
        round_id = self._started
        self._wake.clear()
        # A lane with more than the message in hand already holds its next: its channel is left out of the lease.
        full = [key for key, lane in self._lanes.items() if len(lane.queue) > 1]
        batch = await self._store.lease_outbox(
            owner=self._owner,
            now=self._clock(),
            lease=self._lease,
            limit=_BATCH,
            posts_per_channel=self._posts_per_channel,
            edits_per_channel=self._edits_per_channel,
            skip_posts_in=[channel for channel, post in full if post],
            skip_edits_in=[channel for channel, post in full if not post],
        )
        for message in batch:
            self._hand(message)
        if not batch and not self._lanes:
            async with self._round_done:
                self._idle_round = round_id
                self._round_done.notify_all()
        return len(batch) >= _BATCH

    def _hand(self, message: OutboxMessage) -> None:
        """Queue a leased message in its lane (posts and edits apart: an edit must not wait behind a paced post,
        and their order keys differ, so lanes side by side keep every order_key's order), starting the lane."""
        if message.id in self._held:
            return
        self._held.add(message.id)
        key = (message.channel, message.kind is OutboxKind.POST)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            lane.task = asyncio.create_task(self._drive(key, lane), name=f"outbox-{message.channel}")
        lane.queue.append(message)

    async def _drive(self, key: tuple[str, bool], lane: _Lane) -> None:
        """Deliver a lane's messages in the order they were leased; on stop, release those not yet tried."""
        try:
            while lane.queue:
                if self._stopping:
                    await self._store.outbox_release([m.id for m in lane.queue], owner=self._owner)
                    return
                message = lane.queue[0]
                if len(lane.queue) == 1:
                    self._wake.set()  # room in this lane: its next message is leased while this one goes out
                await self._deliver(message)
                lane.queue.popleft()
                self._held.discard(message.id)
                self._heartbeat()
        except Exception:
            # What it still holds is retried once its lease runs out, as after a failed round.
            log.error(
                "outbox lane %s failed; %d leased messages wait for their lease to run out",
                key,
                len(lane.queue),
                exc_info=True,
            )
        finally:
            self._held.difference_update(m.id for m in lane.queue)
            if self._lanes.get(key) is lane:
                del self._lanes[key]
            self._wake.set()

    async def _deliver(self, message: OutboxMessage) -> None:
        try:
            ts = await self._send(message)
        except _Stopped:
            # It was waiting for its channel's slot, so Slack never saw it: another replica sends it now.
            await self._store.outbox_release([message.id], owner=self._owner)
            return
        except SlackError as exc:
            await self._failed(message, exc)
            return
        await self._record_sent(message, ts)

    async def _record_sent(self, message: OutboxMessage, ts: str | None) -> None:
        """Slack has the message: recording that is retried until the store takes it (a database locked for a
        while must not let the message be sent again once its lease runs out)."""
        failures = 0
        while True:
            try:
                await self._store.outbox_sent(message.id, owner=self._owner, ts=ts, now=self._clock())
                on_sent = message.payload.get("on_sent") or {}
                if ts and on_sent.get("result"):
                    launch_id, key = on_sent["result"]
                    await self._store.mark_result_posted(launch_id, key, ts)
                    RESULTS_DELIVERED.inc()
                return
            except Exception:
                failures += 1
                delay = failure_delay(failures, base=0.25)
                log.error(
                    "outbox message %s was delivered but could not be recorded as sent (%d in a row); retrying in "
                    "%.1f s",
                    message.id,
                    failures,
                    delay,
                    exc_info=failures == 1,  # one traceback, not one per retry
                )
                await asyncio.sleep(delay)

    async def _send(self, message: OutboxMessage) -> str | None:
        if message.kind is OutboxKind.POST:
            payload = message.payload
            reply = Message(
                text=str(payload.get("text") or ""),
                blocks=list(payload.get("blocks") or []),
                broadcast=payload.get("reply_broadcast") is True,
            )
            return await self._post_paced(message.channel, reply, thread_ts=payload.get("thread_ts"), stoppable=True)
        if message.kind is OutboxKind.REFRESH_LAUNCH:
            launch = await self._store.get_launch(str(message.payload.get("launch_id")))
            if launch is None or launch.message_ts is None:
                return None
            await self._notifier.update(
                launch.channel, launch.message_ts, launch_message(launch, web_root=self._web_root)
            )
            return launch.message_ts
        approval = await self._store.get_approval(str(message.payload.get("approval_id")))
        if approval is None or approval.message_ts is None:
            return None
        votes = await self._store.votes(approval.id)
        await self._notifier.update(
            approval.channel, approval.message_ts, approval_message(approval, votes, web_root=self._web_root)
        )
        return approval.message_ts

    async def send_now(
        self,
        channel: str,
        message: Message,
        *,
        on_queued: Callable[[float], Awaitable[None]] | None = None,
        patience: float = _SEND_NOW_PATIENCE_S,
    ) -> str:
        """Post a message whose ts the caller needs at once (a launch or approval message: its thread receives
        what follows). It takes its turn in the channel's pacing with the outbox's own posts, and a 429 that
        slack_sdk's retries did not get past is waited out for up to `patience` seconds instead of refusing
        the person; `on_queued(seconds)` is told once when the wait is long enough to be noticed."""
        deadline = self._clock() + patience
        told = False
        while True:
            wait = self.channel_wait(channel)
            if wait > deadline - self._clock():
                raise SlackError("chat.postMessage", "ratelimited", retry_after=wait)
            if on_queued is not None and not told and wait >= _QUEUED_NOTICE_S:
                told = True
                try:
                    await on_queued(wait)
                except SlackError as exc:  # telling is a courtesy; the post itself still goes out
                    log.info("could not say that a post in %s is queued: %s", channel, exc.error)
            try:
                return await self._post_paced(channel, message, thread_ts=None)
            except SlackError as exc:
                if exc.retry_after is None:
                    raise

    def channel_wait(self, channel: str) -> float:
        """Seconds until the channel's next post may go out (0 when it may go now)."""
        return max(0.0, self._next_slot[channel] - self._clock())

    async def _post_paced(
        self, channel: str, message: Message, *, thread_ts: str | None, stoppable: bool = False
    ) -> str:
        await self._pace(channel, stoppable=stoppable)
        asked = self._clock()
        try:
            ts = await self._notifier.post(channel, message, thread_ts=thread_ts)
        except SlackError as exc:
            if exc.retry_after is not None:
                self._hold(channel, exc.retry_after)
            self._hold(channel, self._channel_interval)
            raise
        # Count the next slot from when Slack took the post, not from when we asked: a post that waited out a 429
        # inside the client was accepted only near its end, and the next one would land in the same window and be
        # refused in turn (then wait a whole Retry-After second). Slack took it at the latest a way back before
        # its answer arrived: the fastest round trip seen is a bound on both ways together, so counting from the
        # answer less that bound costs no round trip per slot and still lands every post a full interval later.
        answered = self._clock()
        self._fastest = min(self._fastest, answered - asked)
        self._hold(channel, max(0.0, self._channel_interval - self._fastest))
        return ts

    async def _pace(self, channel: str, *, stoppable: bool = False) -> None:
        """Slack allows about one message per second per channel: space posts out rather than collect 429s.
        The slot is reserved before sleeping, so posts waiting side by side (the outbox's lane, a launch message)
        each get their own. A `stoppable` wait (the worker's, not a person's) ends at `stop()` with `_Stopped`:
        its message goes to another replica rather than hold the shutdown for its slot."""
        now = self._clock()
        slot = max(self._next_slot[channel], now)
        self._next_slot[channel] = slot + self._channel_interval
        if not stoppable:
            if slot > now:
                await asyncio.sleep(slot - now)
            return
        if slot > now and not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=slot - now)
            except TimeoutError:
                return
        if self._stopped.is_set():
            raise _Stopped

    def _hold(self, channel: str, seconds: float) -> None:
        """No post in `channel` before `seconds` from now (never brings a later hold forward)."""
        self._next_slot[channel] = max(self._next_slot[channel], self._clock() + seconds)

    async def _failed(self, message: OutboxMessage, exc: SlackError) -> None:
        if exc.error in _PERMANENT:
            log.error("Slack refused outbox message %s for good (%s): set aside", message.id, exc)
            await self._store.outbox_dead(message.id, owner=self._owner, error=exc.error)
            return
        delay = min(_MAX_BACKOFF_S, 2.0 ** min(message.attempts, 16))
        if exc.retry_after is not None:
            # Slack said how long to wait: retrying sooner only collects another 429 (and a longer wait).
            delay = max(delay, exc.retry_after)
        log.warning("outbox message %s not delivered (%s); retrying in %.0f s", message.id, exc, delay)
        await self._store.outbox_retry(message.id, owner=self._owner, error=exc.error, at=self._clock() + delay)
