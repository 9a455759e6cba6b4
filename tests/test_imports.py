"""Import hygiene: lsr never imports a framework the user did not ask for.

Each check runs in a fresh interpreter, since this test process may already hold every
framework.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.backends import selected_backends

FRAMEWORKS = ("jax", "torch", "tensorflow", "keras")

CHECK = textwrap.dedent(
    """
    import sys
    {prelude}
    import {module}
    forbidden = {forbidden!r}
    loaded = sorted(name for name in forbidden if name in sys.modules)
    print(",".join(loaded))
    """
)


def loaded_frameworks(module: str, forbidden: tuple[str, ...], prelude: str = "") -> list[str]:
    """The forbidden frameworks present in sys.modules after importing ``module``."""
    script = CHECK.format(module=module, forbidden=forbidden, prelude=prelude)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    output = result.stdout.strip()
    return output.split(",") if output else []


def test_import_lsr_imports_no_framework():
    assert loaded_frameworks("lsr", FRAMEWORKS) == []


def test_the_check_can_fail():
    """The same check reports a framework that was imported (here by hand, beforehand)."""
    available = [name for name in ("torch", "jax", "tensorflow") if name in selected_backends()]
    framework = available[0] if available else "numpy"
    found = loaded_frameworks("lsr", (framework,), prelude=f"import {framework}")
    assert found == [framework]


ADAPTERS = {
    "jax": ("lsr.jax", ("torch", "tensorflow", "keras")),
    "torch": ("lsr.torch", ("jax", "tensorflow", "keras")),
    "tensorflow": ("lsr.tensorflow", ("jax", "torch")),
}


@pytest.mark.parametrize(
    "framework", [name for name in ADAPTERS if name in selected_backends()] or [None]
)
def test_adapter_imports_only_its_framework(framework):
    if framework is None:
        # Sessions without a framework still prove the generic check above ran.
        assert loaded_frameworks("lsr._functions", FRAMEWORKS) == []
        return
    module, forbidden = ADAPTERS[framework]
    # TensorFlow itself imports JAX when JAX is installed beside it; lsr is accountable
    # only for what it adds on top of the framework.
    by_framework_alone = set(loaded_frameworks(framework, forbidden))
    added = set(loaded_frameworks(module, forbidden)) - by_framework_alone
    assert added == set()
