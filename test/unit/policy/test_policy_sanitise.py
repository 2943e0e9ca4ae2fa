"""Custom labels: sanitising the policy's answer, cutting text at character boundaries, the fallback."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.classify import (
    PolicyOutputError,
    interpret_custom_labels,
    sanitise_custom_labels,
    truncate_text,
)

FLAG_FR = "\U0001f1eb\U0001f1f7"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"
E_ACUTE_COMBINING = "e\u0301"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("abc", 5, "abc", id="short"),
        pytest.param("abcdef", 3, "abc", id="ascii"),
        pytest.param("é" * 100, 100, "é" * 100, id="two-byte-characters-count-once"),
        pytest.param("日本語のラベル", 3, "日本語", id="three-byte"),
        pytest.param("ab\U0001f600cd", 3, "ab\U0001f600", id="four-byte"),
        pytest.param("ab" + E_ACUTE_COMBINING + "x", 3, "ab", id="combining-accent-stays-with-its-letter"),
        pytest.param("a" + FLAG_FR + FLAG_FR, 2, "a", id="half-a-flag"),
        pytest.param("a" + FLAG_FR + FLAG_FR, 4, "a" + FLAG_FR, id="one-whole-flag"),
        pytest.param("a" + FAMILY, 4, "a", id="zwj-sequence"),
        pytest.param("a" + THUMBS_UP_MEDIUM, 2, "a", id="skin-tone"),
        pytest.param("a\u2764\ufe0f", 2, "a", id="variation-selector"),
    ],
)
def test_truncate_text(text: str, limit: int, expected: str) -> None:
    assert truncate_text(text, limit) == expected


@given(st.text(), st.integers(min_value=1, max_value=120))
def test_truncate_text_is_a_prefix_within_the_limit_ending_on_a_boundary(text: str, limit: int) -> None:
    cut = truncate_text(text, limit)
    assert text.startswith(cut)
    assert len(cut) <= limit
    if len(text) <= limit:
        assert cut == text
    elif cut:
        following = text[len(cut)]
        assert unicodedata.category(following) not in ("Mn", "Mc", "Me")
        assert cut[-1] != "\u200d"
        assert len(cut.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")) == len(cut)


def test_reserved_prefixes_are_dropped_and_do_not_count() -> None:
    answer = {"kubernaut.ai/env": ["x"], "system/owner": ["y"]} | {f"k{i:02}": ["v"] for i in range(10)}
    labels, reserved = sanitise_custom_labels(answer)
    assert reserved == ("kubernaut.ai/env", "system/owner")
    assert list(labels) == [f"k{i:02}" for i in range(10)]


def test_ten_keys_at_most_chosen_in_sorted_order_whatever_the_answer_order() -> None:
    keys = [f"key-{letter}" for letter in "qwertyuiopasdf"]
    forward, _ = sanitise_custom_labels({key: ["v"] for key in keys})
    backward, _ = sanitise_custom_labels({key: ["v"] for key in reversed(keys)})
    assert list(forward) == sorted(keys)[:10]
    assert forward == backward


def test_values_kept_five_strings_at_most_each_cut_at_100_characters() -> None:
    long_value = "ü" * 150
    labels, _ = sanitise_custom_labels({"k": [1, "a", None, "b", long_value, "c", "d", "e", "f"]})
    assert labels["k"] == ("a", "b", "ü" * 100, "c", "d")


def test_keys_cut_at_63_characters_and_a_colliding_cut_is_skipped() -> None:
    base = "ß" * 63
    labels, _ = sanitise_custom_labels({base + "a": ["first"], base + "b": ["second"], "z": "single"})
    assert labels == {base: ("first",), "z": ("single",)}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"k": "v"}, {"k": ("v",)}, id="string-becomes-list"),
        pytest.param({"k": 3}, {}, id="number-skipped"),
        pytest.param({"k": {"a": "b"}}, {}, id="object-skipped"),
        pytest.param({"k": []}, {}, id="empty-list-skipped"),
        pytest.param({"k": [1, True]}, {}, id="no-strings-left"),
        pytest.param({"": ["v"]}, {}, id="empty-key-skipped"),
        pytest.param({"k": [""]}, {"k": ("",)}, id="empty-string-is-a-value"),
        pytest.param(None, {}, id="undefined"),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_value_shapes(answer: object, expected: dict[str, tuple[str, ...]]) -> None:
    assert sanitise_custom_labels(answer)[0] == expected


@pytest.mark.parametrize("answer", [["team"], "team", 1])
def test_a_non_object_answer_is_a_policy_error(answer: object) -> None:
    with pytest.raises(PolicyOutputError, match=r"^labels rule: result must be an object"):
        sanitise_custom_labels(answer)


NAMESPACE_LABELS = {
    "kubernaut.ai/team": "payments",
    "kubernaut.ai/cost-center": "cc-42",
    "kubernaut.ai/region": "",
    "team": "ignored",
}
WORKLOAD_LABELS = {
    "kubernaut.ai/team": "checkout",  # the namespace's team comes first
    "kubernaut.ai/tier": "frontend",
    "kubernaut.ai/region": "eu-west-1",  # the namespace's is empty
    "kubernaut.ai/business-unit": "not-a-fallback-label",
}


def test_an_empty_answer_falls_back_to_namespace_then_workload_labels() -> None:
    result = interpret_custom_labels({}, NAMESPACE_LABELS, WORKLOAD_LABELS)
    assert result.source == "label-fallback"
    assert result.to_status() == {
        "team": ["payments"],
        "tier": ["frontend"],
        "cost": ["cc-42"],
        "region": ["eu-west-1"],
    }


def test_the_fallback_without_workload_labels_is_the_namespace_s() -> None:
    result = interpret_custom_labels({}, NAMESPACE_LABELS, {})
    assert result.to_status() == {"team": ["payments"], "cost": ["cc-42"]}


def test_an_answer_with_only_reserved_keys_falls_back_too() -> None:
    result = interpret_custom_labels({"kubernaut.ai/x": ["y"]}, NAMESPACE_LABELS, {})
    assert result.source == "label-fallback"
    assert result.reserved_dropped == ("kubernaut.ai/x",)
    assert "team" in result.labels


def test_a_usable_answer_has_no_fallback() -> None:
    result = interpret_custom_labels({"stage": ["prod"]}, NAMESPACE_LABELS, WORKLOAD_LABELS)
    assert result.source == "policy"
    assert result.to_status() == {"stage": ["prod"]}


def test_no_labels_and_no_answer_is_empty() -> None:
    result = interpret_custom_labels(None, {}, {})
    assert result.to_status() == {}
