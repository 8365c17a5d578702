"""Authentication (who is asking) and authorization (what HS_ADMIN values let them do)."""
