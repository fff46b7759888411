"""The README's two kit snippets run as printed (server in one process, client in another)."""
import re
import socket
import subprocess
import sys

import pytest

from conftest import ROOT


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(60)
def test_server_and_client_snippets_work_together(tmp_path):
    port = str(free_port())  # the snippets use 8200; any free port will do here
    server_code, client_code = (code.replace("8200", port) for code in snippets()[:2])
    (tmp_path / "server.py").write_text(server_code)
    (tmp_path / "client.py").write_text(client_code)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    server = subprocess.Popen([sys.executable, str(tmp_path / "server.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert "serving at http://127.0.0.1:" in server.stdout.readline()  # ready once it says so
        client = subprocess.run([sys.executable, str(tmp_path / "client.py")], capture_output=True,
                                text=True, env=env, timeout=30)
        assert client.stdout.strip() == "HELLO STREAMING WORLD", client.stdout + client.stderr
    finally:
        server.communicate("\n", timeout=10)  # "press Enter to stop"
    assert server.returncode == 0
