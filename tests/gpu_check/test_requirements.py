"""requirements/gpu-node.txt (the offline install's list) is pyproject's runtime dependencies without torch and
Triton, exactly: a changed pin in pyproject.toml fails here until the file is regenerated."""
import tomllib

from tessera.gpu_check.requirements import (CHECKED_IN, PYPROJECT, node_requirements, requirement_name,
                                            requirements_text)


def test_checked_in_file_matches_pyproject():
    assert CHECKED_IN.read_text() == requirements_text(), \
        "pyproject.toml changed: run `python tessera/gpu_check/requirements.py --write`"


def test_everything_but_torch_and_triton_with_its_pin():
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    node = node_requirements()
    assert {requirement_name(d) for d in deps} - {requirement_name(d) for d in node} == {"torch", "triton"}
    assert all("==" in d for d in node)


def test_requirement_names_are_normalised():
    assert requirement_name("Hydra_Core==1.3.8  # x") == "hydra-core"
    assert requirement_name("jinja2>=3") == "jinja2"
