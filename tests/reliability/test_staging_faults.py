"""A staging root that cannot be written, or fills up: the task fails with the path and the
reason, and leaves no half-written file.

Tests run as root, so file modes stop nothing. A root below a regular file
is refused by the kernel (ENOTDIR) for anyone. A full or read-only disk is a
real tmpfs of 64 KB mounted in a private mount namespace (``unshare``), which
only the child process running the extract sees and which vanishes with it.
Where namespaces are not allowed, a file-size limit (RLIMIT_FSIZE) stands in
for the full disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest

from moesif_segment_sync.errors import StagingError
from sandbox.datagen import generate
from sandbox.moesif import MoesifStandIn
from tests.conftest import REPO
from tests.reliability.support import MOESIF_KEY, RUN_ID, WINDOW, extract, make_run

# The extract, in a process of its own: it mounts the tiny disk first when asked to.
CHILD = textwrap.dedent("""
    import json, os, resource, signal, subprocess, sys
    args = json.loads(sys.argv[1])
    if args["mount"]:
        subprocess.run(["mount", "-t", "tmpfs", "-o", args["mount"], "tmpfs", args["disk"]],
                       check=True)
    else:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    from tests.reliability.support import extract, make_run
    from pathlib import Path
    from moesif_segment_sync.errors import StagingError
    run = make_run(Path(args["disk"]))
    try:
        extract(run, args["moesif"])
        outcome = {"error": None}
    except StagingError as exc:
        outcome = {"error": str(exc)}
    outcome["files"] = sorted(os.path.relpath(os.path.join(folder, name), args["disk"])
                              for folder, _, names in os.walk(args["disk"]) for name in names)
    print(json.dumps(outcome))
""")


def namespaces_allowed() -> bool:
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def extract_on_a_small_disk(disk, moesif_url: str, *, read_only: bool = False) -> dict:  # noqa: ANN001
    """Run the extract on a 64 KB disk (read-only when asked); its StagingError and files."""
    if namespaces_allowed():
        options = "size=64k" + (",ro" if read_only else "")
        command = ["unshare", "--mount", "--propagation", "private", sys.executable]
    else:
        assert not read_only, "a read-only disk needs a mount namespace"
        options, command = "", [sys.executable]
    args = {"mount": options, "disk": str(disk), "moesif": moesif_url}
    done = subprocess.run([*command, "-c", CHILD, json.dumps(args)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def moesif():
    window = (WINDOW.start, datetime(2026, 11, 25, 1, tzinfo=UTC))
    dataset = generate(1500, seed=8, start=window[0], end=window[1])  # ~400 KB staged
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as server:
        yield server


def test_a_staging_root_below_a_regular_file_fails_with_the_path_and_the_reason(tmp_path,
                                                                              moesif):
    (tmp_path / "a-file").write_text("not a folder")
    run = make_run(tmp_path / "a-file")

    with pytest.raises(StagingError) as caught:
        extract(run, moesif.url)

    assert str(caught.value) == (f"cannot write {(tmp_path / 'a-file').as_uri()}/staging/"
                                 f"moesif_to_segment/{RUN_ID}/users.jsonl.gz: Not a directory")
    assert moesif.requests == []  # it failed before asking Moesif for anything


def test_a_full_staging_disk_fails_with_the_path_and_the_reason(tmp_path, moesif):
    outcome = extract_on_a_small_disk(tmp_path, moesif.url)

    reason = "No space left on device" if namespaces_allowed() else "File too large"
    assert outcome["error"] == (f"cannot write {tmp_path.as_uri()}/staging/moesif_to_segment/"
                                f"{RUN_ID}/users.jsonl.gz: {reason}")
    assert outcome["files"] == []  # the partial file is gone


def test_a_read_only_staging_disk_fails_with_the_path_and_the_reason(tmp_path, moesif):
    outcome = extract_on_a_small_disk(tmp_path, moesif.url, read_only=True)

    assert outcome["error"] == (f"cannot write {tmp_path.as_uri()}/staging/moesif_to_segment/"
                                f"{RUN_ID}/users.jsonl.gz: Read-only file system")
    assert outcome["files"] == []
