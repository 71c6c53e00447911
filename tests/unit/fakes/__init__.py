"""In-memory fakes of SessionGate's ports for the fast unit tier."""
