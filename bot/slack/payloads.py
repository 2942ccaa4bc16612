"""The shapes of the Slack payloads and signed form metadata the listeners read, checked before use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from bot.core.tokens import Signer

__all__ = ["Payload", "PickMeta", "RejectMeta", "RunMeta", "payload_problem", "verified"]

_URL = r"^https?://[^\s]+$"


class Payload(BaseModel):
    """The fields the listeners read, with the types they assume; anything else in the payload is ignored."""

    model_config = ConfigDict(extra="ignore")


_M = TypeVar("_M", bound=Payload)


class _User(Payload):
    id: StrictStr


class SlashCommand(Payload):
    command: StrictStr
    text: StrictStr = ""
    user_id: StrictStr = Field(min_length=1)
    channel_id: StrictStr = Field(min_length=1)
    trigger_id: StrictStr
    response_url: StrictStr = Field(pattern=_URL)


class _SelectedOption(Payload):
    value: StrictStr


class _Action(Payload):
    action_id: StrictStr
    value: StrictStr = ""
    selected_option: _SelectedOption | None = None  # a select menu's choice


class _Container(Payload):
    channel_id: StrictStr = ""
    message_ts: StrictStr = ""


class BlockActions(Payload):
    type: Literal["block_actions"]
    user: _User
    actions: list[_Action] = Field(min_length=1)
    trigger_id: StrictStr = ""
    # Absent for an action inside a modal (the plan picker): a modal is answered with views.update.
    response_url: StrictStr | None = Field(default=None, pattern=_URL)
    container: _Container = _Container()


class _Input(Payload):
    value: StrictStr | None = None


class _State(Payload):
    values: dict[StrictStr, dict[StrictStr, _Input]] = {}


class _View(Payload):
    type: StrictStr
    id: StrictStr = ""
    hash: StrictStr = ""
    callback_id: StrictStr = ""
    private_metadata: StrictStr = ""
    state: _State = _State()


class ViewSubmission(Payload):
    type: Literal["view_submission"]
    user: _User
    view: _View


class BlockSuggestion(Payload):
    """Slack asking an external_select for options as the person types (the Options Load URL)."""

    type: Literal["block_suggestion"]
    user: _User
    action_id: StrictStr
    value: StrictStr = ""
    view: _View | None = None


def payload_problem(body: Mapping[str, Any]) -> str | None:
    """Why a parsed Slack payload cannot be handled, or None.

    Signed is not the same as well-formed, and Bolt indexes payloads blindly (even while building the arguments
    of its error handler), so a payload whose fields lack the types the listeners read is refused before Bolt.
    """
    shape: type[Payload] | None = None
    if "command" in body:
        shape = SlashCommand
    elif body.get("type") == "block_actions":
        shape = BlockActions
    elif body.get("type") == "view_submission":
        shape = ViewSubmission
    elif body.get("type") == "block_suggestion":
        shape = BlockSuggestion
    if shape is None:
        return None
    try:
        shape.model_validate(body)
    except ValidationError as exc:
        return f"malformed {shape.__name__.lstrip('_')} payload ({exc.error_count()} problems)"
    return None


class RunMeta(Payload):
    """What a run form's signed `private_metadata` holds: where, which plan, and for whom it was opened.

    `s` is the preset the form was opened from; `k`, `r` and `q` are the plan picker's (see PickMeta) when the
    form has one.
    """

    p: Literal["run"]
    c: StrictStr
    b: StrictInt
    j: StrictInt
    u: StrictStr
    s: StrictStr | None = None
    k: StrictStr | None = None
    r: list[StrictInt] = []
    q: StrictStr = ""


class PickMeta(Payload):
    """A plan picker's signed metadata: the channel, business and person, the BK-JOB user the plans are listed
    as (`k`), the person's recent plans (`r`) and the words typed on the command line (`q`), so that Slack's
    options requests are answered from memory, without a store or Slack call."""

    p: Literal["pick"]
    c: StrictStr
    b: StrictInt
    u: StrictStr
    k: StrictStr
    r: list[StrictInt] = []
    q: StrictStr = ""


class RejectMeta(Payload):
    """What a reject form's signed `private_metadata` holds: the approval request, the rejecter, the channel."""

    p: Literal["reject"]
    a: StrictStr
    u: StrictStr
    c: StrictStr


def verified(signer: Signer, shape: type[_M], metadata: object) -> _M | None:
    """The form's metadata if this bot signed it for this kind of form; None for anything else."""
    payload = signer.unsign(metadata) if isinstance(metadata, str) else None
    if payload is None:
        return None
    try:
        return shape.model_validate(payload)
    except ValidationError:
        return None
