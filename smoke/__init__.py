"""Opt-in end-to-end smoke run of SessionGate on a real AWS account (``make smoke``).

``make smoke-plan`` prints what a run would create and call (no AWS call); ``make smoke-teardown``
removes whatever a crashed run left behind, from the local state file.
"""
