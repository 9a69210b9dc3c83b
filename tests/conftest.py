"""Settings for the whole test session."""

import torch


def pytest_configure(config):
    # The tiny models run faster on one thread than on two contending ones on a 2-core CI machine, and one
    # setting for the session keeps every test file's timing and numerics alike.
    torch.set_num_threads(1)
