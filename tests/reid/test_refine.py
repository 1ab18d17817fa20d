"""Test-time prediction refinement: DLCR's released rule on a hand-worked example, our identity rule's votes, chunk
invariance, and the evaluator's --refine-rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcr_data.reid.metrics import evaluate_rank, junk_mask
from dlcr_data.reid.refine import _refine_chunk, evaluate_refined, refine_chunks


def refine_distances(q, qv, g, g_pids, top_ids=5, chunk_size=None, exclude=None, rule="identity"):
    """The chunks of `refine_chunks` stacked: a full matrix, for small test inputs only."""
    chunks = refine_chunks(q, qv, g, g_pids, rule=rule, top=top_ids, chunk_size=chunk_size, exclude=exclude)
    return torch.cat([d for _, d in chunks])


def _plain(q, g):
    return 1 - F.normalize(q.float(), dim=1) @ F.normalize(g.float(), dim=1).T


def _original_top_ids(q, g, g_pids, top):
    """Each query's top identities by best cosine similarity, computed the slow way."""
    sims = (F.normalize(q, dim=1) @ F.normalize(g, dim=1).T).numpy()
    out = []
    for row in sims:
        best = {pid: row[g_pids == pid].max() for pid in np.unique(g_pids)}
        out.append(set(sorted(best, key=best.get, reverse=True)[:top]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_only_original_top_identities_change(seed, chunk_size):
    gen = torch.Generator().manual_seed(seed)
    num_q, num_v, num_g, dim = 12, 4, 60, 6
    q, g = torch.randn(num_q, dim, generator=gen), torch.randn(num_g, dim, generator=gen)
    qv = q[:, None] + 0.8 * torch.randn(num_q, num_v, dim, generator=gen)
    g_pids = np.repeat(np.arange(15), 4)
    refined = refine_distances(q, qv, g, g_pids, top_ids=5, chunk_size=chunk_size)
    plain = _plain(q, g)
    changed = (refined - plain).abs() > 1e-5  # chunked matmuls may round differently in the last bit
    assert changed.any()
    assert (refined <= plain + 1e-6).all()  # entries only get closer
    for i, top in enumerate(_original_top_ids(q, g, g_pids, 5)):
        assert set(g_pids[changed[i].numpy()]) <= top
        # every changed entry of an identity now holds that identity's summed votes
        for pid in set(g_pids[changed[i].numpy()]):
            values = refined[i, torch.as_tensor(g_pids == pid) & changed[i]]
            assert torch.allclose(values, values[0])


def test_no_variants_leaves_distances_unchanged():
    gen = torch.Generator().manual_seed(3)
    q, g = torch.randn(5, 4, generator=gen), torch.randn(9, 4, generator=gen)
    out = refine_distances(q, torch.zeros(5, 0, 4), g, np.arange(9) % 3)
    torch.testing.assert_close(out, _plain(q, g), atol=1e-6, rtol=0)


def test_vote_arithmetic():
    # Gallery: identities 0, 1, 2, 3 (codes), one entry each; top 2 identities.
    g_codes = torch.tensor([0, 1, 2, 3])
    sims = torch.tensor([[0.5, 0.6, 0.1, 0.0]])  # original top-2: identities 1, 0
    variant_sims = torch.tensor(
        [
            [
                [0.8, 0.4, 0.0, 0.0],  # top-2: 0 (vote 1), 1 (vote 0.4 / 0.8 = 0.5)
                [0.3, 0.0, 0.6, 0.0],  # top-2: 2 (not in the original top: ignored), 0 (vote 0.5)
                [-0.1, -0.2, -0.3, -0.4],  # top score <= 0: votes nothing
            ]
        ]
    )
    out = _refine_chunk(sims, variant_sims, g_codes, num_ids=4, top=2)
    # The original list votes too: 1 (0.6 / 0.6) and 0 (0.5 / 0.6). Identity 0: 0.5/0.6 + 1 + 0.5; identity 1: 1 + 0.5.
    torch.testing.assert_close(out, torch.tensor([[0.5 / 0.6 + 1.5, 1.5, 0.1, 0.0]]))


def test_variants_promote_the_true_identity_to_rank_one():
    # The query looks most like identity 1 (a distractor in the same clothes); its variants, in other clothes,
    # look like identity 0, the true match, which the original query ranks second.
    e = torch.eye(4)
    g = torch.stack([e[0] + 0.2 * e[2], e[0] + 0.1 * e[3], e[1], e[1] + 0.1 * e[3], e[2], e[3]])
    g_pids = np.array([0, 0, 1, 1, 2, 3])
    q = (e[1] + 0.7 * e[0])[None]
    qv = torch.stack([e[0] + 0.3 * e[1], e[0] + 0.2 * e[2], e[0] + 0.2 * e[1] + 0.1 * e[3]])[None]
    plain = _plain(q, g)
    refined = refine_distances(q, qv, g, g_pids, top_ids=2)
    labels = dict(q_pids=[0], g_pids=g_pids, q_camids=[9], g_camids=np.zeros(6, int))
    assert evaluate_rank(plain, **labels)["cmc"][0] == 0.0
    after = evaluate_rank(refined, **labels)
    assert after["cmc"][0] == 1.0 and after["mAP"] == 1.0
    assert int(refined[0].argmin()) in (0, 1)
    # Identities 2 and 3 are outside the original top 2: untouched. Identity 1 is in it and gets the original's
    # vote, but stays behind identity 0, which the variants agree on.
    torch.testing.assert_close(refined[0, 4:], plain[0, 4:])
    assert refined[0, :2].max() < refined[0, 2:4].min()


def test_shape_checks():
    with pytest.raises(ValueError, match="num_query, K, D"):
        refine_distances(torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4), np.arange(5))
    with pytest.raises(ValueError, match="gallery pids"):
        refine_distances(torch.randn(3, 4), torch.randn(3, 2, 4), torch.randn(5, 4), np.arange(4))


def test_protocol_junk_takes_no_part_in_identity_scores():
    """A same-camera match the protocol deletes must not lift its identity's other entries (no leakage)."""
    torch.manual_seed(0)
    d = 16
    base = F.normalize(torch.randn(4, d), dim=1)  # directions: query, pid 1 other camera, pids 2 and 3
    q = base[:1]
    gallery = torch.stack([q[0], base[1], 0.9 * q[0] + 0.5 * base[2], base[3]])  # 0: same-camera twin (junk)
    g_pids, g_cams = [1, 1, 2, 3], [0, 1, 1, 1]
    variants = q.repeat(3, 1)[None]  # variants that look like the query
    junk = junk_mask([1], g_pids, [0], g_cams)
    assert junk.tolist() == [[True, False, False, False]]

    leaky = refine_distances(q, variants, gallery, g_pids)
    fair = refine_distances(q, variants, gallery, g_pids, exclude=lambda rows: junk[rows])
    rank1 = {name: evaluate_rank(dist, [1], g_pids, [0], g_cams)["cmc"][0] for name, dist in
             (("plain", 1 - q @ gallery.T), ("leaky", leaky), ("fair", fair))}  # fmt: skip
    assert rank1["plain"] == 0  # pid 2's entry is closer than pid 1's other-camera entry
    assert rank1["leaky"] == 1  # the hidden twin lifted pid 1: leakage
    assert rank1["fair"] == 0  # seen as the protocol sees it, nothing lifts pid 1


# -- "dlcr": DLCR's released rule (Simple-CCReID/evaluation/test_reranking.py) ------------------------------------
# Cosines (original query, variant 1, variant 2) of 8 gallery images; query pid A on camera 0, so g0 is junk.
HAND_COS = [  # pid, camera: cos to q, v1, v2
    (0.7, 0.0, 0.3),  # g0 A cam 0 (junk: same pid, same camera)
    (0.4, 0.8, 0.25),  # g1 A cam 1 (the true match)
    (0.6, -0.4, 0.0),  # g2 B cam 1 (the distractor the original prefers)
    (0.5, -0.5, -0.6),  # g3 B cam 1
    (0.3, 0.5, -0.5),  # g4 C cam 1
    (0.2, -0.1, -0.9),  # g5 D cam 1
    (0.0, 0.2, -0.25),  # g6 E cam 1
    (-0.4, -0.7, -0.55),  # g7 E cam 1
]
HAND_PIDS, HAND_CAMS = ["A", "A", "B", "B", "C", "D", "E", "E"], [0, 1, 1, 1, 1, 1, 1, 1]


def _hand_features():
    """q = e0, v1 = e1, v2 = e2; g_j = its three cosines on e0..e2 + the rest of a unit norm on its own axis."""
    dim = 3 + len(HAND_COS)
    g = torch.zeros(len(HAND_COS), dim, dtype=torch.float64)
    for j, cos in enumerate(HAND_COS):
        g[j, :3] = torch.tensor(cos, dtype=torch.float64)
        g[j, 3 + j] = (1 - sum(c * c for c in cos)) ** 0.5
    e = torch.eye(dim, dtype=torch.float64)
    return e[:1].float(), e[1:3][None].float(), g.float()


def test_dlcr_rule_worked_by_hand():
    # s = cos + 1. Each list drops the junk g0 and keeps its top 5 images, per identity the best s:
    #   original: g2 B 1.6, g3 B 1.5, g1 A 1.4, g4 C 1.3, g5 D 1.2 -> {B 1.6, A 1.4, C 1.3, D 1.2}, m0 = 1.6
    #   v1:       g1 A 1.8, g4 C 1.5, g6 E 1.2, g5 D 0.9, g2 B 0.6 -> {A 1.8, C 1.5, E 1.2, D 0.9, B 0.6}, m1 = 1.8
    #   v2:       g1 A 1.25, g2 B 1.0, g6 E 0.75, g4 C 0.5, g7 E 0.45 -> {A 1.25, B 1.0, E 0.75, C 0.5}, m2 = 1.25
    # (with g0 kept, m0 would be 1.7 and m2 1.3). Score = the original's s + sum over the 3 lists of s * s / m
    # (the original counts twice; E is not in the original's list and gains nothing):
    #   A = 1.4 + 1.96/1.6 + 3.24/1.8 + 1.5625/1.25 = 1.4 + 1.225 + 1.8 + 1.25 = 5.675
    #   B = 1.6 + 2.56/1.6 + 0.36/1.8 + 1.0/1.25    = 1.6 + 1.6 + 0.2 + 0.8     = 4.2
    #   C = 1.3 + 1.69/1.6 + 2.25/1.8 + 0.25/1.25   = 1.3 + 1.05625 + 1.25 + 0.2 = 3.80625
    #   D = 1.2 + 1.44/1.6 + 0.81/1.8               = 1.2 + 0.9 + 0.45          = 2.55
    # The original's top 5 by s, junk included: g0 1.7, g2 1.6, g3 1.5, g1 1.4, g4 1.3 -> max(score, s); g5 (D)
    # is 6th and keeps 1.2 although D has a score; g6 1.0 and g7 0.6 keep theirs. Distances = -s.
    expected = [-5.675, -5.675, -4.2, -4.2, -3.80625, -1.2, -1.0, -0.6]
    q, qv, g = _hand_features()
    junk = junk_mask(["A"], HAND_PIDS, [0], HAND_CAMS)
    refined = refine_distances(q, qv, g, HAND_PIDS, rule="dlcr", exclude=lambda rows: junk[rows])
    torch.testing.assert_close(refined, torch.tensor([expected]), atol=1e-5, rtol=0)
    # Ranking (stable): g0 (junk, deleted), g1 A, g2 B, g3 B, g4 C, g5 D, g6 E, g7 E -> the true match first.
    # Plain cosine ranks g0 (deleted), g2 B, g3 B, g1 A: rank 3, AP 1/3.
    assert refined[0].argsort(stable=True).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    labels = (["A"], HAND_PIDS, [0], HAND_CAMS)
    plain = evaluate_rank(_plain(q, g), *labels)
    assert plain["cmc"][:3].tolist() == [0.0, 0.0, 1.0] and plain["mAP"] == pytest.approx(1 / 3)
    after = evaluate_refined(q, qv, g, *labels, rule="dlcr")
    assert after["cmc"][0] == 1.0 and after["mAP"] == 1.0


def test_dlcr_rule_leaves_a_top_junk_entry_without_a_score_unchanged():
    # g0 (pid A, camera 0) is the query's junk and the only A: DLCR's l. 173 would raise KeyError on it; it keeps
    # s = 1.9. Fewer than 5 visible images: each list is g1, g2. Original {B 1.5, C 1.2}, m0 = 1.5; the variant
    # (cosines 0.2, 0.6) {C 1.6, B 1.2}, m1 = 1.6. B = 1.5 + 2.25/1.5 + 1.44/1.6 = 1.5 + 1.5 + 0.9 = 3.9;
    # C = 1.2 + 1.44/1.5 + 2.56/1.6 = 1.2 + 0.96 + 1.6 = 3.76.
    g = torch.tensor([[0.9, 0.0, 0.19**0.5, 0.0], [0.5, 0.2, 0.0, 0.71**0.5], [0.2, 0.6, 0.0, 0.6**0.5]])
    q, qv = torch.eye(4)[:1], torch.eye(4)[1:2][None]
    junk = junk_mask(["A"], ["A", "B", "C"], [0], [0, 1, 1])
    refined = refine_distances(q, qv, g, ["A", "B", "C"], rule="dlcr", exclude=lambda rows: junk[rows])
    torch.testing.assert_close(refined, torch.tensor([[-1.9, -3.9, -3.76]]), atol=1e-5, rtol=0)


def _random_case(seed: int, num_q: int = 7, num_v: int = 3, num_g: int = 40):
    gen = torch.Generator().manual_seed(seed)
    q, g = torch.randn(num_q, 6, generator=gen), torch.randn(num_g, 6, generator=gen)
    qv = q[:, None] + 0.8 * torch.randn(num_q, num_v, 6, generator=gen)
    labels = (
        np.arange(num_q) % 8,  # query pids
        np.arange(num_g) % 8,  # gallery pids: 5 images each
        np.arange(num_q) % 3,  # cameras: some same-pid same-camera junk
        np.arange(num_g) % 3,
        np.arange(num_q) % 2,  # clothes
        (np.arange(num_g) // 8) % 2,
    )
    return q, qv, g, labels


@pytest.mark.parametrize("rule", ["dlcr", "identity"])
def test_chunk_size_changes_nothing(rule, monkeypatch):
    q, qv, g, labels = _random_case(4)
    junk = junk_mask(*labels, mode="cc")
    runs = {}
    for chunk_size in (1, 3, len(q), "1-byte budget"):
        if chunk_size == "1-byte budget":  # the default chunk, and the identity rule's row steps, at one row
            monkeypatch.setattr("dlcr_data.reid.refine.MEMORY_BUDGET", 1)
            chunk_size = None
        refined = refine_distances(q, qv, g, labels[1], rule=rule, chunk_size=chunk_size, exclude=lambda r: junk[r])
        metrics = evaluate_refined(q, qv, g, *labels, mode="cc", rule=rule, chunk_size=chunk_size)
        runs[len(runs)] = refined, metrics
    (d1, m1), *others = runs.values()
    assert not torch.allclose(d1, _plain(q, g))
    for d, m in others:
        # MKL's matmul rounds by the chunk's row count (1 row: another kernel): equal to the last bit or two.
        torch.testing.assert_close(d, d1, atol=1e-6, rtol=0)
        assert torch.equal(d.argsort(dim=1, stable=True), d1.argsort(dim=1, stable=True))
        assert m["cmc"].tolist() == m1["cmc"].tolist() and m["mAP"] == m1["mAP"] and m["mINP"] == m1["mINP"]
    # Scored chunk by chunk = evaluate_rank of the whole refined matrix.
    whole = evaluate_rank(d1, *labels, mode="cc")
    assert whole["cmc"].tolist() == m1["cmc"].tolist() and whole["mAP"] == pytest.approx(m1["mAP"], abs=1e-12)


@pytest.mark.parametrize("rule", ["dlcr", "identity"])
def test_no_variants_is_plain_cosine(rule):
    q, _, g, labels = _random_case(5)
    refined = refine_distances(q, torch.zeros(len(q), 0, q.shape[1]), g, labels[1], rule=rule, chunk_size=2)
    torch.testing.assert_close(refined, _plain(q, g), atol=1e-6, rtol=0)


def test_chunks_hold_at_most_chunk_size_queries():
    q, qv, g, labels = _random_case(6)
    sizes = [(rows.stop - rows.start, d.shape) for rows, d in refine_chunks(q, qv, g, labels[1], chunk_size=3)]
    assert sizes == [(3, (3, len(g))), (3, (3, len(g))), (1, (1, len(g)))]


def test_unknown_rule():
    with pytest.raises(ValueError, match="dlcr, identity"):
        refine_chunks(torch.randn(2, 4), torch.randn(2, 1, 4), torch.randn(3, 4), [0, 1, 2], rule="nope")


def test_cli_rejects_an_unknown_refine_rule_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from dlcr_data.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(tmp_path), "demo", "--refine-rule", "bogus"])
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == ["error: --refine-rule must be one of dlcr, identity, not 'bogus'"]


@pytest.mark.parametrize(("args", "expected"), [([], "dlcr"), (["--refine-rule", "identity"], "identity")])
def test_cli_passes_the_refine_rule(tmp_path, monkeypatch, args, expected):
    from typer.testing import CliRunner

    from dlcr_data.cli import app
    from dlcr_data.reid import evaluate
    from dlcr_data.reid.config import EvaluateOptions

    assert EvaluateOptions.refine_rule == "dlcr"
    seen = {}
    monkeypatch.setattr(evaluate, "evaluate_checkpoint", lambda *a, **kw: seen.update(kw) or {})
    assert CliRunner().invoke(app, ["evaluate", str(tmp_path), "demo", *args]).exit_code == 0
    assert seen["refine_rule"] == expected
