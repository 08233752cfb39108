"""The shipped Prometheus alert rules (tools/prometheus/shareddisk-rules.yml).

With ``promtool`` (Debian package ``prometheus``) installed: the rules pass
``promtool check rules``, and ``promtool test rules`` on
shareddisk-rules.test.yml shows each alert firing in the case it names and
silent in the healthy case beside it.  Without it those tests skip; the
checks that need no promtool still run: every alert has a firing case in the
test file, and every metric a rule reads is one the daemon exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "tools" / "prometheus"
RULES = RULES_DIR / "shareddisk-rules.yml"
RULES_TEST = RULES_DIR / "shareddisk-rules.test.yml"
METRICS_SOURCE = ROOT / "shareddisk" / "metrics.py"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")


def alert_names(rules_text: str) -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", rules_text, re.M)


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def explain(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, explain(done)
    assert f"{len(alert_names(RULES.read_text()))} rules found" in done.stdout, done.stdout


@needs_promtool
def test_each_alert_fires_in_the_case_it_names() -> None:
    done = promtool("test", "rules", RULES_TEST.name)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, explain(done)


@needs_promtool
def test_the_rule_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The test file tells a right rule from a wrong one: a rule that never fires fails it."""
    text = RULES.read_text()
    broken = text.replace("expr: shareddisk_quorum == 0", "expr: shareddisk_quorum == 2")
    assert broken != text
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    done = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert done.returncode != 0, explain(done)
    assert "ShareddiskQuorumLost" in done.stdout + done.stderr, explain(done)


def test_every_alert_has_a_case_where_it_fires() -> None:
    tests = RULES_TEST.read_text()
    # An expected firing: `alertname: X` followed by a non-empty exp_alerts list.
    firing = set(re.findall(r"alertname: (\w+)\n\s*exp_alerts:\s*\n\s*- exp_labels", tests))
    silent = set(re.findall(r"alertname: (\w+)\n\s*exp_alerts: \[\]", tests))
    names = set(alert_names(RULES.read_text()))
    assert names, "no alerts found in the rules file"
    assert names <= firing, f"alerts never shown firing: {sorted(names - firing)}"
    assert names <= silent, f"alerts never shown silent: {sorted(names - silent)}"


def test_rules_read_only_metrics_the_daemon_exports() -> None:
    exported = set(re.findall(r'"(shareddisk_\w+)"', METRICS_SOURCE.read_text()))
    used = set(re.findall(r"\b(shareddisk_\w+)", "\n".join(
        line for line in RULES.read_text().splitlines() if "expr:" in line or "rate(" in line)))
    assert used, "no shareddisk metric found in the rules"
    # A histogram's series end in _bucket, a counter's in _total (prometheus_client).
    families = {re.sub(r"_(bucket|total|sum|count)$", "", name) for name in used}
    assert families <= exported, f"metrics the daemon does not export: {families - exported}"


def test_operations_guide_points_at_the_rules() -> None:
    guide = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert "tools/prometheus/shareddisk-rules.yml" in guide
    for name in alert_names(RULES.read_text()):
        assert name in guide, f"{name} is not described in docs/OPERATIONS.md"
