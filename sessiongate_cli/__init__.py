"""``sessiongate``: request, approve and use time-boxed Session Manager access from a terminal."""

__version__ = "0.1.0"
