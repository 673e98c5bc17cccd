"""Bad Ray addresses are one-line usage errors (a module of its own: it needs a process in
which no Ray instance is running yet, and test_executors keeps one for its module)."""

import pytest

from deepscope.errors import UsageError
from deepscope.executors import make_executor


@pytest.mark.parametrize(("address", "expected"), [
    ("", "--address is empty"),
    ("foo", "--address foo is not HOST:PORT"),
    ("ray://127.0.0.1:1", "pip install 'ray\\[client\\]'"),
])
def test_bad_ray_addresses_are_one_line_errors(address, expected):
    pytest.importorskip("ray", reason="install the extra: pip install -e '.[test,ray]'")
    import ray

    if ray.is_initialized():  # the module's shared instance would hide the address
        pytest.skip("a Ray instance is already running in this process")
    with pytest.raises(UsageError, match=expected):
        make_executor("ray", address=address)
