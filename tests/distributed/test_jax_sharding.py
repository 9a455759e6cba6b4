"""JAX on 8 simulated CPU devices: sharded jit, the HLO check, vocab-parallel shard_map.

XLA fixes the number of host devices when JAX starts, so the cases
(tests/distributed/jax_sharding_cases.py) run in a fresh pytest process with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``; this test requires every one of
them to run and pass (a skipped or missing case fails it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("jax_sharding_cases.py")
EXPECTED_GROUPS = (
    "test_jitted_loss_on_sharded_logits_equals_single_device_and_gathers_nothing",
    "test_detector_flags_programs_that_gather_the_logits",
    "test_vocab_parallel_equals_unsharded",
    "test_vocab_parallel_aux_equals_reference",
    "test_vocab_parallel_bad_input",
)


def test_jax_cases_pass_on_eight_simulated_devices(tmp_path):
    report = tmp_path / "report.xml"
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["LSR_BACKENDS"] = "jax"
    env["JAX_PLATFORMS"] = "cpu"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            str(CASES.relative_to(ROOT)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout[-6000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, output
    suite = ElementTree.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, output)
    names = [case.get("name") for case in suite.iter("testcase")]
    for group in EXPECTED_GROUPS:
        assert any(name.startswith(group) for name in names), (group, names)
    assert counts["tests"] >= 17, (counts, output)
