"""The shell tools print escape codes only to a terminal (tools/_style.sh)."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAY = f'. "{ROOT}/tools/_style.sh"; say "nodes up"'


def test_say_into_a_pipe_is_plain_text() -> None:
    out = subprocess.run(["bash", "-c", SAY], capture_output=True, text=True, check=True,
                         env=dict(os.environ, TERM="xterm")).stdout
    assert out == "\n== nodes up\n"


def _on_a_terminal(env: dict[str, str]) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout is the pty
        os.execvpe("bash", ["bash", "-c", SAY], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:  # EIO once the child has gone
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks)


def test_say_on_a_terminal_is_bold_unless_no_color() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert b"\x1b[1m== nodes up\x1b[0m" in _on_a_terminal(dict(env, TERM="xterm"))
    assert b"\x1b" not in _on_a_terminal(dict(env, TERM="xterm", NO_COLOR="1"))


def test_demo_uses_it() -> None:
    demo = (ROOT / "tools/demo").read_text()
    assert ". tools/_style.sh" in demo and "\\033" not in demo


def _complete(words: str, cword: int) -> list[str]:
    import sys
    command = Path(sys.executable).parent / "shareddisk"
    env = dict(os.environ, _SHAREDDISK_COMPLETE="bash_complete", COMP_WORDS=words,
               COMP_CWORD=str(cword))
    return subprocess.run([str(command)], capture_output=True, text=True, env=env,
                          check=True).stdout.split()


def test_shell_completion_completes_commands_and_device_paths() -> None:
    assert "plain,resource" in _complete("shareddisk res", 1)
    # bash completes the path itself when told "file" (complete -o default)
    for words in ("shareddisk status ar", "shareddisk resource add ar", "shareddisk run ar"):
        assert _complete(words, len(words.split()) - 1) == ["file,ar"], words
    assert _complete("shareddisk resource add area.img sg", 4) == []  # NAME: no paths


def test_op_shows_progress_on_a_terminal_while_it_waits(tmp_path: Path) -> None:
    """`op` on a terminal draws a bar on stderr while the owner has not committed;
    into a pipe it prints nothing but its result (here: it times out, exit 5)."""
    import sys
    command = str(Path(sys.executable).parent / "shareddisk")
    img = str(tmp_path / "a.img")
    subprocess.run([command, "init", img, "--nodes", "2", "--size", "4M"], check=True,
                   capture_output=True)
    subprocess.run([command, "resource", "add", img, "sg1", "--type", "storage-group",
                    "--attr", f"data_devices:list={tmp_path / 'data.img'}",
                    "--node-id", "1"], check=True, capture_output=True)
    # Pretend node 1 owns it online (no daemon runs: nobody will commit).
    subprocess.run([sys.executable, "-c", f"""
from shareddisk.area import Area
from shareddisk.attributes import read_stored, guarded_write
from shareddisk.clock import SystemClock
from shareddisk.device import open_device
from shareddisk.format.resource import ResourceState
from shareddisk.membership import NodeIncarnation
from shareddisk.session import Session
from dataclasses import replace
with open_device({img!r}, writable=True) as dev:
    area = Area.open(dev)
    with Session(area, 1, SystemClock()) as s, s.leased(0) as gen:
        cur = read_stored(area, 0).record
        new = replace(cur, state=ResourceState.ONLINE, owner_host=NodeIncarnation(1, 1, 'node1'))
        guarded_write(area, s.leases, s.holder, gen, new, 0, cur.version)
"""], check=True, capture_output=True)
    args = [command, "op", img, "sg1", "create-volume", "v1", "--size", "1M", "--timeout", "2",
            "--node-id", "1"]
    piped = subprocess.run(args, capture_output=True, text=True)
    assert piped.returncode == 5 and "\x1b" not in piped.stderr, piped.stderr
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(command, args, dict(os.environ, TERM="xterm", COLUMNS="100"))
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 5, text
    assert "create-volume on node 1" in text and "waiting for the owner" in text, text
