"""The grant core: grant, revoke and reconcile slot tags under the guardrails, whichever door asked."""
