"""What every script promises on the command line, checked for all of them at once."""
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = ["basic_streaming.py", "01_basic_streaming.py", "02_advanced_streaming.py",
           "03_streaming_llm_integration.py", "04_task_based_streaming.py", "05_streaming_ui_integration.py",
           "06_distributed_streaming.py", "core_streaming_test.py"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", SCRIPTS)
def test_piping_into_head_ends_the_run_quietly(script, tmp_path):
    """`python X.py | head -1`: no traceback; exit 141 (as if by SIGPIPE), or 0 if the output fitted
    in the pipe before head closed it."""
    args = "" if script == "core_streaming_test.py" else "--fast"
    errors = tmp_path / "stderr.txt"
    command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / script))} {args} 2>{errors} | head -1; "
               "exit ${PIPESTATUS[0]}")
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=110, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert result.stdout, "the first line reached head"
    assert errors.read_text() == ""
    assert result.returncode in (0, 141)
