"""Airflow's ``[core] hostname_callable`` for the Celery end-to-end test.

Both Celery workers of the test run on this one machine, so the machine's name cannot tell
their task instances apart. Each worker is started with its own ``E2E_WORKER_HOSTNAME``;
the task runner reports this function's answer as the task instance's hostname (and
heartbeats with it). Processes without the variable get the usual fully qualified name.
"""

from __future__ import annotations

import os
import socket

ENV_VAR = "E2E_WORKER_HOSTNAME"


def worker_hostname() -> str:
    return os.environ.get(ENV_VAR) or socket.getfqdn()
