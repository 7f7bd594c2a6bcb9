"""Keep Segment's user profiles in step with Moesif.

Rooms follow the flow: ``moesif`` (the source), ``pipeline`` (extract, mapping, transform,
plan, staging), ``segment`` (the destination), ``store`` (the audit and its history),
``ops`` (CLI, doctor), around a small kernel (``errors``, ``settings``, ``window``,
``retry``, ``codec``, ``chunking``). ``sync`` holds the stage functions the DAG calls, and
only the ``airflow`` room imports Airflow. The DAG in ``dags/moesif_to_segment.py`` wires
it up.
"""

DISTRIBUTION = "moesif-segment-sync"
__version__ = "0.1.0"
