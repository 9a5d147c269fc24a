"""Airflow DAG `perilflow_algorithm_task`: built in perilflow.operators.algorithms (see its docstring)."""

from perilflow.operators.algorithms import algorithm_task_dag

dag = algorithm_task_dag()
