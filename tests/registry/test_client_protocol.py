"""Both registries implement the whole typed interface the CLI is written against."""

from __future__ import annotations

import inspect

import pytest

from registry.client import VERBS, LocalRegistry, Registry, RemoteRegistry

#: The interface's methods: every domain verb, and those that move files and run scans.
METHODS = sorted(
    name
    for name, member in inspect.getmembers(Registry, inspect.isfunction)
    if not name.startswith("_")
)


def test_the_interface_lists_every_verb_and_the_file_methods() -> None:
    assert set(VERBS) <= set(METHODS)
    for name in ("store_files", "admit_model", "admit_hf", "pull", "rescan_stored", "call"):
        assert name in METHODS


@pytest.mark.parametrize("implementation", [LocalRegistry, RemoteRegistry])
@pytest.mark.parametrize("name", METHODS)
def test_each_method_takes_the_interfaces_arguments(implementation: type, name: str) -> None:
    """Every parameter of the interface is accepted, positional ones in the same places."""
    wanted = inspect.signature(getattr(Registry, name))
    method = getattr(implementation, name, None)
    assert callable(method), f"{implementation.__name__} lacks {name}"
    got = inspect.signature(method)
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in got.parameters.values())
    positional = [p.name for p in got.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    for index, parameter in enumerate(wanted.parameters.values()):
        if parameter.kind is parameter.POSITIONAL_OR_KEYWORD:
            assert positional[index] == parameter.name, (implementation.__name__, name)
        elif parameter.kind is parameter.KEYWORD_ONLY:
            assert parameter.name in got.parameters or takes_any_keyword, (
                implementation.__name__,
                name,
                parameter.name,
            )


def test_call_runs_only_the_verbs() -> None:
    remote = RemoteRegistry("http://127.0.0.1:9", "token")
    try:
        with pytest.raises(AttributeError):
            remote.call("_request", "GET", "/", object)
        with pytest.raises(AttributeError):
            remote.call("close")
    finally:
        remote.close()
