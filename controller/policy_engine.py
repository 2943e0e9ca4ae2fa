"""Rego evaluation behind one small interface, with two engines: an OPA server and regorus in-process.

The classifiers only need three operations: load a module, evaluate one rule
with an input, close. `PolicyEngine` is that contract; the rest of the
controller never sees OPA's HTTP API or regorus' threading rules.

- `OpaServerEngine` talks to one OPA server per controller (a sidecar, or one
  per test worker). It is the reference: OPA type-checks a module at upload
  and refuses it, with file:line, before it replaces the loaded one.
- `EmbeddedEngine` runs regorus in this process, on one dedicated thread,
  because a regorus engine panics when touched from another thread. regorus
  checks much less at load than OPA, so `load` adds the missing static checks
  (unsafe variables, unknown functions, arity) and refuses what OPA refuses.

Both engines send the input as the same JSON text, evaluate with strict
builtin errors (a builtin given a wrong type is an error, not undefined), and
report an undefined rule as `None`.

Boundary: this module knows Rego engines, not SignalProcessing. Which
packages exist and what their results mean is in `policies` and `classify`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import aiohttp
import regorus
from opa_client import AsyncOpaClient
from opa_client.errors import RegoParseError, TypeException

logger = logging.getLogger(__name__)

#: Upper bound for one evaluation, as for the original custom-labels engine.
EVALUATION_TIMEOUT: Final = 5.0

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PolicyError(Exception):
    """Base of every error a policy engine reports."""


class PolicyRejected(PolicyError):
    """The engine refused to load a module; the message names file:line of each problem."""


class PolicyEvaluationError(PolicyError):
    """An evaluation failed: conflicting values, a builtin error, or it ran past the time bound."""


class PolicyEngineUnavailable(PolicyError):
    """The engine could not be reached (OPA down or not answering); retrying may help."""


class PolicyEngine(Protocol):
    """Loads Rego modules and evaluates rules; implementations are safe to share between tasks."""

    async def load(self, module_id: str, source: str) -> None:
        """Add or replace the module `module_id`; raises `PolicyRejected` and keeps the old one."""

    async def evaluate(self, package_path: str, rule: str, input: Mapping[str, object]) -> object:
        """The JSON value of `data.<package_path>.<rule>`, or `None` when the rule is undefined.

        A rule whose value is JSON `null` is also reported as `None`: neither is
        a decision. Sets come back as sorted lists, as OPA serialises them.
        """

    async def close(self) -> None:
        """Release connections or the engine thread; the engine is unusable afterwards."""


def encode_input(input: Mapping[str, object]) -> str:
    """The JSON text both engines evaluate against, so they see byte-identical inputs."""

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError(f"policy input holds a {type(value).__name__}, which is not JSON")

    return json.dumps(input, default=plain, separators=(",", ":"))


def _rule_path(package_path: str, rule: str) -> list[str]:
    segments = [*package_path.split("."), rule]
    for segment in segments:
        if not _IDENTIFIER.match(segment):
            raise ValueError(f"not a Rego identifier: {segment!r} in {package_path!r}.{rule!r}")
    return segments


# --------------------------------------------------------------------------------------------------
# OPA server


def _describe_opa_errors(body: object, fallback: str) -> str:
    """OPA's error body as `file:row:col: code: message` lines (the HTTP status alone says nothing)."""
    if not isinstance(body, Mapping):
        return fallback
    details = body.get("errors")
    lines: list[str] = []
    if isinstance(details, list):
        for error in details:
            if not isinstance(error, Mapping):
                continue
            where = ""
            location = error.get("location")
            if isinstance(location, Mapping):
                where = f"{location.get('file', '')}:{location.get('row', 0)}"
                if location.get("col"):
                    where += f":{location['col']}"
                where += ": "
            lines.append(f"{where}{error.get('code', 'error')}: {error.get('message', '')}")
    if not lines:
        lines.append(str(body.get("message") or fallback))
    return "\n".join(lines)


