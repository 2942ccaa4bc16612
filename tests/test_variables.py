"""A plan's global variables plus a person's overrides → execute_job's `global_vars` (pure functions)."""

from __future__ import annotations

import pytest

from bot.bkjob.models import JobDetail
from bot.bkjob.variables import VariableProblems, build_overrides, check_names, default_text, type_name
from bot.errors import UserInputError
from tests.conftest import PLAN_VARS

PASSWORD = "hunter2-plan-secret"


def plan(global_vars: list[dict[str, object]] | None = None) -> JobDetail:
    return JobDetail.model_validate(
        {"bk_job_id": 100, "name": "Deploy web", "global_vars": PLAN_VARS if global_vars is None else global_vars}
    )


def wire(values: dict[str, str], detail: JobDetail | None = None) -> list[dict[str, object]]:
    return [v.wire() for v in build_overrides(detail or plan(), values).global_vars]


def test_only_changed_variables_are_sent_by_id() -> None:
    assert wire({"version": "2.0", "env": "prod", "ports": "80 443", "servers": "10.0.0.1"}) == [
        {"id": 437, "value": "2.0"}
    ]


def test_nothing_changed_sends_nothing() -> None:
    overrides = build_overrides(plan(), {"version": "1.0"})
    assert overrides.global_vars == [] and overrides.shown == []
    assert build_overrides(plan(), {}).global_vars == []


def test_clearing_a_string_sends_an_empty_value() -> None:
    assert wire({"version": ""}) == [{"id": 437, "value": ""}]


def test_host_variable_sends_every_target_server_list() -> None:
    assert wire({"servers": "10.0.0.1, 2:10.0.0.2\ngroup:g-1 module:1000 set:7"}) == [
        {
            "id": 436,
            "target_server": {
                "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 2, "ip": "10.0.0.2"}],
                "dynamic_group_id_list": ["g-1"],
                "topo_node_list": [{"id": 1000, "node_type": "module"}, {"id": 7, "node_type": "set"}],
            },
        }
    ]


def test_host_variable_sends_only_non_empty_lists() -> None:
    assert wire({"servers": "group:only"}) == [{"id": 436, "target_server": {"dynamic_group_id_list": ["only"]}}]


def test_variable_without_id_is_identified_by_name() -> None:
    detail = plan([{"name": "msg", "category": 1, "value": "hi"}, {"name": "hosts", "category": 3, "ip_list": []}])
    assert wire({"msg": "bye", "hosts": "10.0.0.5"}, detail) == [
        {"name": "msg", "value": "bye"},
        {"name": "hosts", "target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.5"}]}},
    ]


@pytest.mark.parametrize("category", [2, 5, 6])
def test_namespace_and_array_variables_are_sent_as_value(category: int) -> None:
    detail = plan([{"id": 1, "name": "x", "category": category, "value": "a"}])
    assert wire({"x": "b"}, detail) == [{"id": 1, "value": "b"}]


def test_password_override_is_refused_without_echoing_it() -> None:
    with pytest.raises(VariableProblems) as err:
        build_overrides(plan(), {"db_password": "typed-secret"})
    assert set(err.value.problems) == {"db_password"}
    assert "password" in str(err.value) and "keeps the plan's value" in str(err.value)
    assert "typed-secret" not in str(err.value) and PASSWORD not in str(err.value)


def test_unknown_name_lists_the_plans_variables() -> None:
    with pytest.raises(VariableProblems) as err:
        check_names(plan(), ["colour"])
    message = str(err.value)
    assert "colour" in message and "no such variable" in message
    for name, kind in [
        ("servers", "host list"),
        ("version", "string"),
        ("db_password", "password"),
        ("env", "namespace"),
        ("ports", "index array"),
    ]:
        assert f"`{name}` ({kind})" in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(VariableProblems) as err:
        build_overrides(plan(), {"colour": "red", "db_password": "x"})
    assert set(err.value.problems) == {"colour", "db_password"}
    with pytest.raises(VariableProblems) as err:
        build_overrides(plan(), {"servers": "not-a-host", "version": "2.0"})
    assert set(err.value.problems) == {"servers"} and "not-a-host" in err.value.problems["servers"]


def test_emptying_a_host_list_is_refused() -> None:
    with pytest.raises(VariableProblems) as err:
        build_overrides(plan(), {"servers": " , "})
    assert "at least one host" in err.value.problems["servers"]


def test_problems_are_user_input_errors() -> None:
    assert issubclass(VariableProblems, UserInputError)


def test_shown_values_are_safe_to_store() -> None:
    overrides = build_overrides(plan(), {"servers": "10.0.0.1,2:10.0.0.2,group:g", "version": "2.0"})
    shown = {v.name: (v.id, v.category, v.shown) for v in overrides.shown}
    expected = (436, 3, "2 IPs, 1 dynamic group: 10.0.0.1\n2:10.0.0.2\ngroup:g")
    assert shown == {"servers": expected, "version": (437, 1, "2.0")}
    assert all(PASSWORD not in v.shown for v in overrides.shown)


def test_default_text_of_a_host_list_reads_back_as_the_same_targets() -> None:
    detail = plan([{"id": 1, "name": "h", "category": 3, "ip_list": [{"bk_cloud_id": 2, "ip": "10.0.0.2"}]}])
    (var,) = detail.variables
    assert default_text(var) == "2:10.0.0.2"
    assert wire({"h": default_text(var)}, detail) == []  # submitting the pre-filled text changes nothing


def test_type_names_include_unknown_codes() -> None:
    assert [type_name(c) for c in range(1, 7)] == [
        "string",
        "namespace",
        "host list",
        "password",
        "associative array",
        "index array",
    ]
    assert type_name(9) == "type 9"


def test_with_hosts_by_id_every_ip_must_have_a_known_host_id() -> None:
    """v3 ignores `ip_list` when `host_id_list` is given: an IP the plan cannot name by ID is refused, not dropped."""
    hosts = [{"bk_host_id": 11, "ip": "10.0.0.1"}, {"bk_host_id": 77, "ip": None, "ipv6": "2001:db8::7"}]
    detail = plan([{"id": 1, "name": "h", "category": 3, "ip_list": hosts}])
    sent = build_overrides(detail, {"h": "10.0.0.1\nhost:77\nhost:5"}, host_ids=True)
    (item,) = sent.global_vars
    assert item.target_server is not None
    assert [h.bk_host_id for h in item.target_server.host_id_list] == [11, 77, 5] and not item.target_server.ip_list
    with pytest.raises(VariableProblems) as err:
        build_overrides(detail, {"h": "10.0.0.9\nhost:77"}, host_ids=True)
    assert "10.0.0.9" in str(err.value) and "host:<bk_host_id>" in str(err.value)
    with pytest.raises(VariableProblems) as v2:
        build_overrides(detail, {"h": "10.0.0.1\nhost:77\nhost:5"}, host_ids=False)
    assert "BK_API_VERSION=v3" in str(v2.value)
    assert build_overrides(detail, {"h": default_text(detail.variables[0])}, host_ids=False).global_vars == []
