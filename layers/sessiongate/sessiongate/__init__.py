"""SessionGate engine: approval-gated, time-boxed SSM Session Manager access.

Pure domain modules (``model``, ``identity``, ``slots``, ``guardrails``, ``changerequest``) hold the
rules and never call AWS; ``adapters`` are the only modules that call boto3; ``engine`` orchestrates
them; ``runtime`` wires settings and adapters for the Lambda handlers.
"""

__version__ = "0.1.0"
