"""The native front door: access requests over the IAM-authorised API.

``records`` (state machine), ``caller``, ``inputs``, ``ids``, ``errors`` (refusals, no HTTP status),
``policy`` (approval rules), ``service`` (one module per job: ``creating``, ``deciding``, ``revoking``,
``extending``, ``reads``, ``sweep``, over ``status``, ``ending``, ``rules``, ``signing``, ``notices``,
``deps``), ``verifier`` (re-checked at grant time) and ``http`` (routes and the status of each refusal).
"""
