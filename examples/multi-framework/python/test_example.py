"""Tests run by the `py` stage of examples/multi-framework.yaml with pytest."""
import pytest


def test_common_sum():
    assert sum([1, 2, 3]) == 6


def test_fast_strings():
    assert "stage".upper() == "STAGE"


def test_full_sorting():
    assert sorted([3, 1, 2]) == [1, 2, 3]


@pytest.mark.skip(reason="not on this platform")
def test_full_platform():
    assert False
