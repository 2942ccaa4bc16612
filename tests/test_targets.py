"""Tests for parsing and formatting host lists."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.bkjob.errors import TargetError
from bot.bkjob.models import HostId, IpEntry, TargetServer, TopoNode
from bot.bkjob.targets import MAX_ENTRIES, format_targets, parse_targets


def ip(address: str, cloud: int = 0) -> IpEntry:
    return IpEntry(bk_cloud_id=cloud, ip=address)


def node(node_type: str, node_id: int) -> TopoNode:
    return TopoNode(id=node_id, node_type=node_type)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", TargetServer()),
        (" \n ,;\t ", TargetServer()),
        ("10.0.0.1", TargetServer(ip_list=[ip("10.0.0.1")])),
        ("0.0.0.0", TargetServer(ip_list=[ip("0.0.0.0")])),
        ("2:10.0.0.1", TargetServer(ip_list=[ip("10.0.0.1", 2)])),
        ("0:10.0.0.1", TargetServer(ip_list=[ip("10.0.0.1")])),
        ("002:10.0.0.1", TargetServer(ip_list=[ip("10.0.0.1", 2)])),
        ("2147483647:10.0.0.1", TargetServer(ip_list=[ip("10.0.0.1", 2**31 - 1)])),
        ("group:blo8gojho0skft7pr5q0", TargetServer(dynamic_group_id_list=["blo8gojho0skft7pr5q0"])),
        ("GROUP:a-b_C", TargetServer(dynamic_group_id_list=["a-b_C"])),
        ("module:1000", TargetServer(topo_node_list=[node("module", 1000)])),
        ("set:3 biz:2", TargetServer(topo_node_list=[node("set", 3), node("biz", 2)])),
        ("custom_obj2:7", TargetServer(topo_node_list=[node("custom_obj2", 7)])),
        (f"module:{2**63 - 1}", TargetServer(topo_node_list=[node("module", 2**63 - 1)])),
        (
            "10.0.0.1,10.0.0.2;10.0.0.3 10.0.0.4\n10.0.0.5\t10.0.0.6\r\n10.0.0.7",
            TargetServer(ip_list=[ip(f"10.0.0.{i}") for i in range(1, 8)]),
        ),
        (
            "10.0.0.1，10.0.0.2；10.0.0.3、10.0.0.4",
            TargetServer(ip_list=[ip(f"10.0.0.{i}") for i in range(1, 5)]),
        ),
        (
            "10.0.0.2 10.0.0.1 10.0.0.2 0:10.0.0.1 1:10.0.0.1 group:a group:a module:1 module:01",
            TargetServer(
                ip_list=[ip("10.0.0.2"), ip("10.0.0.1"), ip("10.0.0.1", 1)],
                dynamic_group_id_list=["a"],
                topo_node_list=[node("module", 1)],
            ),
        ),
        (
            "module:1\ngroup:g\n2:10.0.0.9\n10.0.0.1",
            TargetServer(
                ip_list=[ip("10.0.0.9", 2), ip("10.0.0.1")],
                dynamic_group_id_list=["g"],
                topo_node_list=[node("module", 1)],
            ),
        ),
    ],
)
def test_parses(text: str, expected: TargetServer) -> None:
    assert parse_targets(text) == expected


IPV6 = "IPv6 addresses cannot be sent to BK-JOB: name an IPv6-only host by its host ID, host:<bk_host_id>"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.999", '"10.0.0.999": not an IPv4 address: each number must be from 0 to 255'),
        ("10.0.0.256", '"10.0.0.256": not an IPv4 address'),
        ("01.2.3.4", '"01.2.3.4": not an IPv4 address: leading zeros are not allowed'),
        ("1.2.3", '"1.2.3": not an IPv4 address: expected four numbers separated by dots'),
        ("1.2.3.4.5", '"1.2.3.4.5": not an IPv4 address'),
        ("10.0.0.1/24", '"10.0.0.1/24": not a host'),
        ("web01", '"web01": not a host: expected an IPv4 address (10.0.0.1), cloud:IP (2:10.0.0.1)'),
        ("::1", f'"::1": {IPV6}'),
        ("fe80::1%eth0", f'"fe80::1%eth0": {IPV6}'),
        ("2001:db8::1", f'"2001:db8::1": {IPV6}'),
        ("[2001:db8::1]", "host:<bk_host_id>"),
        ("2:fe80::1", f'"2:fe80::1": {IPV6}'),
        ("host:x", '"host:x": host ID must be a positive integer'),
        ("host:0", '"host:0": host ID must be a positive integer'),
        ("module:1:2", '"module:1:2": not a host'),
        (":10.0.0.1", '":10.0.0.1": the cloud area id before ":" is missing'),
        ("2:", '"2:": not a host'),
        ("2:10.0.0.300", '"2:10.0.0.300": not an IPv4 address'),
        ("2147483648:10.0.0.1", "cloud area id is too large: at most 2147483647"),
        ("9" * 400 + ":10.0.0.1", "cloud area id is too large"),
        ("10.0.0.1:22", '"10.0.0.1:22": write the IP without a port'),
        ("group:", '"group:": the dynamic group id after "group:" is missing'),
        ("group:a.b", '"group:a.b": a dynamic group id may contain only letters, digits, _ and -'),
        ("group:组", "a dynamic group id may contain only"),
        ("module:x", '"module:x": topology node id must be a positive integer'),
        ("module:", '"module:": topology node id must be a positive integer'),
        ("module:0", '"module:0": topology node id must be a positive integer'),
        ("module:-1", "topology node id must be a positive integer"),
        (f"module:{2**63}", "topology node id is too large"),
        ("module:" + "9" * 5000, "topology node id is too large"),
        ("Module:3", '"Module:3": "Module" is not a cloud area id, group or node type'),
        ("1mod:3", "is not a cloud area id, group or node type"),
        ("a\x01b", '"a\\x01b": not a host'),
    ],
)
def test_rejects(text: str, problem: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_targets(text)
    assert len(caught.value.problems) == 1
    assert problem in caught.value.problems[0]


def test_lists_every_bad_entry_once() -> None:
    with pytest.raises(TargetError) as caught:
        parse_targets("10.0.0.1 bad1 10.0.0.999 module:x bad1 group:ok ::1")
    problems = caught.value.problems
    assert [problem.split('": ')[0] for problem in problems] == ['"bad1', '"10.0.0.999', '"module:x', '"::1']
    assert str(caught.value) == "; ".join(problems)


def test_too_many_entries() -> None:
    hosts = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(MAX_ENTRIES + 1)]
    assert len(parse_targets("\n".join(hosts[:MAX_ENTRIES])).ip_list) == MAX_ENTRIES
    with pytest.raises(TargetError) as caught:
        parse_targets("\n".join(hosts))
    assert caught.value.problems == [f"too many entries ({MAX_ENTRIES + 1}): at most {MAX_ENTRIES} in one host list"]


def test_long_entries_are_cut_in_messages() -> None:
    with pytest.raises(TargetError) as caught:
        parse_targets("x" * 10_000)
    assert len(caught.value.problems[0]) < 300


def test_format() -> None:
    targets = TargetServer(
        ip_list=[ip("10.0.0.1"), ip("10.0.0.2", 2)],
        dynamic_group_id_list=["g1"],
        topo_node_list=[node("module", 12), node("set", 3)],
    )
    assert format_targets(targets) == "10.0.0.1\n2:10.0.0.2\ngroup:g1\nmodule:12\nset:3"
    assert format_targets(TargetServer()) == ""


_ips = st.builds(
    IpEntry,
    bk_cloud_id=st.integers(0, 2**31 - 1),
    ip=st.ip_addresses(v=4).map(str),
)
_groups = st.from_regex(r"[A-Za-z0-9_-]+", fullmatch=True)
_nodes = st.builds(
    TopoNode,
    id=st.integers(1, 2**63 - 1),
    node_type=st.from_regex(r"[a-z][a-z0-9_]*", fullmatch=True).filter(lambda t: t != "group"),
)
_targets = st.builds(
    TargetServer,
    ip_list=st.lists(_ips, max_size=10, unique_by=lambda e: (e.bk_cloud_id, e.ip)),
    dynamic_group_id_list=st.lists(_groups, max_size=10, unique=True),
    topo_node_list=st.lists(_nodes, max_size=10, unique_by=lambda n: (n.node_type, n.id)),
)


@settings(deadline=None)
@given(_targets)
def test_round_trip(targets: TargetServer) -> None:
    assert parse_targets(format_targets(targets)) == targets


@settings(deadline=None)
@given(
    st.text()
    | st.lists(
        st.sampled_from(["10.0.0.1", "2:", ":", "group:", "module:1", "::", "1.2.3.4:5", ",", " ", "\n", "x"])
    ).map("".join)
)
def test_any_text_parses_or_raises_target_error(text: str) -> None:
    try:
        result = parse_targets(text)
    except TargetError as exc:
        assert exc.problems
    else:
        assert isinstance(result, TargetServer)


def test_host_ids_parse_and_format_back() -> None:
    """An IPv6-only host is named by its host ID; people also see its IPv6 address where it is known."""
    targets = parse_targets("10.0.0.1\nhost:77\nHOST:0078\nhost:77")
    assert targets == TargetServer(
        ip_list=[ip("10.0.0.1")], host_id_list=[HostId(bk_host_id=77), HostId(bk_host_id=78)]
    )
    assert parse_targets(format_targets(targets)) == targets
    labelled = TargetServer(host_id_list=[HostId(bk_host_id=77, ipv6="2001:db8::7"), HostId(bk_host_id=78)])
    assert format_targets(labelled) == "host:77\nhost:78"
    assert format_targets(labelled, labels=True) == "2001:db8::7 (host:77)\nhost:78"
