"""Everything that imports Airflow: the ``stage`` decorator of the DAG's tasks, and the run
``context`` (the ``Run`` of a task, the connections it reads, Airflow's errors). Every other
room is plain Python. Importing this package is cheap (the DAG file does at parse time);
``context`` imports the pipeline, so it is imported where it is used."""

from .stage import stage

__all__ = ["context", "stage"]
