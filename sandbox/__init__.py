"""Offline sandbox: the real SessionGate handlers on an in-process AWS (moto) with a virtual clock.

``template.yaml`` is the single source of truth: it is transformed with the SAM translator (offline),
its intrinsic functions resolved for a sandbox stack, and every resource the engine touches is created
in moto from that result. Events are routed with the template's own rule patterns, schedules fire on a
virtual clock, and "may P start a session on I?" is decided by an IAM policy evaluator (principalmapper)
over the managed policy from the template and P's tags as IAM holds them.
"""
