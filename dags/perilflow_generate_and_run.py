"""Airflow DAG `perilflow_generate_and_run`: built in perilflow.operators.workflows (see its docstring)."""

from perilflow.operators.workflows import generate_and_run_dag

dag = generate_and_run_dag()
