"""Airflow DAG `perilflow_losses_generation`: built in perilflow.operators.workflows (see its docstring)."""

from perilflow.operators.workflows import losses_generation_dag

dag = losses_generation_dag()
