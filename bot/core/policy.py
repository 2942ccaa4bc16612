"""The policy file: who runs as whom, and what each channel may launch and with whose approval."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from bot.core.presets import Preset, PresetName
from bot.core.reasons import Channel, Reason, say
from bot.errors import ConfigError

__all__ = [
    "APPROVERS",
    "DEFAULT_POLICY_FILE",
    "REQUESTER",
    "ChannelPolicy",
    "OperatorsPolicy",
    "IdentityPolicy",
    "Policy",
    "load_policy",
    "parse_duration",
]

DEFAULT_POLICY_FILE = "bkjob.toml"

MAX_APPROVAL_TTL = timedelta(days=7)

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_DURATION = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
_DURATION_HINT = 'write it like "90s", "30m", "2h", "1h30m" or "1d"'
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _problem(message: str) -> PydanticCustomError:
    """Our own messages go to the person verbatim, so they carry no pydantic prefix."""
    return PydanticCustomError("policy", message)


def _slack_user_id(value: str) -> str:
    if not _USER_ID.fullmatch(value):
        raise _problem(
            f"{value!r} is not a Slack user ID (U… or W…; a person's profile has it under ⋮ → Copy member ID)"
        )
    return value


def _slack_channel_id(value: str) -> str:
    if not _CHANNEL_ID.fullmatch(value):
        raise _problem(f"{value!r} is not a Slack channel ID (C… or G…; the channel's details show it at the bottom)")
    return value


def _bk_username(value: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise _problem(f"{value!r} is not a BK-JOB username (it must be non-empty, without spaces)")
    return value


SlackUserId = Annotated[str, AfterValidator(_slack_user_id)]
SlackChannelId = Annotated[str, AfterValidator(_slack_channel_id)]
BkUsername = Annotated[StrictStr, AfterValidator(_bk_username)]
PositiveId = Annotated[int, Field(strict=True, ge=1)]


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "30m", "2h", "1h30m" or "1d": the units people write in a config file, not ISO 8601."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
    parts = {unit: int(amount) if amount else 0 for unit, amount in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


REQUESTER = "requester"
APPROVERS = "approvers"
_EVERYONE_WHO_MAY_OPERATE = (REQUESTER, APPROVERS)


class OperatorsPolicy(BaseModel):
    """Who may control a launch's run from Slack in a channel: Slack user IDs, user-group IDs, and the words
    "requester" (whoever launched it) and "approvers" (the channel's approvers). `confirm` says who may answer a
    manual confirmation step (*Confirm* or *Stop here*), checked on the Slack person who clicks: BK-JOB lets anyone
    pass a step that names no role, and with the service-account fallback its confirmer check sees only
    BK_USERNAME. Where BK-JOB names the step's confirm users, the clicker's BK-JOB user must also be one of them;
    where it names roles, BK-JOB checks those too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stop: tuple[StrictStr, ...] = _EVERYONE_WHO_MAY_OPERATE
    retry: tuple[StrictStr, ...] = _EVERYONE_WHO_MAY_OPERATE
    ignore: tuple[StrictStr, ...] = _EVERYONE_WHO_MAY_OPERATE
    rerun: tuple[StrictStr, ...] = _EVERYONE_WHO_MAY_OPERATE
    confirm: tuple[StrictStr, ...] = _EVERYONE_WHO_MAY_OPERATE
    # Whether a re-run asks for an approval again; unset: as a launch in the channel does.
    rerun_approval: StrictBool | None = None

    @field_validator("stop", "retry", "ignore", "rerun", "confirm")
    @classmethod
    def _who(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [
            v
            for v in value
            if v not in _EVERYONE_WHO_MAY_OPERATE and not (_USER_ID.fullmatch(v) or _GROUP_ID.fullmatch(v))
        ]
        if bad:
            listed = ", ".join(repr(v) for v in bad)
            raise _problem(f'{listed}: not "requester", "approvers", a Slack user ID (U…/W…) or user-group ID (S…)')
        return tuple(dict.fromkeys(value))


class ChannelPolicy(BaseModel):
    """What one channel may launch, and whether a launch there needs an approval first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bk_biz_id: PositiveId | None = None
    allowed_biz: frozenset[PositiveId] | None = None
    allowed_jobs: frozenset[PositiveId] | None = None
    approval: StrictBool = False
    # validate_default: the cross-key rules below must also run when the key is absent.
    approvers: tuple[StrictStr, ...] = Field(default=(), validate_default=True)
    approval_ttl: timedelta = timedelta(minutes=30)
    min_approvals: int = Field(default=1, strict=True, ge=1, validate_default=True)
    max_pending_per_person: int = Field(default=5, strict=True, ge=1)
    max_pending: int = Field(default=20, strict=True, ge=1)
    # Failed hosts' logs: none (results only), digest (grouped failures in the result reply), full (digest, a Logs
    # button and `/bkjob logs`); who may fetch full logs (absent: anyone who may launch here); variables whose
    # values are masked in every log line like passwords.
    logs: Literal["none", "digest", "full"] = "digest"
    log_viewers: tuple[StrictStr, ...] | None = None
    secret_vars: tuple[StrictStr, ...] = ()
    operators: OperatorsPolicy = Field(default=OperatorsPolicy(), validate_default=True)

    @field_validator("operators")
    @classmethod
    def _rerun_approvers(cls, value: OperatorsPolicy, info: ValidationInfo) -> OperatorsPolicy:
        if value.rerun_approval is True and not info.data.get("approvers"):
            raise _problem("rerun_approval = true needs the channel's approvers (approvers = [...])")
        return value

    @property
    def rerun_needs_approval(self) -> bool:
        """As a launch here does, unless `[operators] rerun_approval` says otherwise."""
        return self.approval if self.operators.rerun_approval is None else self.operators.rerun_approval

    @field_validator("allowed_biz", "allowed_jobs")
    @classmethod
    def _holds_default(cls, value: frozenset[int] | None, info: ValidationInfo) -> frozenset[int] | None:
        """An empty list is deny-by-default (nothing may be launched); a default business must be allowed."""
        if info.field_name == "allowed_biz" and value:
            default_biz = info.data.get("bk_biz_id")
            if default_biz is not None and default_biz not in value:
                raise _problem(f"does not include the channel's default business (bk_biz_id = {default_biz})")
        return value

    @field_validator("approvers")
    @classmethod
    def _approver_ids(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        bad = [v for v in value if not (_USER_ID.fullmatch(v) or _GROUP_ID.fullmatch(v))]
        if bad:
            listed = ", ".join(repr(v) for v in bad)
            raise _problem(f"{listed}: not a Slack user ID (U…/W…) or user-group ID (S…)")
        if info.data.get("approval") is True and not value:
            raise _problem("must list at least one approver (user or user-group ID) when approval = true")
        return tuple(dict.fromkeys(value))  # the same person twice is still one approver

    @field_validator("log_viewers")
    @classmethod
    def _viewer_ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        bad = [v for v in value if not (_USER_ID.fullmatch(v) or _GROUP_ID.fullmatch(v))]
        if bad:
            listed = ", ".join(repr(v) for v in bad)
            raise _problem(f"{listed}: not a Slack user ID (U…/W…) or user-group ID (S…)")
        return tuple(dict.fromkeys(value))

    @field_validator("approval_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """Only our short units are accepted: a bare number would leave the unit to guesswork."""
        if isinstance(value, str):
            try:
                value = parse_duration(value)
            except ValueError as exc:
                raise _problem(str(exc)) from exc
        elif not isinstance(value, timedelta):
            raise _problem(f"must be a duration string; {_DURATION_HINT}")
        if value <= timedelta(0):
            raise _problem("must be longer than zero")
        if value > MAX_APPROVAL_TTL:
            raise _problem('may be at most 7 days ("7d")')
        return value

    @field_validator("min_approvals")
    @classmethod
    def _reachable(cls, value: int, info: ValidationInfo) -> int:
        """With only named people as approvers we can tell up front that N approvals could never arrive."""
        approvers: tuple[str, ...] = info.data.get("approvers", ())
        if approvers and all(_USER_ID.fullmatch(a) for a in approvers) and value > len(approvers):
            people = "approver is" if len(approvers) == 1 else "approvers are"
            raise _problem(f"is {value} but only {len(approvers)} {people} listed")
        return value

    def refusal(self, *, channel: str, bk_biz_id: int, bk_job_id: int) -> Reason | None:
        """Why this channel may not launch the plan, for the person who asked; None when it may."""
        if self.closed:
            return _closed(channel)
        if self.allowed_biz is not None and bk_biz_id not in self.allowed_biz:
            return say(
                "This channel ({channel}) may launch only in {allowed}; business {biz} is not allowed by its policy.",
                channel=Channel(channel),
                allowed=_numbers("business", "businesses", self.allowed_biz),
                biz=bk_biz_id,
            )
        if self.allowed_jobs is not None and bk_job_id not in self.allowed_jobs:
            return say(
                "This channel ({channel}) may launch only {allowed}; plan {plan} is not allowed by its policy.",
                channel=Channel(channel),
                allowed=_numbers("plan", "plans", self.allowed_jobs),
                plan=bk_job_id,
            )
        return None

    @property
    def closed(self) -> bool:
        """Nothing at all may be launched here (`allowed_biz = []` or `allowed_jobs = []`)."""
        return self.allowed_biz == frozenset() or self.allowed_jobs == frozenset()

    def read_refusal(self, *, channel: str, bk_biz_id: int | None = None) -> Reason | None:
        """Why this channel may not look into a business (status, history, pending); None when it may."""
        if self.closed:
            return _closed(channel)
        if bk_biz_id is not None and self.allowed_biz is not None and bk_biz_id not in self.allowed_biz:
            return say(
                "This channel ({channel}) may look only into {allowed}; business {biz} is not allowed.",
                channel=Channel(channel),
                allowed=_numbers("business", "businesses", self.allowed_biz),
                biz=bk_biz_id,
            )
        return None

    @property
    def unrestricted(self) -> bool:
        """Any business and plan, without approval: worth a warning when channels nobody listed get it."""
        return self.allowed_biz is None and self.allowed_jobs is None and not self.approval


def _closed(channel: str) -> Reason:
    where = say("Direct messages with me") if channel.startswith("D") else say("This channel ({c})", c=Channel(channel))
    return say(
        "{where} may not launch or look into BK-JOB plans: the bot's policy allows nothing here. "
        "Use a channel the policy names, or ask a bkjob-bot admin to add this one.",
        where=where,
    )


class IdentityPolicy(BaseModel):
    """Who may be taken for whom besides the explicit [users] mapping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email_domains: tuple[StrictStr, ...] = ()
    service_account_fallback: StrictBool = False

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _DOMAIN.fullmatch(v.lower())]
        if bad:
            raise _problem(f'{", ".join(repr(v) for v in bad)}: not an e-mail domain (write it like "example.com")')
        return tuple(dict.fromkeys(v.lower() for v in value))


class Policy(BaseModel):
    """The whole policy file; `channels` hold each listed channel already merged over `defaults`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[SlackUserId, BkUsername] = {}
    identity: IdentityPolicy = IdentityPolicy()
    channels: dict[SlackChannelId, ChannelPolicy] = {}
    defaults: ChannelPolicy = ChannelPolicy()
    presets: dict[PresetName, Preset] = {}

    @model_validator(mode="before")
    @classmethod
    def _merge_channels_over_defaults(cls, data: Any) -> Any:
        """Merge the raw tables, so a key absent from a channel is taken from [defaults] even when
        the channel's value would equal the built-in default (which a merge of models cannot see)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("channels"), Mapping):
            return data
        defaults = data.get("defaults", {})
        if isinstance(defaults, ChannelPolicy):
            base: Mapping[str, Any] = defaults.model_dump(exclude_unset=True)
        else:
            base = defaults if isinstance(defaults, Mapping) else {}
        channels = {
            cid: {**base, **table} if isinstance(table, Mapping) else table for cid, table in data["channels"].items()
        }
        return {**data, "channels": channels}

    def for_channel(self, channel: str) -> ChannelPolicy:
        return self.channels.get(channel, self.defaults)

    def operators_left_out(self) -> dict[str, tuple[str, ...]]:
        """Channels whose own `[operators]` table leaves out keys that `[defaults.operators]` sets: a channel's
        table replaces the defaults' whole, so those keys take the built-in defaults there (worth a warning)."""
        if "operators" not in self.defaults.model_fields_set:
            return {}
        set_by_defaults = self.defaults.operators.model_fields_set
        left_out: dict[str, tuple[str, ...]] = {}
        for channel, listed in self.channels.items():
            missing = tuple(sorted(set_by_defaults - listed.operators.model_fields_set))
            if missing:
                left_out[channel] = missing
        return left_out

    # -- presets (issue 17) ----------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _presets_within_their_channels(self) -> Policy:
        """A preset can't widen what a channel allows: every channel it names must allow its business and plan."""
        for name, preset in self.presets.items():
            for channel in sorted(preset.channels or ()):
                refusal = self.for_channel(channel).refusal(
                    channel=channel, bk_biz_id=preset.bk_biz_id, bk_job_id=preset.plan
                )
                if refusal is not None:
                    raise _problem(
                        f"presets.{name}: names channel {channel}, whose policy does not allow business "
                        f"{preset.bk_biz_id} and plan {preset.plan}"
                    )
        return self

    def preset(self, name: str) -> Preset | None:
        return self.presets.get(name)

    def presets_locking(self, channel: str, bk_biz_id: int, bk_job_id: int) -> list[tuple[str, Preset]]:
        """The presets of this plan that may be used in `channel` and lock values: their locks bind any run of
        the plan there, by ID too (issue 23)."""
        return [
            (name, preset)
            for name, preset in sorted(self.presets.items())
            if preset.locked
            and (preset.bk_biz_id, preset.plan) == (bk_biz_id, bk_job_id)
            and self.preset_refusal(name, preset, channel) is None
        ]

    def preset_refusal(self, name: str, preset: Preset, channel: str) -> Reason | None:
        """Why `channel` may not use the preset: its own channel list first, then the channel's policy."""
        return preset.where_refused(name, channel) or self.for_channel(channel).refusal(
            channel=channel, bk_biz_id=preset.bk_biz_id, bk_job_id=preset.plan
        )


def load_policy(path: str | None) -> Policy | None:
    """Read and validate the policy file; every problem is one line naming the file and the key.

    No path means the optional `bkjob.toml` in the working directory; a path someone named must exist. None when
    there is no file at all: the caller decides whether that may run in open mode.
    """
    if path is None:
        candidate = Path(DEFAULT_POLICY_FILE)
        if not candidate.is_file():
            return None
        file = candidate
    else:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"{file}: policy file not found")
    try:
        with file.open("rb") as fp:
            data = tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: the file is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the policy file: {exc.strerror or exc}") from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [f"{file}: {line}" for line in _describe(exc.errors(), data)]
        raise ConfigError("\n".join(lines)) from exc


