"""Perilflow loss engine: Oasis file formats, financial module, GUL, RI, summaries and ORD outputs.

Runs inside model-worker images with numpy, numba, pandas, pyarrow and ods-tools only.
Never imports Airflow.
"""
