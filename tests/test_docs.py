"""The README and `docs` cannot drift from the code: the tables section is `docs` output, every config key
is in the reference table, and the first commands are the two a new user runs."""

from __future__ import annotations

import re
from pathlib import Path

from wootric_ingest.cli import docs, main
from wootric_ingest.config import _KEYS
from wootric_ingest.streams import STREAMS, leaves

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_readme_tables_section_is_exactly_the_docs_output():
    assert docs.splice(README) == README, (
        "README.md is stale: regenerate it with `python -m wootric_ingest.cli.docs README.md`"
    )


def test_docs_prints_the_reference_generated_from_the_stream_schemas(capsys):
    assert main(["docs"]) == 0
    out = capsys.readouterr().out
    assert out == docs.markdown()
    assert "| `last_response.survey.channel` | String | Survey channel used |" in out
    assert "| `settings.web_nps` | Boolean | Whether web NPS surveys are enabled |" in out
    assert "| `score` | Integer | Numeric score provided in the response |" in out
    assert "| `created_at` | String | When the response was created (ISO-8601 UTC) |" in out
    for name, stream in STREAMS.items():
        section = out.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        rows = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
        assert rows == [field for field, _ in leaves(stream.fields)]
        assert f"cursor `{stream.cursor_field}`" in section


def config_leaf_keys() -> set[str]:
    """Every key a user can write, spelt as the README spells it, from the validator's own key lists."""
    prefixes = {
        "": [""],
        "schedule": ["source.trigger.", "source.additional_full_sync."],
        "stream": ["streams.<stream>."],
    }
    sections = set(_KEYS) | {"source.trigger", "source.additional_full_sync", "streams"}
    return {
        prefix + key
        for section, keys in _KEYS.items()
        for prefix in prefixes.get(section, [f"{section}."])
        for key in keys
        if prefix + key not in sections
    }


def test_every_config_key_is_in_the_readme_reference_table():
    documented = set(re.findall(r"^\| `([a-z_.<>]+)` \|", README, flags=re.M))
    assert {"source.api.auth.password", "source.trigger.cron", "streams.<stream>.sync_type"} <= config_leaf_keys()
    assert config_leaf_keys() - documented == set()


def test_the_readme_starts_with_the_two_commands_a_new_user_runs():
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make run", "make test"]
