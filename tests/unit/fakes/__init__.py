"""In-memory fakes of the ports, one module per front door or core part (no moto, no boto3 calls)."""
