"""The CLI group: help, show-config, and project errors without a traceback."""

from click.testing import CliRunner

from autolabel.cli import main
from autolabel.errors import EXIT_USER_ERROR


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "show-config" in result.output


def test_show_config_prints_resolved_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nout_dir = 'runs/x'\n")
    result = CliRunner().invoke(main, ["show-config", str(path), "--set", "train.lr=0.02"])
    assert result.exit_code == 0, result.output
    assert "lr = 0.02" in result.output
    assert f'out_dir = "{(tmp_path / "runs" / "x").resolve()}"' in result.output


def test_user_error_is_one_line_and_exit_code(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 'fast'\n")
    result = CliRunner().invoke(main, ["show-config", str(path)])
    assert result.exit_code == EXIT_USER_ERROR
    assert "Error:" in result.output and "train.lr" in result.output
    assert "Traceback" not in result.output
