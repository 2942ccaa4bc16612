"""Parsing and formatting of host lists: IPs, cloud-area IPs, host IDs, dynamic groups and topology nodes."""

from __future__ import annotations

import ipaddress
import re

from bot.bkjob.errors import TargetError
from bot.bkjob.models import HostId, IpEntry, TargetServer, TopoNode

__all__ = ["MAX_ENTRIES", "format_targets", "parse_targets"]

MAX_ENTRIES = 5000
"""More hosts than this in one field is a paste gone wrong, not a plan."""
_MAX_CLOUD_ID = 2**31 - 1  # `bk_cloud_id` is an `int` in execute_job
_MAX_NODE_ID = 2**63 - 1  # topo node ids are CMDB `bk_inst_id`s, a `long`
# Full-width comma, semicolon and enumeration comma too: people paste lists from Chinese documents.
_SEPARATORS = re.compile(r"[\s,;\uff0c\uff1b\u3001]+")
_DIGITS = re.compile(r"[0-9]+")
_GROUP_ID = re.compile(r"[A-Za-z0-9_-]+")
_NODE_TYPE = re.compile(r"[a-z][a-z0-9_]*")
_SHOWN_MAX = 60
_EXPECTED = (
    "expected an IPv4 address (10.0.0.1), cloud:IP (2:10.0.0.1), host:<host id>, group:<id> or <node_type>:<id>"
    " (module:12)"
)
_IPV6 = "IPv6 addresses cannot be sent to BK-JOB: name an IPv6-only host by its host ID, host:<bk_host_id>"
_MAX_HOST_ID = 2**63 - 1  # CMDB `bk_host_id`, a `long`


class _BadEntry(ValueError):
    """One entry's problem, collected so a person sees every bad entry at once."""


def parse_targets(text: str) -> TargetServer:
    """Read a host list; raise TargetError naming every bad entry, so one edit fixes the whole field."""
    entries = [entry for entry in _SEPARATORS.split(text) if entry]
    if len(entries) > MAX_ENTRIES:
        raise TargetError([f"too many entries ({len(entries)}): at most {MAX_ENTRIES} in one host list"])
    ips: dict[tuple[int, str], IpEntry] = {}
    host_ids: dict[int, HostId] = {}
    groups: dict[str, None] = {}
    nodes: dict[tuple[str, int], TopoNode] = {}
    problems: list[str] = []
    for entry in dict.fromkeys(entries):
        try:
            item = _parse_entry(entry)
        except _BadEntry as exc:
            problems.append(f"{_show(entry)}: {exc}")
            continue
        # setdefault keeps the first spelling; `0:10.0.0.1` and `10.0.0.1` are the same host.
        if isinstance(item, IpEntry):
            ips.setdefault((item.bk_cloud_id, item.ip), item)
        elif isinstance(item, HostId):
            host_ids.setdefault(item.bk_host_id, item)
        elif isinstance(item, TopoNode):
            nodes.setdefault((item.node_type, item.id), item)
        else:
            groups.setdefault(item)
    if problems:
        raise TargetError(problems)
    return TargetServer(
        ip_list=list(ips.values()),
        host_id_list=list(host_ids.values()),
        dynamic_group_id_list=list(groups),
        topo_node_list=list(nodes.values()),
    )


def format_targets(targets: TargetServer, *, labels: bool = False) -> str:
    """Write targets in the syntax parse_targets reads, one per line, to pre-fill a modal field; with `labels`,
    for people only, a host named by ID shows its IPv6 address too."""
    lines = [ip.ip if ip.bk_cloud_id == 0 else f"{ip.bk_cloud_id}:{ip.ip}" for ip in targets.ip_list]
    lines += [
        f"{host.ipv6} (host:{host.bk_host_id})" if labels and host.ipv6 else f"host:{host.bk_host_id}"
        for host in targets.host_id_list
    ]
    lines += [f"group:{group}" for group in targets.dynamic_group_id_list]
    lines += [f"{node.node_type}:{node.id}" for node in targets.topo_node_list]
    return "\n".join(lines)


