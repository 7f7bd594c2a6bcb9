"""Everything that imports Airflow: the ``stage`` decorator of the DAG's tasks, the run
``context`` (the ``Run`` of a task, Airflow's errors, metrics, Assets and lineage), the
``hooks`` and the ``provider`` info of the two connection types, the run-level ``alerts``,
``lineage`` and the history ``plugin``. Every other
room is plain Python. Importing this package is cheap (the DAG file does at parse time);
``context`` imports the pipeline, so it is imported where it is used."""

from .stage import stage

__all__ = ["context", "stage"]
