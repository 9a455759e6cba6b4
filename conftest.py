"""Doctest collection of the package: framework modules only in sessions that test them."""

from tests.backends import selected_backends

_SELECTED = selected_backends()
_FRAMEWORK_MODULES = {
    "jax": ["lsr/jax/*"],
    "torch": ["lsr/torch/*"],
    "tensorflow": ["lsr/tensorflow/*", "lsr/keras/*"],
}
collect_ignore_glob = ["benchmarks/*", "noxfile.py", "lsr/tutorial/*"]
for _name, _patterns in _FRAMEWORK_MODULES.items():
    if _name not in _SELECTED:
        collect_ignore_glob += _patterns
