"""Run control: the buttons on a launch message, their action IDs, and the manual-confirmation messages."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot.core.cards import Confirmation
from bot.slack.blocks.text import MAX_SECTION, Message, cut, notice, untrusted
from bot.store.records import LaunchRecord, LaunchState

__all__ = [
    "STOP_ACTION",
    "RETRY_FAILED_ACTION",
    "IGNORE_ACTION",
    "RETRY_STEP_ACTION",
    "RERUN_ACTION",
    "NEXT_STEP_ACTION",
    "CONTINUE_ROLLING_ACTION",
    "CONFIRM_ACTION",
    "END_CONFIRM_ACTION",
    "OPEN_ACTION",
    "run_controls",
    "confirmation_message",
    "confirmation_decided",
    "rolling_pause_message",
]

# -- run control: buttons on the launch message and the manual-confirmation message in its thread ----------------

STOP_ACTION = "bkjob_stop"
RETRY_FAILED_ACTION = "bkjob_retry_failed"
IGNORE_ACTION = "bkjob_ignore_error"
RETRY_STEP_ACTION = "bkjob_retry_step"
RERUN_ACTION = "bkjob_rerun"
NEXT_STEP_ACTION = "bkjob_next_step"
CONTINUE_ROLLING_ACTION = "bkjob_continue_rolling"
CONFIRM_ACTION = "bkjob_confirm"
END_CONFIRM_ACTION = "bkjob_end_confirm"
OPEN_ACTION = "bkjob_open"
"""The link button: Slack still sends its click, which needs only an ack."""


def run_controls(launch: LaunchRecord, *, url: str | None) -> ActionsBlock | None:
    """The buttons that fit the launch's state, as BK-JOB allows them (docs/bkjob.md §run-control): Stop while it
    runs, except at a manual confirmation (BK-JOB never finishes that stop: the question's *Stop here* ends it);
    retry when it failed (4), ended abnormally (9) or was stopped (11); ignore the error after 4 or 9; go on with
    the next step after a stop; Re-run once it has ended, and the link to BK-JOB whenever there is one. Values
    name the launch only: what a click does is decided from BK-JOB's status at click time."""
    buttons: list[ButtonElement] = []
    code = launch.job_status
    progress = launch.progress or {}
    running = progress.get("status", code)
    if launch.state is LaunchState.RUNNING and running != 10 and progress.get("waiting") != "confirmation":
        buttons.append(ButtonElement(text="Stop", action_id=STOP_ACTION, value=launch.id, style="danger"))
    if launch.state is LaunchState.FINISHED and code in (4, 9, 11):
        buttons.append(
            ButtonElement(text="Retry failed hosts", action_id=RETRY_FAILED_ACTION, value=launch.id, style="primary")
        )
        if code == 11:
            buttons.append(ButtonElement(text="Go on with the next step", action_id=NEXT_STEP_ACTION, value=launch.id))
        else:
            buttons.append(ButtonElement(text="Ignore error and continue", action_id=IGNORE_ACTION, value=launch.id))
        buttons.append(ButtonElement(text="Retry the step", action_id=RETRY_STEP_ACTION, value=launch.id))
    if launch.state is LaunchState.FINISHED:
        buttons.append(ButtonElement(text="Re-run", action_id=RERUN_ACTION, value=launch.id))
    if url:
        buttons.append(ButtonElement(text="Open in BK-JOB", action_id=OPEN_ACTION, url=url, value=launch.id))
    if not buttons:
        return None
    return ActionsBlock(block_id=f"run:{launch.id}", elements=buttons)


def confirmation_message(launch: LaunchRecord, confirmation: Confirmation, *, who: str, mentions: str = "") -> Message:
    """In the launch's thread when the job waits in 7, and shown in the channel too (once: the question is posted
    once per step run): the step's message, who may confirm (`who`: the confirmation's confirmers in words;
    `mentions`: the people the channel's policy lets answer, notified), and two buttons."""
    head = (
        f":raised_hand: *Waiting for confirmation* at step {confirmation.step_number} "
        f"(*{untrusted(confirmation.step_name)}*) of {untrusted(launch.plan_name)}, instance {launch.job_instance_id}"
    )
    said = f"> {untrusted(confirmation.message)}" if confirmation.message else "_The step has no message._"
    value = f"{launch.id}:{confirmation.step_instance_id}"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=cut(head, MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=cut(said, MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=cut(f"*Who may confirm:* {who}", 2000))]),
        ActionsBlock(
            block_id=f"confirm:{confirmation.step_instance_id}",
            elements=[
                ButtonElement(text="Confirm and continue", action_id=CONFIRM_ACTION, value=value, style="primary"),
                ButtonElement(text="Stop here", action_id=END_CONFIRM_ACTION, value=value, style="danger"),
            ],
        ),
    ]
    text = f"Waiting for confirmation at step {confirmation.step_number} of {untrusted(launch.plan_name)}"
    if mentions:
        text += f": {mentions}, you may answer it"
    return Message(text=cut(text, 3000), blocks=[b.to_dict() for b in blocks], broadcast=True)


def confirmation_decided(step_number: int, step_name: str, *, by: str, confirmed: bool) -> Message:
    """What the confirmation message becomes once BK-JOB accepted a decision: no buttons left to press."""
    if confirmed:
        text = (
            f":white_check_mark: Step {step_number} (*{untrusted(step_name)}*) confirmed by <@{by}>; the job continues."
        )
    else:
        text = f":octagonal_sign: Step {step_number} (*{untrusted(step_name)}*): <@{by}> stopped the job here."
    return notice(text)


def rolling_pause_message(launch: LaunchRecord, *, step_instance_id: int, step_number: int, step_name: str) -> Message:
    """In the launch's thread when a rolling step waits between two batches: one button runs the next batch."""
    head = (
        f":double_vertical_bar: *Rolling paused* between two batches at step {step_number} (*{untrusted(step_name)}*) "
        f"of {untrusted(launch.plan_name)}, instance {launch.job_instance_id}. BK-JOB runs the next batch when "
        "told to continue; *Stop* on the launch message stops the job."
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=cut(head, MAX_SECTION))),
        ActionsBlock(
            block_id=f"rolling:{step_instance_id}",
            elements=[
                ButtonElement(
                    text="Continue rolling",
                    action_id=CONTINUE_ROLLING_ACTION,
                    value=f"{launch.id}:{step_instance_id}",
                    style="primary",
                )
            ],
        ),
    ]
    text = f"Rolling paused at step {step_number} of {untrusted(launch.plan_name)}"
    return Message(text=cut(text, 3000), blocks=[b.to_dict() for b in blocks])