def _parse_entry(entry: str) -> IpEntry | HostId | TopoNode | str:
    """One entry: an IpEntry, a HostId, a TopoNode, or a str holding a dynamic group id."""
    if entry.count(":") > 1:
        raise _BadEntry(_IPV6 if _is_ipv6(entry) else f"not a host: {_EXPECTED}")
    prefix, colon, rest = entry.partition(":")
    if not colon:
        return IpEntry(bk_cloud_id=0, ip=_ipv4(entry))
    if prefix.lower() == "group":
        return _group_id(rest)
    if prefix.lower() == "host":
        return HostId(bk_host_id=_positive(rest, "host ID", _MAX_HOST_ID))
    if not prefix or _DIGITS.fullmatch(prefix):
        return IpEntry(bk_cloud_id=_cloud_id(prefix), ip=_ipv4(rest))
    if _NODE_TYPE.fullmatch(prefix):
        return TopoNode(id=_node_id(rest), node_type=prefix)
    raise _BadEntry(_prefix_problem(prefix))


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise _BadEntry(_ipv4_problem(text)) from None


def _ipv4_problem(text: str) -> str:
    """Say why an address is wrong in words, rather than passing on ipaddress's own message."""
    if _is_ipv6(text):
        return _IPV6
    parts = text.split(".")
    if len(parts) != 4 or not all(_DIGITS.fullmatch(part) for part in parts):
        if re.fullmatch(r"[0-9.]+", text):
            return "not an IPv4 address: expected four numbers separated by dots"
        return f"not a host: {_EXPECTED}; host names are not supported"
    if any(len(part) > 1 and part.startswith("0") for part in parts):
        return "not an IPv4 address: leading zeros are not allowed (they can mean octal)"
    return "not an IPv4 address: each number must be from 0 to 255"


def _is_ipv6(text: str) -> bool:
    """Spot IPv6, alone or after a cloud id, so the message says "unsupported" rather than "malformed"."""
    candidates = (text, text.partition(":")[2])
    for candidate in candidates:
        try:
            ipaddress.IPv6Address(candidate.strip("[]"))
        except ValueError:
            continue
        return True
    return False


def _cloud_id(prefix: str) -> int:
    if not prefix:
        raise _BadEntry('the cloud area id before ":" is missing: write 2:10.0.0.1, or just the IP for area 0')
    digits = prefix.lstrip("0") or "0"
    if len(digits) > len(str(_MAX_CLOUD_ID)) or int(digits) > _MAX_CLOUD_ID:
        raise _BadEntry(f"cloud area id is too large: at most {_MAX_CLOUD_ID}")
    return int(digits)


def _group_id(rest: str) -> str:
    if not rest:
        raise _BadEntry('the dynamic group id after "group:" is missing')
    if not _GROUP_ID.fullmatch(rest):
        raise _BadEntry("a dynamic group id may contain only letters, digits, _ and -")
    return rest


def _node_id(rest: str) -> int:
    return _positive(rest, "topology node id", _MAX_NODE_ID)


def _positive(rest: str, what: str, largest: int) -> int:
    digits = rest.lstrip("0") if _DIGITS.fullmatch(rest) else ""
    if not digits:
        raise _BadEntry(f"{what} must be a positive integer")
    if len(digits) > len(str(largest)) or int(digits) > largest:
        raise _BadEntry(f"{what} is too large: at most {largest}")
    return int(digits)


def _prefix_problem(prefix: str) -> str:
    """An entry with an unusable `prefix:`; guess the likely mistake to make the message useful."""
    try:
        ipaddress.IPv4Address(prefix)
    except ValueError:
        return (
            f"{_show(prefix)} is not a cloud area id, group or node type "
            "(node types are lowercase CMDB object ids such as module or set)"
        )
    return "write the IP without a port; to give a cloud area, put it first: 2:10.0.0.1"


def _show(entry: str) -> str:
    """Quote an entry for a message: escape what a person cannot see, and cut what would flood Slack."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in entry)
    if len(shown) > _SHOWN_MAX:
        shown = shown[: _SHOWN_MAX - 1] + "…"
    return f'"{shown}"'
