"""The Perilflow Airflow plugin: REST API, product DB, auth and UI pages."""
