"""`BuildOptions`: the one home of every build default, round-tripped through JSON."""

from __future__ import annotations

import json

from dlcr_data.build import BuildOptions


def test_options_round_trip_through_json(tmp_path):
    opts = BuildOptions("demo", tmp_path / "out", splits=("train", "query"), resolution=(128, 256), batch_size=3)
    assert BuildOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts  # lists come back as tuples
    fingerprint = json.loads(json.dumps(opts.fingerprint()))
    assert "out" not in fingerprint and "batch_size" not in fingerprint  # runtime-only options
    again = BuildOptions.from_dict(fingerprint, out=opts.out, batch_size=3)
    assert again == opts and again.fingerprint() == opts.fingerprint()
    assert BuildOptions.from_dict(fingerprint).fingerprint() == opts.fingerprint()