class OpaServerEngine:
    """Evaluates against an OPA server at `url`; one server per controller, never shared.

    OPA merges modules that declare the same package, so two controllers (or
    two test workers) loading into one server would see each other's rules.
    Uploads go through opa-python-client with `rego_compat=False`, so OPA sees
    the text as written instead of a v0-to-v1 rewrite. Queries go straight to
    OPA's Data API on this engine's own session: the client's `query_rule`
    raises on HTTP 500 without reading the body, which is where OPA puts the
    conflict or builtin error, and its retry loop re-sends 500s after sleeping.
    """

    def __init__(self, url: str, *, timeout: float = EVALUATION_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ValueError(f"OPA URL needs scheme, host and port, got {url!r}")
        self._url = url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port
        self._tls = parts.scheme == "https"
        self._timeout = timeout
        self._resources = contextlib.AsyncExitStack()
        self._client: AsyncOpaClient | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self._url

    async def _opa(self) -> AsyncOpaClient:
        # Created on first use: aiohttp sessions belong to the running loop.
        if self._client is None:
            client = AsyncOpaClient(
                host=self._host, port=self._port, ssl=self._tls, retries=0, timeout=self._timeout
            )
            self._client = await self._resources.enter_async_context(client)
        return self._client

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._session = await self._resources.enter_async_context(session)
        return self._session

    async def load(self, module_id: str, source: str) -> None:
        opa = await self._opa()
        try:
            await opa.update_policy_from_string(source, module_id, rego_compat=False)
        except RegoParseError as error:
            body = {"message": error.message, "errors": error.errors}
            raise PolicyRejected(_describe_opa_errors(body, str(error))) from None
        except TypeException as error:
            raise PolicyRejected(f"{module_id}: {error.expression}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise PolicyEngineUnavailable(
                f"OPA at {self._url} did not take {module_id}: {error!r}"
            ) from error

    async def evaluate(self, package_path: str, rule: str, input: Mapping[str, object]) -> object:
        url = f"{self._url}/v1/data/{'/'.join(_rule_path(package_path, rule))}"
        session = await self._http()
        try:
            async with session.post(
                url,
                data='{"input":' + encode_input(input) + "}",
                params={"strict-builtin-errors": "true"},
                headers={"Content-Type": "application/json"},
            ) as response:
                body = await response.json(content_type=None)
                status = response.status
        except aiohttp.ConnectionTimeoutError as error:
            raise PolicyEngineUnavailable(f"OPA at {self._url} unreachable: {error!r}") from error
        except TimeoutError as error:
            # The connection was up, so it is the evaluation that ran past the bound.
            raise PolicyEvaluationError(
                f"data.{package_path}.{rule}: no answer from OPA within {self._timeout} s"
            ) from error
        except aiohttp.ClientError as error:
            raise PolicyEngineUnavailable(f"OPA at {self._url} unreachable: {error!r}") from error
        if status != 200:
            raise PolicyEvaluationError(_describe_opa_errors(body, f"HTTP {status} from OPA"))
        # OPA leaves `result` out entirely when the rule is undefined.
        return body.get("result") if isinstance(body, Mapping) else None

    async def close(self) -> None:
        await self._resources.aclose()
        self._client = None
        self._session = None


# --------------------------------------------------------------------------------------------------
# regorus, in process

# OPA 1.22.2's arity of every builtin regorus 0.13 implements (from `opa capabilities`, checked
# against both engines in test/integration/policy). regorus checks arity only when a call is
# evaluated, so a wrong call on a branch the smoke input never takes would slip through.
_ARITY_GROUPS: Final = {
    0: "opa.runtime time.now_ns",
    1: """abs array.reverse base64.decode base64.encode base64.is_valid base64url.decode base64url.encode
        base64url.encode_no_pad bits.negate ceil count floor glob.quote_meta hex.decode hex.encode http.send
        intersection is_array is_boolean is_null is_number is_object is_set is_string json.is_valid
        json.marshal json.unmarshal json.verify_schema lower max min net.cidr_expand net.cidr_is_valid
        object.keys object.union_n product regex.is_valid round semver.is_valid sort strings.reverse sum
        time.clock time.date time.format time.parse_duration_ns time.parse_rfc3339_ns time.weekday to_number
        trace trim_space type_name union units.parse units.parse_bytes upper urlquery.decode
        urlquery.decode_object urlquery.encode urlquery.encode_object uuid.parse uuid.rfc4122 walk
        yaml.is_valid yaml.marshal yaml.unmarshal""",
    2: """array.concat bits.and bits.lsh bits.or bits.rsh bits.xor concat contains endswith format_int
        graph.reachable graph.reachable_paths indexof indexof_n json.filter json.marshal_with_options
        json.match_schema json.patch json.remove net.cidr_contains numbers.range object.filter object.remove
        object.subset object.union rand.intn regex.match regex.split semver.compare split sprintf startswith
        strings.any_prefix_match strings.any_suffix_match strings.count strings.replace_n time.diff
        time.parse_ns trim trim_left trim_prefix trim_right trim_suffix""",
    3: """array.slice glob.match numbers.range_step object.get regex.find_all_string_submatch_n regex.find_n
        regex.replace replace substring""",
    4: "regex.template_match time.add_date",
}
BUILTIN_ARITY: Final[Mapping[str, int]] = {
    name: arity for arity, names in _ARITY_GROUPS.items() for name in names.split()
}
_VARIADIC_BUILTINS: Final = frozenset({"print"})

# regorus' RVM compiler finds unsafe variables, which its interpreter silently
# treats as undefined. It also refuses constructs it does not support yet
# (`with`, `walk`, `print`), which say nothing about the policy, and unknown
# functions, which `_call_problems` already reports. The compiler is only a
# checker here: evaluating with the RVM turns conflicts into "undefined".
_UNSAFE_VARIABLE: Final = re.compile(r"Undefined variable|is unsafe")
_REGORUS_LOCATION: Final = re.compile(r"-->\s*(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)")
_REGORUS_MESSAGE: Final = re.compile(r"^error:\s*(?P<message>.+)$", re.MULTILINE)


def describe_regorus_error(error: BaseException) -> str:
    """regorus' multi-line report (snippet, caret, maybe a Rust backtrace) as `file:line:col: message`."""
    text = str(error).split("Stack backtrace:")[0].strip()
    location = _REGORUS_LOCATION.search(text)
    message = _REGORUS_MESSAGE.search(text)
    if location and message:
        return f"{location['file']}:{location['line']}:{location['col']}: {message['message'].strip()}"
    return text


# regorus' AST, as its get_ast_as_json gives it: nested JSON, typed loosely on purpose.
_Node = Any


@dataclass(frozen=True)
class _Call:
    name: str
    args: int
    statement: bool  # a call that is a whole body statement may take one extra output argument
    line: int
    col: int


@dataclass
class _ModuleFacts:
    """What the static checks need from one module."""

    module_id: str
    package: str
    imports: dict[str, str] = field(default_factory=dict)
    rules: set[str] = field(default_factory=set)
    functions: dict[str, int] = field(default_factory=dict)
    calls: list[_Call] = field(default_factory=list)


def _ref_name(node: _Node) -> str | None:
    """`a.b.c` for a Var/RefDot chain; None for anything dynamic (`a[x]`, a call result)."""
    if "Var" in node:
        return str(node["Var"]["value"])
    if "RefDot" in node:
        base = _ref_name(node["RefDot"]["refr"])
        return None if base is None else f"{base}.{node['RefDot']['field'][1]}"
    return None


def _rule_name(node: _Node) -> str | None:
    """The document a rule head defines: `p` for `p[k] := v`, `a.b` for `a.b := 1`."""
    if "RefBrack" in node:
        return _rule_name(node["RefBrack"]["refr"])
    return _ref_name(node)


def _walk_calls(node: _Node, statement_calls: set[int]) -> Iterator[_Call]:
    if isinstance(node, list):
        for item in node:
            yield from _walk_calls(item, statement_calls)
        return
    if not isinstance(node, dict):
        return
    literal = node.get("literal")
    if isinstance(literal, dict):
        for kind in ("Expr", "NotExpr"):
            expr = literal.get(kind, {}).get("expr", {})
            if "Call" in expr:
                statement_calls.add(id(expr["Call"]))
    call = node.get("Call")
    if isinstance(call, dict):
        name = _ref_name(call["fcn"])
        if name is not None:
            span = next(iter(call["fcn"].values()))["span"]
            yield _Call(name, len(call["params"]), id(call) in statement_calls, span["line"], span["col"])
    for value in node.values():
        yield from _walk_calls(value, statement_calls)


def _module_facts(module: _Node) -> _ModuleFacts:
    source: str = module["source"]["contents"]
    ast = module["ast"]
    facts = _ModuleFacts(module["source"]["file"], f"data.{_ref_name(ast['package']['refr'])}")
    for imported in ast["imports"]:
        path = _ref_name(imported["refr"])
        if path is not None:
            alias = imported.get("as")
            facts.imports[source[alias["start"] : alias["end"]] if alias else path.rsplit(".", 1)[-1]] = path
    for rule in ast["rules"]:
        kind, body = next(iter(rule.items()))
        head_kind, head = ("Default", body) if kind == "Default" else next(iter(body["head"].items()))
        name = _rule_name(head["refr"])
        if name is None:
            continue
        path = f"{facts.package}.{name}"
        facts.rules.add(path)
        if head_kind == "Func" or head.get("args"):
            facts.functions[path] = len(head["args"])
    facts.calls = list(_walk_calls(ast["rules"], set()))
    return facts


def _call_problems(all_facts: list[_ModuleFacts]) -> list[str]:
    """Calls to unknown functions and calls with a wrong argument count, as OPA's checker reports them."""
    functions = {path: arity for facts in all_facts for path, arity in facts.functions.items()}
    problems = []
    for facts in all_facts:
        for call in facts.calls:
            head, _, rest = call.name.partition(".")
            if head in facts.imports:
                target = facts.imports[head] + (f".{rest}" if rest else "")
            elif f"{facts.package}.{call.name}" in functions:
                target = f"{facts.package}.{call.name}"
            else:
                target = call.name
            if target in _VARIADIC_BUILTINS:
                continue
            arity = functions.get(target, BUILTIN_ARITY.get(target))
            where = f"{facts.module_id}:{call.line}:{call.col}"
            if arity is None:
                problems.append(f"{where}: unknown function {call.name}")
            elif call.args != arity and not (call.statement and call.args == arity + 1):
                problems.append(f"{where}: {call.name} takes {arity} argument(s), given {call.args}")
    return problems


@dataclass(frozen=True)
class _Failure:
    """A job's error, carried back as a value rather than raised across threads."""

    kind: type[PolicyError]
    message: str


class _ThreadState(threading.local):
    """The regorus engine and its module texts; each engine thread sees only its own."""

    engine: regorus.Engine | None = None
    rules: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}


