"""Seed-shaped rows: how each backend's langchain_community handler laid out its records."""
