"""Regression tests for the numbered cases of issue 13: each hostile input is one clean error (exit 2, one line),
ends in time, and changes no file but the outputs it names. The whole catalogue (142 kinds of cases) is
``python tests/hostile_inputs.py``; these are the ones the issue numbered."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile_inputs import cases, make_world, run_case

NUMBERED = [c for c in cases() if c.issue]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return make_world(root, artifact_cache), artifact_cache, root


def test_every_numbered_case_is_covered():
    assert {c.issue for c in NUMBERED} == set(range(1, 28))


@pytest.mark.parametrize("case", NUMBERED, ids=[f"{c.issue:02d}-{c.name}" for c in NUMBERED])
def test_numbered_case(case, world):
    out = run_case(case, *world)
    assert out.ok, f"{case.name}: {out.why}"
