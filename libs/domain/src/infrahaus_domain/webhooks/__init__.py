"""Signed webhooks: registration (`service.py`), the delivery outbox (`outbox.py`) and Standard Webhooks
signatures (`signing.py`). ADR 0016."""
