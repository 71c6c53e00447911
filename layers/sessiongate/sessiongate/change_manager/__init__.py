"""The Change Manager front door: interpret change requests, hand approvals to the core, verify them."""
