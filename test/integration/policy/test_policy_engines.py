"""Both engines load and refuse the same modules, keep the old module on a refusal, and report
evaluation errors and undefined rules the same way; plus the opa-python-client traps they avoid.

Every test here uses its own package on the shared OPA server (the `package` fixture).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import regorus
from opa_client import AsyncOpaClient
from opa_client.errors import RegoParseError

from controller.policy_engine import (
    BUILTIN_ARITY,
    EmbeddedEngine,
    OpaServerEngine,
    PolicyEngine,
    PolicyEngineUnavailable,
    PolicyEvaluationError,
    PolicyRejected,
    PolicyTimeLimitExceeded,
)
from devstack.opa_server import OpaServer
from test.integration.patient_engines import PATIENT_TRANSPORT_ALLOWANCE


@pytest.fixture
async def engines(opa_server: OpaServer) -> AsyncIterator[dict[str, PolicyEngine]]:
    # OPA is waited for long enough to answer on a loaded machine: these tests are about its answers.
    opa = OpaServerEngine(opa_server.url, transport_allowance=PATIENT_TRANSPORT_ALLOWANCE)
    created: dict[str, PolicyEngine] = {"opa": opa, "embedded": EmbeddedEngine()}
    yield created
    for engine in created.values():
        await engine.close()


# Each module is refused by OPA at upload; the line is where OPA reports the problem.
REJECTED = {
    "syntax-error": ('result := {"a": if {\n', 3),
    "unknown-function": ("result := foo.bar(input.x)\n", 3),
    "unsafe-variable": ("result := y if { input.x == 1 }\n", 3),
    "unsafe-variable-in-else": ("result := 1 if { input.a } else := w\n", 3),
    "arity-too-many": ('result := lower(input.x, "b")\n', 3),
    "arity-too-few": ("result := count()\n", 3),
    "arity-in-untaken-branch": ('result := 1 if { input.a } else := upper(input.b, "c")\n', 3),
    "unknown-function-in-unused-rule": ("result := 1\n\nother := nope(1) if { input.a }\n", 5),
    "unsafe-variable-in-unused-function": ("result := 1\n\nf(a) := q if { a }\n", 5),
    "user-function-arity": ("f(a) := a\n\nresult := f(1, 2, 3)\n", 5),
    "v0-syntax": ("result { true }\n", 3),
}

# Valid modules, some with constructs regorus' compiler does not support (`with`, `walk`,
# `print`): the embedded engine must not refuse what OPA accepts.
ACCEPTED = {
    "output-argument": ('result := 1 if { lower(input.s, y); y == "a" }\n', {"s": "A"}, 1),
    "negated-output-argument": ('result := 1 if { not lower(input.s, "b") }\n', {"s": "A"}, 1),
    "else-chain": ("result := 1 if { input.a } else := 2 if { input.b } else := 3\n", {"b": True}, 2),
    "with": ("q := input.a\n\nresult := x if { x := q with input.a as 5 }\n", {}, 5),
    "walk": ("result := count([p | walk(input, [p, _])])\n", {"a": 1}, 2),
    "print": ('result := 1 if { print("hello", input.a) }\n', {"a": 1}, 1),
    "every": ("result := 1 if { every x in input.l { x > 0 } }\n", {"l": [1, 2]}, 1),
    "partial-set": ("result contains x if { some x in input.l }\n", {"l": ["b", "a", "b"]}, ["a", "b"]),
    "partial-object": ("result[k] := v if { some k, v in input.o }\n", {"o": {"k": "v"}}, {"k": "v"}),
    # regorus' eval_rule refuses rules with constant keys in their heads; a query answers them.
    "partial-object-constant-keys": (
        'result["a"] := 1 if input.x\n\nresult["b"] := 2\n',
        {"x": True},
        {"a": 1, "b": 2},
    ),
    "partial-object-no-key-defined": ('result["a"] := 1 if input.x\n', {"x": False}, {}),
    "functions": (
        "f(x) := 1 if { x == 1 }\n\nf(x) := 2 if { x == 2 }\n\nresult := f(input.n)\n",
        {"n": 2},
        2,
    ),
    "default-function": (
        "default f(_) := 0\n\nf(x) := 1 if { x == 1 }\n\nresult := f(input.n)\n",
        {"n": 9},
        0,
    ),
    "object-get-path": ('result := object.get(input, ["a", "b"], "none")\n', {"a": {}}, "none"),
}


@pytest.mark.parametrize("body", [case[0] for case in REJECTED.values()], ids=REJECTED.keys())
async def test_both_engines_refuse_what_opa_refuses(
    engines: dict[str, PolicyEngine], package: str, body: str
) -> None:
    line = next(case[1] for case in REJECTED.values() if case[0] == body)
    module_id = f"{package}.rego"
    for name, engine in engines.items():
        with pytest.raises(PolicyRejected) as refused:
            await engine.load(module_id, f"package {package}\n\n{body}")
        assert f"{module_id}:{line}" in str(refused.value), f"{name}: {refused.value}"


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_both_engines_accept_and_agree(
    engines: dict[str, PolicyEngine], package: str, case: tuple[str, dict[str, object], object]
) -> None:
    body, given, expected = case
    for engine in engines.values():
        await engine.load(f"{package}.rego", f"package {package}\n\n{body}")
    decisions = [await engine.evaluate(package, "result", given) for engine in engines.values()]
    assert decisions == [expected, expected]


async def test_a_refused_module_leaves_the_previous_one_loaded(
    engines: dict[str, PolicyEngine], package: str
) -> None:
    module_id = f"{package}.rego"
    for engine in engines.values():
        await engine.load(module_id, f'package {package}\n\nresult := "v1"\n')
        with pytest.raises(PolicyRejected):
            await engine.load(module_id, f"package {package}\n\nresult := lower(input.x, 1, 2)\n")
        with pytest.raises(PolicyRejected):
            await engine.load(module_id, f"package {package}\n\nresult := {{\n")
        assert await engine.evaluate(package, "result", {}) == "v1"


async def test_a_module_is_replaced_under_its_id(engines: dict[str, PolicyEngine], package: str) -> None:
    for engine in engines.values():
        await engine.load(f"{package}.rego", f"package {package}\n\nresult := 1\n")
        await engine.load(f"{package}.rego", f"package {package}\n\nresult := 2\n")
        assert await engine.evaluate(package, "result", {}) == 2


async def test_undefined_is_none(engines: dict[str, PolicyEngine], package: str) -> None:
    for engine in engines.values():
        await engine.load(f"{package}.rego", f"package {package}\n\nresult := 1 if {{ input.never }}\n")
        assert await engine.evaluate(package, "result", {}) is None
        assert await engine.evaluate(package, "missing_rule", {}) is None
        assert await engine.evaluate(f"{package}.missing_package", "result", {}) is None


async def test_conflicting_values_are_an_evaluation_error_with_the_location(
    engines: dict[str, PolicyEngine], package: str
) -> None:
    source = f"package {package}\n\nresult := 1 if {{ input.a }}\n\nresult := 2 if {{ input.b }}\n"
    for engine in engines.values():
        await engine.load(f"{package}.rego", source)
        assert await engine.evaluate(package, "result", {"a": True}) == 1
    messages = []
    for engine in engines.values():
        with pytest.raises(PolicyEvaluationError) as failed:
            await engine.evaluate(package, "result", {"a": True, "b": True})
        messages.append(str(failed.value))
    assert "eval_conflict_error" in messages[0]
    assert "conflict" in messages[1]
    assert all(f"{package}.rego:" in message for message in messages)


async def test_builtin_type_errors_are_strict_on_both(engines: dict[str, PolicyEngine], package: str) -> None:
    for engine in engines.values():
        await engine.load(f"{package}.rego", f"package {package}\n\nresult := lower(input.x)\n")
        assert await engine.evaluate(package, "result", {"x": "A"}) == "a"
        with pytest.raises(PolicyEvaluationError, match=rf"{package}\.rego:3"):
            await engine.evaluate(package, "result", {"x": 1})


async def test_inputs_reach_both_engines_as_the_same_json(
    engines: dict[str, PolicyEngine], package: str
) -> None:
    given = {"s": "Zoë 🇫🇷", "n": 12345678901234567, "f": 1.5, "l": [None, True], "m": {}}
    for engine in engines.values():
        await engine.load(f"{package}.rego", f"package {package}\n\nresult := input\n")
    decisions = [await engine.evaluate(package, "result", given) for engine in engines.values()]
    assert decisions == [given, given]


async def test_opa_client_traps(opa_server: OpaServer, package: str) -> None:
    """Why the OPA engine does not use these client calls as they are."""
    async with AsyncOpaClient(
        host="127.0.0.1", port=int(opa_server.url.rsplit(":", 1)[1]), retries=0
    ) as client:
        # A v1 module without `if` is v0 syntax: OPA refuses it, and rego_compat=True would rewrite it.
        with pytest.raises(RegoParseError):
            await client.update_policy_from_string(
                f"package {package}\n\nresult {{ true }}\n", f"{package}.rego", rego_compat=False
            )
        await client.update_policy_from_string(
            f"package {package}\n\nresult := 1 if {{ input.a }}\n\nresult := 2 if {{ input.b }}\n",
            f"{package}.rego",
            rego_compat=False,
        )
        # Undefined: no `result` key at all.
        assert await client.query_rule(input_data={}, package_path=package, rule_name="result") == {}
        # A conflict is HTTP 500; query_rule raises without the body that says what went wrong.
        with pytest.raises(aiohttp.ClientResponseError) as failed:
            await client.query_rule(
                input_data={"a": True, "b": True}, package_path=package, rule_name="result"
            )
        assert failed.value.status == 500
        assert "conflict" not in str(failed.value)


async def test_opa_down_is_unavailable() -> None:
    engine = OpaServerEngine("http://127.0.0.1:9", timeout=2.0)
    try:
        with pytest.raises(PolicyEngineUnavailable):
            await engine.evaluate("signalprocessing", "environment", {})
        with pytest.raises(PolicyEngineUnavailable):
            await engine.load("x.rego", "package x\n\nresult := 1\n")
    finally:
        await engine.close()


def test_builtin_arities_match_opa_and_regorus(opa_binary: Path) -> None:
    capabilities = json.loads(
        subprocess.run(
            [str(opa_binary), "capabilities", "--current"], check=True, capture_output=True, text=True
        ).stdout
    )
    opa = {builtin["name"]: len(builtin["decl"].get("args") or []) for builtin in capabilities["builtins"]}
    engine = regorus.Engine()
    engine.add_policy("r.rego", "package r\n\nruntime := opa.runtime()\n")
    provided = {name for name in engine.eval_rule("data.r.runtime")["builtins"] if not name.startswith("__")}
    assert {name: opa[name] for name in BUILTIN_ARITY} == dict(BUILTIN_ARITY)
    assert set(BUILTIN_ARITY) == provided


async def test_embedded_engine_serves_any_loop_and_thread(package: str) -> None:
    """regorus panics when an engine is used off its thread; the engine keeps all calls on one."""
    engine = EmbeddedEngine()
    await engine.load(f"{package}.rego", f"package {package}\n\nresult := upper(input.s)\n")

    async def many(prefix: str) -> list[object]:
        return list(
            await asyncio.gather(
                *(engine.evaluate(package, "result", {"s": f"{prefix}{i}"}) for i in range(50))
            )
        )

    results: dict[str, list[object]] = {}
    errors: list[BaseException] = []

    def on_own_loop(prefix: str) -> None:
        try:
            results[prefix] = asyncio.run(many(prefix))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=on_own_loop, args=(prefix,)) for prefix in ("a", "b")]
    for thread in threads:
        thread.start()
    here = await many("c")
    for thread in threads:
        thread.join()
    await engine.close()
    assert not errors
    assert here == [f"C{i}" for i in range(50)]
    assert results == {prefix: [f"{prefix.upper()}{i}" for i in range(50)] for prefix in ("a", "b")}


SLOW = "result := count([x | some x in numbers.range(1, input.n)])\n"


async def test_both_engines_discard_a_result_past_its_time_limit_and_answer_the_next_call(
    engines: dict[str, PolicyEngine], package: str
) -> None:
    for name, engine in engines.items():
        await engine.load(f"{package}.rego", f"package {package}\n\n{SLOW}")
        with pytest.raises(PolicyTimeLimitExceeded, match=r"took \d+\.\d+ s, over its 0\.001 s time limit"):
            await engine.evaluate(package, "result", {"n": 200_000}, time_limit=0.001)
        # The engine is free again: the same rule answers (a generous limit: a loaded machine).
        assert await engine.evaluate(package, "result", {"n": 10}, time_limit=10.0) == 10, name


async def test_embedded_engine_turns_a_panic_into_a_typed_error() -> None:
    from controller.policy_engine.embedded import _Failure, _guarded

    class PanicException(BaseException):  # the name pyo3 gives Rust panics
        pass

    def job() -> None:
        raise PanicException("assertion failed: unsendable")

    failure = _guarded(PolicyEvaluationError, job)()
    assert isinstance(failure, _Failure)
    assert failure.kind is PolicyEvaluationError
    assert "unsendable" in failure.message


async def test_embedded_engine_closed_is_unavailable() -> None:
    engine = EmbeddedEngine()
    await engine.close()
    await engine.close()
    with pytest.raises(PolicyEngineUnavailable):
        await engine.evaluate("x", "result", {})
