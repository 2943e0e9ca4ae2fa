"""The static checks OPA makes at upload and regorus skips, so the embedded engine refuses what OPA refuses.

regorus parses a module and checks little else until it evaluates: a call to
an unknown function, a builtin given the wrong number of arguments or an
unsafe variable only shows up when a branch that contains it runs, and an
unsafe variable not even then (regorus' interpreter treats it as undefined).
OPA refuses all of them at upload, with file:line. `check_modules` finds them
before any evaluation: unknown functions and arity by walking regorus' AST
against `BUILTIN_ARITY` and the modules' own functions, unsafe variables by
compiling each rule with regorus' RVM compiler (used only as a checker).
`describe_regorus_error` turns regorus' multi-line reports into the same
`file:line:col: message` form.

Boundary: checks on module texts already parsed by regorus; loading,
evaluating and regorus' threading rules are `embedded`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import regorus

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


def check_modules(parsed: regorus.Engine, modules: Mapping[str, str]) -> tuple[frozenset[str], list[str]]:
    """The rules `modules` define (`data.<package>.<rule>`), and what OPA would refuse them for.

    `parsed` is a regorus engine that parsed exactly `modules`; call this on
    the thread that created it. The problems are `file:line:col: message`
    lines, none when OPA would accept the modules.
    """
    facts = [_module_facts(module) for module in json.loads(parsed.get_ast_as_json())]
    problems = _call_problems(facts)
    rules = frozenset(rule for module in facts for rule in module.rules)
    # One entry point at a time: the compiler gives up at the first construct it does not support.
    for rule in sorted(rules):
        try:
            regorus.Program.compile_from_modules("{}", list(modules.items()), [rule])
        except RuntimeError as error:
            if _UNSAFE_VARIABLE.search(str(error)):
                problems.append(describe_regorus_error(error))
    return rules, problems


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
