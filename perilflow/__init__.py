"""Perilflow: an Oasis-compatible catastrophe-loss platform on Apache Airflow 3."""

__version__ = "0.1.0"
