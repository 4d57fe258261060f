"""The CI examples in docs/ci: they parse as YAML, every edgecnn command in them is one
the CLI accepts, the steps hand each other the right folders, and what the CI keeps
(JUnit file, report) is what validate writes."""
import shlex
from pathlib import Path

import click
import pytest
import yaml

from edgecnn.toolchain.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ci"


def _commands(name: str) -> tuple[dict, list[str]]:
    doc = yaml.safe_load((DOCS / name).read_text())
    if name.startswith("github"):
        steps = [s for job in doc["jobs"].values() for s in job["steps"]]
        lines = [s["run"] for s in steps if "run" in s]
    else:
        lines = [line for job in doc.values() if isinstance(job, dict) for line in job["script"]]
    return doc, [" ".join(line.split()) for line in lines]


def _parsed(command: str) -> tuple[str, dict]:
    """The subcommand and its parameters, as click parses them: a bad option fails here."""
    argv = shlex.split(command, comments=True)
    assert argv[0] == "edgecnn", command
    sub = cli.get_command(click.Context(cli), argv[1])
    assert sub is not None, command
    return argv[1], sub.make_context(argv[1], argv[2:]).params


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_example_is_valid(name):
    doc, lines = _commands(name)
    runs = dict(_parsed(c) for c in lines if c.startswith("edgecnn "))
    assert set(runs) == {"train", "export", "validate"}
    assert runs["export"]["run_dir"] == runs["train"]["out"]
    assert runs["validate"]["art_dirs"] == (runs["export"]["out"],)
    assert runs["validate"]["junit"] and runs["validate"]["report_dir"] and runs["validate"]["min_accuracy"]
    kept = Path(runs["validate"]["junit"]).parts[0]
    if name.startswith("github"):
        upload = next(s for s in doc["jobs"]["validate"]["steps"] if s.get("uses", "").startswith("actions/upload"))
        assert upload["if"] == "always()" and upload["with"]["path"].rstrip("/") == kept
    else:
        job = doc["edge-artifacts"]
        assert job["artifacts"]["reports"]["junit"] == runs["validate"]["junit"]
        assert job["artifacts"]["when"] == "always" and kept + "/" in job["artifacts"]["paths"]


def test_a_bad_option_would_be_caught():
    with pytest.raises(click.UsageError):
        _parsed("edgecnn validate artifacts/x --min-acuracy 90")
