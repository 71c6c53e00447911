"""SessionGate engine: approval-gated, time-boxed SSM Session Manager access.

``core`` grants, revokes and reconciles; ``change_manager`` and ``access_requests`` are the two front
doors that hand it approvals; ``adapters`` are the only modules that call AWS; ``wiring`` builds what
each Lambda handler needs.
"""

__version__ = "0.1.0"
