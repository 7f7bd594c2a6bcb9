"""Keep Segment's user profiles in step with Moesif.

The package is plain Python: it knows nothing of Airflow except in
``airflow_bridge``. The DAG in ``dags/moesif_to_segment.py`` wires it up.
"""

DISTRIBUTION = "moesif-segment-sync"
__version__ = "0.1.0"
