"""kdlib.warm: stage jobs forked from a server that has imported torch run exactly as they would cold."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

# A stage that shows where it ran (torch already imported = a fork of the server) and everything it was handed.
PROBE = textwrap.dedent('''\
    """A probe stage."""
    from kdlib import warm

    warm.delegate()

    import json, os, sys, time
    warm_start = "torch" in sys.modules
    if sys.argv[1] == "sleep":
        open("sleeping", "w").close()
        time.sleep(60)
        open("woke", "w").close()
    import torch
    print(json.dumps({"warm": warm_start, "argv": sys.argv, "cwd": os.getcwd(), "env": os.environ.get("PROBE"),
                      "threads": torch.get_num_threads(), "path0": sys.path[0], "nested": "KDLIB_WARM" in os.environ}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[2]))
''')


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One warm server (its start-up is the cost) running every probe of this module, in order, with kdlib from a
    copy the last probes edit. Each probe's JSON line, then `status N` where the script reports it."""
    ws = tmp_path_factory.mktemp("warm")
    (ws / "stages").mkdir()
    (ws / "stages" / "probe.py").write_text(PROBE)
    (ws / "sub").mkdir()
    shutil.copytree(REPO / "kdlib", ws / "kdlib", ignore=shutil.ignore_patterns("__pycache__"))  # a copy to edit
    script = ('(cd sub && PROBE=x OMP_NUM_THREADS=1 python ../stages/probe.py "a b" 3); echo "status $?"; '
              'PROBE=y OMP_NUM_THREADS=2 python stages/probe.py c 0 2>/dev/null; echo "status $?"; '
              # a stage killed (Snakemake cancelling its job) takes its worker with it
              'python stages/probe.py sleep 0 & while [ ! -e sleeping ]; do sleep 0.1; done; '
              'kill -TERM $!; wait $!; echo "status $?"; sleep 1; '
              # kdlib edited after the server imported it: later jobs start cold
              "echo '# edited' >> kdlib/paths.py; python stages/probe.py a 0; python stages/probe.py a 0")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ws), "HOME": str(ws)}
    return ws, subprocess.run([sys.executable, "-m", "kdlib.warm", "bash", "-c", script], cwd=ws, env=env,
                              capture_output=True, text=True, timeout=240)


def test_a_warm_job_gets_its_arguments_folder_environment_streams_and_status_and_stops_with_its_stage(session):
    ws, done = session
    lines = done.stdout.splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[2])
    assert first == {"warm": True, "argv": ["../stages/probe.py", "a b", "3"], "cwd": str(ws / "sub"), "env": "x",
                     "threads": 1, "path0": str(ws / "stages"), "nested": False}
    assert lines[1] == "status 3" and lines[3] == "status 0"
    assert second["warm"] and second["env"] == "y" and second["threads"] == 2 and second["cwd"] == str(ws)
    assert done.stderr.count("to stderr") == 3, done.stderr  # the second probe's went to /dev/null
    assert lines[4] == "status 143"  # the worker's SIGTERM status (128 + 15), passed on by the stage
    assert (ws / "sleeping").exists() and not (ws / "woke").exists()
    assert done.returncode == 0


def test_a_job_runs_cold_without_a_server_or_after_a_kdlib_edit(session, tmp_path):
    ws, done = session
    assert [json.loads(line)["warm"] for line in done.stdout.splitlines()[5:]] == [False, False]
    assert done.stderr.count(f"kdlib.warm: kdlib: {ws}/kdlib/paths.py changed since the server started; such jobs "
                             "start cold") == 1, done.stderr
    cold = subprocess.run([sys.executable, str(ws / "stages/probe.py"), "a", "0"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "KDLIB_WARM": str(tmp_path / "no-such-socket")})
    assert json.loads(cold.stdout.splitlines()[0])["warm"] is False
