"""The supported-version gate of the env phase: parsing and one clear message per component too old."""
import pytest

from tessera.gpu_check.versions import parse_version, too_old, version_problems


@pytest.mark.parametrize("text,expected", [("2.11.0+cu128", (2, 11, 0)), ("3.6.0rc1", (3, 6, 0)),
                                           ("2.5", (2, 5)), ("v3.1.0", (3, 1, 0)), ("2.13.0.dev20260101", (2, 13, 0))])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_too_old_compares_the_claimed_precision_only():
    assert not too_old((2, 5, 0), (2, 5)) and not too_old((3, 0), (3, 0)) and too_old((2, 4, 9), (2, 5))


def test_the_node_of_the_issue_is_supported():
    assert version_problems("3.12.3", "2.11.0+cu128", "3.6.0") == []


def test_old_torch_and_triton_are_refused_with_the_reason():
    problems = version_problems("3.12.3", "2.4.1+cu121", "2.3.1")
    assert len(problems) == 2
    assert "torch 2.4.1+cu121 is older than the supported minimum 2.5" in problems[0] and "enable_gqa" in problems[0]
    assert "triton 2.3.1" in problems[1] and "input_precision" in problems[1]
    assert "not installed" in version_problems("3.11.7", "2.13.0", None)[0]
    assert "Python >= 3.11" in version_problems("3.10.12", "2.13.0", "3.7.1")[0]
