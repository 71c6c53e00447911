"""The native front door: access requests over the IAM-authorised API, their approval policy and records."""
