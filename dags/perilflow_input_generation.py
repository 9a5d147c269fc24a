"""Airflow DAG `perilflow_input_generation`: built in perilflow.operators.workflows (see its docstring)."""

from perilflow.operators.workflows import input_generation_dag

dag = input_generation_dag()