_state = _ThreadState()

R = TypeVar("R")


def _guarded(kind: type[PolicyError], job: Callable[..., R]) -> Callable[..., R | _Failure]:
    """Runs `job` on the engine thread and returns any error, Rust panics included, as a `_Failure`.

    An exception that crossed to the event loop would carry frames that still
    reference a regorus engine, and regorus raises when an engine is dropped
    on a thread other than its own, so the frames are cleared here.
    """

    def run(*args: object) -> R | _Failure:
        try:
            return job(*args)
        except BaseException as error:  # pyo3's PanicException derives from BaseException only
            traceback.clear_frames(error.__traceback__)
            return _Failure(kind, describe_regorus_error(error))

    return run


def _normalise(value: object) -> object:
    """regorus' Python values shaped as OPA's JSON: sets as sorted lists, object keys as strings."""
    if isinstance(value, (set, frozenset)):
        return sorted((_normalise(item) for item in value), key=_rego_order)
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else json.dumps(key, separators=(",", ":")): _normalise(item)
            for key, item in value.items()
        }
    return value


def _rego_order(value: object) -> tuple[int, float | str]:
    """Rego's order between types (null < boolean < number < string < composite); composites roughly."""
    if value is None:
        return 0, 0.0
    if isinstance(value, bool):
        return 1, float(value)
    if isinstance(value, (int, float)):
        return 2, float(value)
    if isinstance(value, str):
        return 3, value
    return 4, json.dumps(value, sort_keys=True)


