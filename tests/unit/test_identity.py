"""Separation of duties rests on identity comparison: property-test it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sessiongate.identity import Identity, may_be_same, parse_identity

names = st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,20}", fullmatch=True)
accounts = st.sampled_from(["111111111111", "222222222222"])


@st.composite
def identities(draw: st.DrawFn) -> str:
    account = draw(accounts)
    kind = draw(st.sampled_from(["user", "role", "assumed-role", "root"]))
    name = draw(names)
    if kind == "root":
        return f"arn:aws:iam::{account}:root"
    if kind == "assumed-role":
        return f"arn:aws:sts::{account}:assumed-role/{name}/{draw(names)}"
    path = draw(st.sampled_from(["", "ops/", "a/b/"]))
    return f"arn:aws:iam::{account}:{kind}/{path}{name}"


@given(identities())
def test_an_identity_is_always_possibly_itself(arn: str) -> None:
    assert may_be_same(parse_identity(arn), parse_identity(arn))


@given(identities(), identities())
def test_comparison_is_symmetric(a: str, b: str) -> None:
    assert may_be_same(parse_identity(a), parse_identity(b)) == may_be_same(
        parse_identity(b), parse_identity(a)
    )


@given(names, names, names)
def test_a_role_and_any_of_its_sessions_may_be_the_same_person(role: str, s1: str, s2: str) -> None:
    bare = parse_identity(f"arn:aws:iam::111111111111:role/{role}")
    one = parse_identity(f"arn:aws:sts::111111111111:assumed-role/{role}/{s1}")
    two = parse_identity(f"arn:aws:sts::111111111111:assumed-role/{role}/{s2}")
    assert may_be_same(bare, one)
    assert may_be_same(one, two) == (s1 == s2)


@given(st.text(max_size=60))
def test_garbage_never_parses_into_something_distinct(text: str) -> None:
    parsed = parse_identity(text)
    other = parse_identity("arn:aws:iam::111111111111:user/bob")
    if parsed is None:
        assert may_be_same(parsed, other)  # unknown means "maybe the same": fail closed


def test_path_is_not_part_of_the_name() -> None:
    assert parse_identity("arn:aws:iam::111111111111:user/ops/team/alice") == Identity(
        "aws", "111111111111", "user", "alice"
    )


def test_root_may_be_anyone_in_its_account_only() -> None:
    root = parse_identity("arn:aws:iam::111111111111:root")
    assert may_be_same(root, parse_identity("arn:aws:iam::111111111111:user/alice"))
    assert not may_be_same(root, parse_identity("arn:aws:iam::222222222222:user/alice"))


def test_names_compare_case_insensitively() -> None:
    # IAM names are unique case-insensitively: "Alice" and "alice" cannot both exist.
    assert may_be_same(
        parse_identity("arn:aws:iam::111111111111:user/Alice"),
        parse_identity("arn:aws:iam::111111111111:user/alice"),
    )
