"""Governance: audit, provenance, PII, policy and risk (the EU AI Act risk tier of a use case)."""
