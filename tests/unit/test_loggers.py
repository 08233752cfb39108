"""The modules' loggers (shareddisk/loggers.py): made on first use, quiet by default."""

from __future__ import annotations

import logging
import subprocess
import sys

from shareddisk.loggers import logger


def test_a_module_logger_imports_logging_only_when_it_logs() -> None:
    code = ("import sys\n"
            "from shareddisk.loggers import logger\n"
            "log = logger('shareddisk.example')\n"
            "before = 'logging' in sys.modules\n"
            "log.warning('event=example')\n"
            "import logging\n"
            "quiet = [type(h).__name__ for h in logging.getLogger('shareddisk').handlers]\n"
            "print(before, quiet)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    # Not imported before the first line; then the library's top logger has a
    # NullHandler, so Python's last-resort handler printed nothing on stderr.
    assert done.stdout.strip() == "False ['NullHandler']"
    assert done.stderr == ""


def test_lines_reach_the_handlers_of_the_real_logger(caplog) -> None:
    log = logger("shareddisk.example.caplog")
    with caplog.at_level(logging.INFO, logger="shareddisk.example.caplog"):
        log.info("event=seen value=%d", 7)
    assert [(r.name, r.getMessage()) for r in caplog.records] == \
        [("shareddisk.example.caplog", "event=seen value=7")]
    assert log.name == "shareddisk.example.caplog"
    assert log.isEnabledFor(logging.WARNING)
