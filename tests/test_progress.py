"""Progress bars: drawn (throttled) on a terminal, never written to a log file or a pipe, which get one line per
logging step instead."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import struct
import subprocess
import sys
import termios

import tqdm.std
from conftest import ENV, REPO

from core.progress import progress_bar

REDRAW = re.compile(r"\r(?!\n)")  # a bar redraw; a terminal turns each newline into \r\n, which is not one


def open_terminal() -> tuple[int, int]:
    """A pseudo-terminal (master, slave) of 80 columns, as a person's terminal would be."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    return master, slave


def read_terminal(master: int) -> str:
    """Everything written to a pseudo-terminal until its other end is closed."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the other end
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_off_a_terminal_nothing_is_drawn_and_a_logging_step_is_one_line_per_tenth_of_the_job(caplog):
    stream = io.StringIO()  # what a log file or a pipe is to the bar: no terminal
    with caplog.at_level(logging.INFO, logger="core.progress"):
        bar = progress_bar(total=500, desc="level 0", file=stream)
        for step in range(1, 501):
            bar.update()
            if step % 10 == 0:  # fifty logging steps: one line per tenth of the job is kept, and the last
                bar.set_postfix({"loss": 1.0 / step})
        bar.close()
        for _ in progress_bar(range(7), desc="evaluate", unit="batch", file=stream):
            pass
    assert stream.getvalue() == ""
    assert [record.getMessage() for record in caplog.records] == [
        f"level 0: {step}/500 it ({step // 5}%): loss={1.0 / step:.3g}" for step in range(10, 501, 50)] + [
        "level 0: 500/500 it (100%): loss=0.002"]


def test_a_disabled_bar_logs_nothing_either(caplog):
    """disable=True (every process but the first) keeps it silent everywhere, log included."""
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="core.progress"):
        bar = progress_bar(total=10, desc="rank 1", file=stream, disable=True)
        bar.update(10)
        bar.set_postfix({"loss": 0.5})
        bar.close()
    assert stream.getvalue() == "" and not caplog.records


def test_on_a_terminal_the_bar_redraws_at_most_once_a_second(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])  # tqdm's clock: 100 steps over 10 simulated seconds
    master, slave = open_terminal()
    try:
        with os.fdopen(slave, "w", closefd=True) as terminal:
            bar = progress_bar(total=100, desc="faces", file=terminal)
            for _ in range(100):
                clock[0] += 0.1
                bar.update()
            bar.set_postfix({"loss": 0.25})
            bar.close()
        text = read_terminal(master)
    finally:
        os.close(master)
    redraws = len(REDRAW.findall(text))
    assert 5 <= redraws <= 15, text  # about one a second; tqdm's own default (0.1 s) would redraw 100 times
    assert "100/100" in text and "loss=0.25" in text


def run_generate_faces(out: str, stderr: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workflow.cli", "generate-faces", "--out", out, "--count", "6"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=ENV, cwd=REPO)


def test_a_real_command_draws_its_bar_on_a_terminal_but_not_into_a_log(tmp_path):
    piped = run_generate_faces(str(tmp_path / "piped"), subprocess.PIPE)
    _, log = piped.communicate(timeout=300)
    assert piped.returncode == 0, log
    assert "\r" not in log.decode() and "wrote 6 synthetic faces" in log.decode()

    master, slave = open_terminal()
    try:
        on_terminal = run_generate_faces(str(tmp_path / "terminal"), slave)
        os.close(slave)
        text = read_terminal(master)
        assert on_terminal.wait(timeout=300) == 0, text
    finally:
        os.close(master)
    assert REDRAW.search(text) and "6/6" in text, text
