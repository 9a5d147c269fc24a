"""Airflow-side task code: the model-step operator, storage paths, chunk planning and params."""
