"""Ingest: models and images -> circuit artifacts on disk -> graph writes (neo4j driver)."""
