"""`make airflow`: Airflow's own UI on this machine, with the stand-ins and connections preset.

Starts both stand-ins with the demo data, writes a known admin password, puts the
connections `moesif_default` and `segment_default` into Airflow's database (Admin >
Connections shows them, with a working Test button), and runs `airflow standalone`
(SQLite, LocalExecutor, parallelism 4) until Ctrl-C.
The demo data covers 2026-11-24 23:00 to 2026-11-25 02:00 UTC: trigger the
DAG with `start`/`end` in that span, or start a backfill over those dates.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

from .environment import (
    AIRFLOW,
    REPO,
    airflow_env,
    demo_dataset,
    dev_connections,
    import_connections,
    prepare_airflow,
    stand_ins,
)

HOME = REPO / ".airflow"
USER, PASSWORD = "admin", "admin"


def main() -> int:
    HOME.mkdir(exist_ok=True)
    # The simple auth manager reads this file at start instead of generating a password.
    (HOME / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({USER: PASSWORD}))
    with stand_ins(demo_dataset()) as (moesif, segment):
        # Airflow keeps the Connections page's Test button off unless this says Enabled.
        env = airflow_env(HOME, AIRFLOW__CORE__PARALLELISM="4",
                          AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin",
                          AIRFLOW__CORE__TEST_CONNECTION="Enabled")
        prepare_airflow(env)
        import_connections(env, dev_connections(moesif.url, segment.url))
        print(f"Moesif stand-in {moesif.url}, Segment stand-in {segment.url}")
        print(f"Airflow UI: http://localhost:8080  (user {USER!r}, password {PASSWORD!r}); "
              "Ctrl-C stops everything.", flush=True)
        process = subprocess.Popen([AIRFLOW, "standalone"], env=env, start_new_session=True)
        signal.signal(signal.SIGTERM, _stop)
        try:
            return process.wait()
        except (KeyboardInterrupt, SystemExit):
            return 0
        finally:
            # standalone runs its components in its own process group: stop them all.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