def _load(module_id: str, source: str) -> _Failure | None:
    modules = {**_state.modules, module_id: source}
    candidate = regorus.Engine()
    candidate.set_gather_prints(True)
    try:
        for name, text in modules.items():
            candidate.add_policy(name, text)
    except RuntimeError as error:
        return _Failure(PolicyRejected, describe_regorus_error(error))
    facts = [_module_facts(module) for module in json.loads(candidate.get_ast_as_json())]
    problems = _call_problems(facts)
    rules = frozenset(rule for module in facts for rule in module.rules)
    # One entry point at a time: the compiler gives up at the first construct it does not support.
    for rule in sorted(rules):
        try:
            regorus.Program.compile_from_modules("{}", list(modules.items()), [rule])
        except RuntimeError as error:
            if _UNSAFE_VARIABLE.search(str(error)):
                problems.append(describe_regorus_error(error))
    if problems:
        return _Failure(PolicyRejected, "\n".join(dict.fromkeys(problems)))
    _state.engine, _state.modules, _state.rules = candidate, modules, rules
    return None


def _evaluate(rule_path: str, input_json: str, timeout: float) -> object:
    engine = _state.engine
    if engine is None or rule_path not in _state.rules:
        # OPA answers an unknown package or rule with "undefined", not with an error.
        return None
    started = time.monotonic()
    try:
        engine.set_input_json(input_json)
        value = engine.eval_rule(rule_path)
    finally:
        for line in engine.take_prints():
            logger.debug("print in %s: %s", rule_path, line)
    elapsed = time.monotonic() - started
    if elapsed > timeout:
        return _Failure(
            PolicyEvaluationError, f"{rule_path} took {elapsed:.1f} s, over the {timeout} s bound"
        )
    return _normalise(value)


