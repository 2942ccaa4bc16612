"""`/bkjob history`: the channel's last launches, as one private message."""

from __future__ import annotations

from collections.abc import Sequence

from bot.slack.blocks.launch import plain_status
from bot.slack.blocks.text import fit_list, job_url, mentions, untrusted, when
from bot.store.records import LaunchRecord

__all__ = [
    "history_list",
]


def history_list(launches: Sequence[LaunchRecord], *, web_root: str | None) -> str:
    if not launches:
        return "No launches in this channel yet."
    lines = []
    for launch in launches:
        url = job_url(web_root, launch.job_instance_id)
        instance = f"<{url}|{launch.job_instance_id}>" if url else str(launch.job_instance_id or "–")
        approved = f", approved by {mentions(launch.approved_by)}" if launch.approved_by else ""
        lines.append(
            f"• {when(launch.created_at)} <@{launch.requester}>: {untrusted(launch.plan_name)}"
            f" (plan {launch.bk_job_id}, business {launch.bk_biz_id}), instance {instance}{approved}:"
            f" {plain_status(launch).lower()}"
        )
    return fit_list(
        lambda shown: "*The last launch here:*" if shown == 1 else f"*The last {shown} launches here:*",
        lines,
        lambda rest: f"… and {rest} older not shown (they do not fit in one message).",
    )