def _numbers(one: str, many: str, values: Iterable[int]) -> str:
    ordered = sorted(values)
    return f"{one if len(ordered) == 1 else many} {', '.join(str(v) for v in ordered)}"


def _describe(errors: Sequence[ErrorDetails], data: Mapping[str, Any]) -> list[str]:
    """pydantic's report as "dotted.key: what is wrong", without its URLs, and each problem only once.

    A bad key in [defaults] is merged into every channel; it is reported once, under defaults.
    """
    defaults_raw = _table(data.get("defaults"))
    channels_raw = _table(data.get("channels"))
    bad_in_defaults = {err["loc"][1] for err in errors if len(err["loc"]) >= 2 and err["loc"][0] == "defaults"}
    lines: list[str] = []
    for err in errors:
        loc = [part for part in err["loc"] if part != "[key]"]
        names = [str(part) for part in loc if isinstance(part, str)]
        items = [part for part in loc if isinstance(part, int)]
        note = ""
        if len(names) >= 3 and names[0] == "channels":
            table = channels_raw.get(names[1])
            key = names[2]
            if isinstance(table, Mapping) and key not in table and key in defaults_raw:
                if key in bad_in_defaults:
                    continue
                note = " (taken from [defaults])"
        message = _explain(err, names)
        if items:
            message = f"item {items[0] + 1}: {message}"
        lines.append(f"{'.'.join(names) or 'the file'}: {message}{note}")
    return list(dict.fromkeys(lines))


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _explain(err: ErrorDetails, names: Sequence[str]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "policy":
        return err["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        known = ChannelPolicy.model_fields if names[:1] in (["channels"], ["defaults"]) else Policy.model_fields
        if names[:1] == ["identity"]:
            known = IdentityPolicy.model_fields
        known = Preset.model_fields if names[:1] == ["presets"] else known
        known = OperatorsPolicy.model_fields if "operators" in names[:-1] else known
        close = difflib.get_close_matches(names[-1], list(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(known)})"
        return f"is not a known key{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, not {_show(err.get('input'))}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, not {_show(err.get('input'))}"
    if kind == "string_type":
        return f"must be a string, not {_show(err.get('input'))}"
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"):
        return f"must be a list, not {_show(err.get('input'))}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a table, not {_show(err.get('input'))}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, not {_show(err.get('input'))}"
    return str(err.get("msg", "is not valid"))


def _show(value: Any) -> str:
    """A TOML-ish rendering of a bad value, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:37]}..."'
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value) if len(repr(value)) <= 40 else type(value).__name__
