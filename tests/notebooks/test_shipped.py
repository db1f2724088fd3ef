"""The notebooks are committed clean: no outputs or execution counts, and a `parameters` cell first among code cells."""
import nbformat
import pytest

from tests.notebooks.execute import NOTEBOOKS


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_shipped_without_outputs_and_with_parameters_first(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"strip the outputs of {path.name}"
    assert "parameters" in code[0].metadata.get("tags", [])
