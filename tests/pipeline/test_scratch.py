"""The transform's on-disk lookup tables: companies by id and the user ids already built."""

import tempfile

import pytest

from moesif_segment_sync.errors import ScratchError
from moesif_segment_sync.pipeline.scratch import Scratch


def test_the_first_company_staged_with_an_id_wins():
    with Scratch() as scratch:
        scratch.add_companies([("c1", b'{"id":"c1","name":"first"}', False)])
        scratch.add_companies([("c1", b'{"id":"c1","name":"second"}', True),
                               ("c2", b'{"id":"c2"}', False)])
        assert scratch.companies == 2
        assert sorted(scratch.company_lines(["c1", "c2", "c3"])) == [
            ("c1", b'{"id":"c1","name":"first"}', False), ("c2", b'{"id":"c2"}', False)]


def test_company_lookups_go_past_the_variables_one_statement_takes():
    ids = [f"c{n}" for n in range(12_000)]
    with Scratch() as scratch:
        scratch.add_companies((id_, b"{}", False) for id_ in ids)
        assert len(list(scratch.company_lines(ids))) == 12_000


def test_users_recorded_as_built_are_the_ones_built_before():
    with Scratch() as scratch:
        assert scratch.built_before(["u1", "u2"]) == set()
        scratch.record_built(["u1"])
        assert scratch.built_before(["u1", "u2", None, 7]) == {"u1"}


def test_ids_with_lone_surrogates_are_keys_like_any_other():
    odd = "u\udc80"
    with Scratch() as scratch:
        scratch.record_built([odd])
        scratch.add_companies([(odd, b"{}", True)])
        assert scratch.built_before([odd, "u"]) == {odd}
        assert list(scratch.company_lines([odd])) == [(odd, b"{}", True)]


def test_an_unusable_temporary_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not-there"))
    with pytest.raises(ScratchError, match=r"temporary tables \(under .*not-there\) failed: .*"
                                           r"point TMPDIR at a larger local disk"):
        Scratch()
