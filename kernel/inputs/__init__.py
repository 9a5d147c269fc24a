"""Oasis input-file generation from OED exposure (location, account, reinsurance)."""