def _release() -> None:
    _state.engine = None
    _state.modules = {}
    _state.rules = frozenset()


class EmbeddedEngine:
    """regorus in this process; every regorus call runs on the engine's one thread.

    A regorus engine is not thread-safe and panics when used from a thread
    other than its creator's, so each `EmbeddedEngine` owns a single-worker
    executor whose thread creates, uses and drops the regorus engine; callers
    on any event loop or thread just await results.

    Time bound: regorus holds the GIL for a whole evaluation and its Python API
    has no cancellation, so while it runs nothing else in the process does
    (the event loop included) and no timer can stop it. What this engine does
    instead: each evaluation is timed, and a result that took longer than
    `timeout` is discarded with a `PolicyEvaluationError`, so a slow policy
    fails loudly rather than slowing every SP silently; and the smoke
    evaluation at load (`policies`) catches a policy that is slow on an
    ordinary input. A policy that runs for minutes on some input still stalls
    the controller; run untrusted policies on the OPA engine, where the HTTP
    timeout holds.

    `load` parses all modules into a fresh regorus engine, adds the checks
    regorus skips but OPA makes at upload (unsafe variables, unknown
    functions, arity; via regorus' compiler and an AST walk), and only then
    swaps the fresh engine in, so a rejected module leaves the previous set
    active. It refuses a little more than OPA (builtins regorus lacks); it
    does not find OPA's other type errors (`lower(1)`), which surface at
    evaluation instead.
    """

    def __init__(self, *, timeout: float = EVALUATION_TIMEOUT) -> None:
        self._timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="regorus")
        self._closed = False

    async def _run(self, job: Callable[..., object], *args: object) -> object:
        if self._closed:
            raise PolicyEngineUnavailable("the embedded policy engine is closed")
        result = await asyncio.get_running_loop().run_in_executor(self._executor, job, *args)
        if isinstance(result, _Failure):
            raise result.kind(result.message)
        return result

    async def load(self, module_id: str, source: str) -> None:
        await self._run(_guarded(PolicyRejected, _load), module_id, source)

    async def evaluate(self, package_path: str, rule: str, input: Mapping[str, object]) -> object:
        rule_path = "data." + ".".join(_rule_path(package_path, rule))
        return await self._run(
            _guarded(PolicyEvaluationError, _evaluate), rule_path, encode_input(input), self._timeout
        )

    async def close(self) -> None:
        if self._closed:
            return
        # Jobs already queued run first; the regorus engine is dropped on its own thread.
        await self._run(_release)
        self._closed = True
        self._executor.shutdown(wait=True)
