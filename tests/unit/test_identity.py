"""Separation of duties rests on identity comparison: property-test it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sessiongate.identity import IDC_ROLE_PREFIX, Identity, may_be_same, parse_identity

names = st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,20}", fullmatch=True)
accounts = st.sampled_from(["111111111111", "222222222222"])


@st.composite
def identities(draw: st.DrawFn) -> str:
    account = draw(accounts)
    kind = draw(st.sampled_from(["user", "role", "assumed-role", "idc-session", "root"]))
    name = draw(names)
    if kind == "root":
        return f"arn:aws:iam::{account}:root"
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
    # Different ordinary roles are different principals; an IdC-looking session name does not matter.
    assert not may_be_same(sts("Approvers", "bob"), sts("Security", "bob"))
    assert not may_be_same(sts("Approvers", "bob"), sts("AWSReservedSSO_Ops_1", "bob"))
    # Only the session names of IdC roles identify people: an ordinary role's are not compared.
    assert not may_be_same(sts("Approvers", "bob", "222222222222"), sts("Approvers", "bob"))


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


def test_person_key_follows_who_may_be_the_same_person() -> None:
    """Per-person quotas count one person once, however they sign in, as may_be_same sees them."""
    from sessiongate.identity import person_key

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
