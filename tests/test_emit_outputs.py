"""The record of outputs a cache has built, kept in the cache database beside the results."""

from __future__ import annotations

from specc.emit.outputs import forget_output, known_outputs, remember_output
from specc.generate.cache import Cache


def test_outputs_are_found_by_inputs_most_recent_first_never_inside_the_target(tmp_path):
    with Cache(tmp_path / "cache.sqlite") as cache:
        assert known_outputs(cache, "a", tmp_path / "new") == []
        for name in ("one", "two", "three"):
            remember_output(cache, "a", tmp_path / name)
        remember_output(cache, "b", tmp_path / "other")
        assert known_outputs(cache, "a", tmp_path / "new") == [tmp_path / n for n in ("three", "two", "one")]
        assert known_outputs(cache, "a", tmp_path / "two") == [tmp_path / "three", tmp_path / "one"]
        # A target inside a recorded output, or holding one, is never written from it.
        assert tmp_path / "one" not in known_outputs(cache, "a", tmp_path / "one" / "sub")
        assert known_outputs(cache, "a", tmp_path) == []
        forget_output(cache, "a", tmp_path / "three")
        assert known_outputs(cache, "a", tmp_path / "new") == [tmp_path / "two", tmp_path / "one"]
        remember_output(cache, "a", tmp_path / "one")  # built again: now the most recent
        assert known_outputs(cache, "a", tmp_path / "new")[0] == tmp_path / "one"
        assert len(cache) == 0  # the generations table is untouched
