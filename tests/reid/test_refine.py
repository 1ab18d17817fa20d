"""DLCR test-time prediction refinement: what may change, the vote arithmetic, and a promoted true match."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcr_data.reid.metrics import evaluate_rank
from dlcr_data.reid.refine import _refine_chunk, refine_distances


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
    import torch.nn.functional as F

    from dlcr_data.reid.metrics import evaluate_rank, junk_mask

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
