"""Settings for the whole test session."""

from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    # The tiny models run faster on one thread than on two contending ones on a 2-core CI machine, and one
    # setting for the session keeps every test file's timing and numerics alike.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_city(tmp_path_factory):
    """``synthetic_city(train=, val=, extra=, size=(W, H), seed=, extra_fine=, version=)`` -> the root of a
    synthetic city (``version`` None: the generator's current one).

    One city per distinct request for the whole session, so modules asking for the same city share it. Treat it
    as read-only: copy it to change it.
    """
    from autolabel.synth import make_synthetic_city

    made: dict[tuple, Path] = {}

    def make(*, train: int = 1, val: int = 1, extra: int = 0, size: tuple[int, int] = (64, 32), seed: int = 0,
             extra_fine: bool = False, version: int | None = None) -> Path:  # fmt: skip
        key = (train, val, extra, tuple(size), seed, extra_fine, version)
        if key not in made:
            root = tmp_path_factory.mktemp("city")
            make_synthetic_city(root, train=train, val=val, extra=extra, size=tuple(size), seed=seed, workers=0,
                                extra_fine=extra_fine, **({} if version is None else {"version": version}))  # fmt: skip
            made[key] = root
        return made[key]

    return make
