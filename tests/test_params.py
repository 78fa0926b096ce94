"""Reading params.yaml as DVC writes it, with errors that name the key."""

import pytest

from mcap.errors import McapError
from mcap.params import load_params, positive_numbers


def test_floats_as_dvc_writes_them_from_set_param_are_read_as_numbers(tmp_path):
    # `dvc exp run -S 'train.learning_rates=[5e-5, 2.0e-5]'` stores the first as 5e-05: YAML 1.2, a string in 1.1
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rates:\n  - 5e-05\n  - 2.0e-5\n  - 1.0e-4\n  name: 5e-05x\n  version: '5e-05'\n")
    train = load_params(path)["train"]
    assert train["learning_rates"] == [5e-5, 2e-5, 1e-4]
    assert positive_numbers({"train": train}, "train.learning_rates") == [5e-5, 2e-5, 1e-4]
    assert train["name"] == "5e-05x" and train["version"] == "5e-05"  # other strings, and quoted ones, stay strings


@pytest.mark.parametrize("rates", [[], ["fast"], [0.0], [True], 3e-5])
def test_a_learning_rate_grid_must_be_positive_numbers(rates):
    with pytest.raises(McapError, match="'train.learning_rates' must be"):
        positive_numbers({"train": {"learning_rates": rates}}, "train.learning_rates")
