import os, pathlib
from tests.dags.test_dag_e2e import *  # noqa
def test_where_logs(dag, world):
    run(dag)
    home = pathlib.Path(os.environ["AIRFLOW_HOME"])
    for p in sorted(home.rglob("*")):
        if p.is_file(): print(p.relative_to(home), p.stat().st_size)
