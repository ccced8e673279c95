"""Adapters of the rank tools to training frameworks (each behind its own optional extra)."""
