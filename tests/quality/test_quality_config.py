"""[classify] folds and its older spelling test_fraction."""

import pytest
from pydantic import ValidationError

from textbooklm.quality.config import ClassifyConfig


def test_test_fraction_means_folds_and_survives_a_saved_config():
    assert ClassifyConfig().folds == 5
    old = ClassifyConfig(test_fraction=0.3)
    assert old.folds == 3  # each fold holds out ~0.3 of the labels
    assert ClassifyConfig.model_validate(old.model_dump()).folds == 3  # run.json keeps both, agreeing
    assert ClassifyConfig(folds=4).folds == 4


def test_folds_that_contradict_test_fraction_are_an_error():
    with pytest.raises(ValidationError, match="folds = 5 but test_fraction = 0.3"):
        ClassifyConfig(folds=5, test_fraction=0.3)
    with pytest.raises(ValidationError):
        ClassifyConfig(folds=1)
