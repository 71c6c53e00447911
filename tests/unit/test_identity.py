"""Separation of duties rests on identity comparison: property-test it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiongate.core.identity import IDC_ROLE_PREFIX, Identity, may_be_same, parse_identity, person_key

names = st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,20}", fullmatch=True)
accounts = st.sampled_from(["111111111111", "222222222222"])


@st.composite
def identities(draw: st.DrawFn) -> str:
    account = draw(accounts)
    kind = draw(st.sampled_from(["user", "role", "assumed-role", "idc-session", "root", "federated"]))
    name = draw(names)
    if kind == "root":
        return f"arn:aws:iam::{account}:root"
    if kind == "federated":
        return f"arn:aws:sts::{account}:federated-user/{name}"
    if kind == "idc-session":
        return f"arn:aws:sts::{account}:assumed-role/AWSReservedSSO_{name}/{draw(names)}"
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
    # Deliberately changed: two session names of an ordinary role no longer make two people, since
    # whoever assumes the role picks the session name.
    bare = parse_identity(f"arn:aws:iam::111111111111:role/{role}")
    one = parse_identity(f"arn:aws:sts::111111111111:assumed-role/{role}/{s1}")
    two = parse_identity(f"arn:aws:sts::111111111111:assumed-role/{role}/{s2}")
    assert may_be_same(bare, one)
    assert may_be_same(one, two)


def sts(role: str, session: str, account: str = "111111111111") -> Identity | None:
    return parse_identity(f"arn:aws:sts::{account}:assumed-role/{role}/{session}")


@given(names, names)
def test_idc_sessions_are_the_same_person_iff_the_session_names_are(s1: str, s2: str) -> None:
    ops, approvers = "AWSReservedSSO_Ops_0123456789abcdef", "AWSReservedSSO_Approvers_fedcba9876543210"
    same = s1.lower() == s2.lower()
    assert may_be_same(sts(ops, s1), sts(ops, s2)) == same
    assert may_be_same(sts(ops, s1), sts(approvers, s2)) == same
    assert may_be_same(sts(ops, s1), sts(approvers, s2, "222222222222")) == same


def test_one_idc_user_in_two_permission_sets_is_one_person() -> None:
    requester = sts("AWSReservedSSO_Ops_0123456789abcdef", "alice@example.com")
    approver = sts("AWSReservedSSO_Approvers_fedcba9876543210", "Alice@Example.com")
    assert IDC_ROLE_PREFIX == "AWSReservedSSO_"
    assert may_be_same(requester, approver)
    assert not may_be_same(requester, sts("AWSReservedSSO_Approvers_fedcba9876543210", "bob@example.com"))


def test_two_session_names_of_an_ordinary_role_may_be_one_person() -> None:
    assert may_be_same(sts("Approvers", "bob"), sts("Approvers", "carol"))
    assert may_be_same(sts("Approvers", "bob"), sts("approvers", "bob-again"))
    # Different ordinary roles are different principals, unless their session names are equal (the
    # assumer picks them: one person may use the same name in both; fail closed).
    assert not may_be_same(sts("Approvers", "bob"), sts("Security", "carol"))
    assert not may_be_same(sts("Approvers", "bob"), sts("AWSReservedSSO_Ops_1", "carol"))
    assert may_be_same(sts("Approvers", "bob"), sts("Security", "bob"))
    assert may_be_same(sts("Approvers", "bob"), sts("AWSReservedSSO_Ops_1", "bob"))
    # One role name in two accounts of the stack: the native path treats them as one principal.
    assert may_be_same(sts("Approvers", "bob", "222222222222"), sts("Approvers", "carol"))


def test_a_bare_idc_role_is_only_its_own_sessions() -> None:
    bare = parse_identity(
        "arn:aws:iam::111111111111:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Ops_1"
    )
    assert may_be_same(bare, sts("AWSReservedSSO_Ops_1", "alice@example.com"))
    assert not may_be_same(bare, sts("AWSReservedSSO_Other_2", "alice@example.com"))


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


@pytest.mark.parametrize(
    "anyone",
    ["arn:aws:iam::111111111111:root", "arn:aws:sts::111111111111:federated-user/x"],
    ids=["root", "federated-user"],
)
def test_root_and_federated_users_may_be_anyone(anyone: str) -> None:
    """Root acts as anything in its account; a federated user's name is picked by whoever called
    sts:GetFederationToken (an IAM user or root). Same-named principals across accounts are one person,
    so "anyone in the account" is "maybe anyone"."""
    for other in (
        "arn:aws:iam::111111111111:user/alice",
        "arn:aws:iam::111111111111:user/x",
        "arn:aws:iam::222222222222:user/alice",
        "arn:aws:sts::222222222222:assumed-role/Ops/carol",
    ):
        assert may_be_same(parse_identity(anyone), parse_identity(other))
    assert not may_be_same(parse_identity(anyone), parse_identity("arn:aws-cn:iam::111111111111:user/x"))


def test_same_named_principals_in_two_accounts_may_be_one_person() -> None:
    """Issue item 6: the native path gives engine-account bob the access of member-account bob."""
    engine_bob = parse_identity("arn:aws:iam::111111111111:user/bob")
    member_bob = parse_identity("arn:aws:iam::222222222222:user/bob")
    assert may_be_same(engine_bob, member_bob)
    assert may_be_same(
        parse_identity("arn:aws:sts::111111111111:assumed-role/Ops/x"),
        parse_identity("arn:aws:iam::222222222222:role/Ops"),
    )
    assert not may_be_same(engine_bob, parse_identity("arn:aws:iam::222222222222:user/carol"))
    assert not may_be_same(engine_bob, parse_identity("arn:aws:iam::222222222222:role/bob"))


def test_a_user_and_a_role_session_named_after_them_may_be_one_person() -> None:
    """Issue item 9: IAM user alice who can assume an approver role (trust policies should require
    sts:RoleSessionName = ${aws:username}, or sts:SourceIdentity) is alice in both."""
    alice = parse_identity("arn:aws:iam::111111111111:user/alice")
    assert may_be_same(alice, sts("Approver", "alice"))
    assert may_be_same(alice, sts("Approver", "Alice", "222222222222"))
    assert not may_be_same(alice, sts("Approver", "bob"))


def test_a_source_identity_is_the_person_across_identities() -> None:
    """Where sts:SourceIdentity is known, two identities carrying the same one are one person."""
    one = replace(sts("Approver", "x"), source_identity="alice")  # type: ignore[type-var]
    two = replace(sts("Ops", "y", "222222222222"), source_identity="ALICE")  # type: ignore[type-var]
    assert may_be_same(one, two)
    assert may_be_same(one, parse_identity("arn:aws:iam::111111111111:user/alice"))
    assert not may_be_same(one, replace(two, source_identity="bob"))
    assert person_key(one) == person_key(two)


def test_names_compare_case_insensitively() -> None:
    # IAM names are unique case-insensitively: "Alice" and "alice" cannot both exist.
    assert may_be_same(
        parse_identity("arn:aws:iam::111111111111:user/Alice"),
        parse_identity("arn:aws:iam::111111111111:user/alice"),
    )


def test_person_key_follows_who_may_be_the_same_person() -> None:
    """Per-person quotas count one person once, however they sign in, as may_be_same sees them."""

    def key(arn: str) -> str:
        identity = parse_identity(arn)
        assert identity is not None
        return person_key(identity)

    ops = "arn:aws:sts::123456789012:assumed-role/ops"
    assert key(f"{ops}/alice") == key(f"{ops}/alice2") == key("arn:aws:iam::123456789012:role/ops")
    sso = "arn:aws:sts::{}:assumed-role/AWSReservedSSO_{}_0123456789abcdef/alice@example.com"
    assert key(sso.format("123456789012", "Ops")) == key(sso.format("210987654321", "Admin"))
    assert key(sso.format("123456789012", "Ops")) != key(
        sso.format("123456789012", "Ops").replace("alice", "bob")
    )
    assert key("arn:aws:iam::123456789012:user/alice") != key("arn:aws:iam::123456789012:user/bob")
    assert key("arn:aws:iam::123456789012:user/alice") != key(f"{ops}/alice")
    # One person across the stack's accounts.
    assert key("arn:aws:iam::123456789012:user/alice") == key("arn:aws:iam::210987654321:user/alice")
