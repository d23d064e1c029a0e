"""The live path: platforms' change notifications received, verified and stored durably (receiver, inbox)."""
