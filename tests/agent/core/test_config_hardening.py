"""Configuration a hostile or careless user gives is refused at once with one line naming it
(issue 17, items 4 and 10), never accepted as something else or failing later."""

import os

import pytest

from agent.core.config import load_config
from agent.core.errors import SealError


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"SEAL_ADAPT__EPOCHS": "true"}, "epochs must be a number, not true"),
        ({"SEAL_ADAPT__LEARNING_RATE": "false"}, "learning_rate must be a number, not false"),
        ({"SEAL_ADAPT__TARGET_MODULES": "[1, 2]"}, "target_modules: expected linear layer names"),
        ({"SEAL_ADAPT": "5"}, "SEAL_ADAPT names a whole section; set one field as SEAL_ADAPT__"),
        ({"SEAL_NETWORK__ALLOWED_NETWORKS": '["lan"]'}, "'lan' is not a network"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(environ, named):
    with pytest.raises(SealError) as err:
        load_config(environ=environ)
    assert named in str(err.value)
    assert "Value error" not in str(err.value)


def test_booleans_still_set_boolean_fields_and_home_is_not_a_section():
    cfg = load_config(environ={"SEAL_UPDATE__GATE": "false", "SEAL_HOME": "/data/seal"})
    assert cfg.update.gate is False


def test_a_folder_or_a_pipe_as_config_file_is_one_clear_error(tmp_path):
    with pytest.raises(SealError, match="config file .* is a folder, not a file"):
        load_config(tmp_path, environ={})
    fifo = tmp_path / "seal.toml"
    os.mkfifo(fifo)
    with pytest.raises(SealError, match="not a regular file"):
        load_config(fifo, environ={})  # returns at once: nothing writes to the pipe
