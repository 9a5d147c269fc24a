"""Airflow DAG `perilflow_batch`: built in perilflow.operators.batch (see its docstring)."""

from perilflow.operators.batch import batch_dag

dag = batch_dag()
