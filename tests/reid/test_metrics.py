"""The vectorised evaluator against a literal per-query loop of CAL's semantics (docs/datasets.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcr_data.reid import metrics
from dlcr_data.reid.metrics import cosine_distance, encode_labels, evaluate_features, evaluate_rank, topk


# -- reference: one query at a time, the table of docs/datasets.md §4 read literally, stable argsort ------------
def reference(distmat, q_pids, g_pids, q_cams, g_cams, q_clothes=None, g_clothes=None, mode="general", max_rank=50):
    q_pids, g_pids, q_cams, g_cams = map(np.asarray, (q_pids, g_pids, q_cams, g_cams))
    num_q, num_g = distmat.shape
    order = np.argsort(distmat, axis=1, kind="stable")
    cmcs, aps, inps = [], [], []
    for i in range(num_q):
        idx = order[i]
        p = g_pids[idx] == q_pids[i]
        cm = g_cams[idx] == q_cams[i]
        if mode == "general":
            good, junk = p & ~cm, p & cm
        else:
            cl = np.asarray(g_clothes)[idx] == np.asarray(q_clothes)[i]
            if mode == "cc":
                good, junk = p & ~cm & ~cl, (p & cm) | (p & cl)
            else:
                good, junk = p & ~cm & cl, (p & cm) | (p & ~cl)
        if not good.any():
            continue
        hits = good[~junk]  # junk deleted from the ranked list
        ranks = np.flatnonzero(hits)
        cmc = np.zeros(num_g)
        cmc[ranks[0] :] = 1
        cmcs.append(cmc)
        aps.append(np.mean([(k + 1) / (r + 1) for k, r in enumerate(ranks)]))
        inps.append(len(ranks) / (ranks[-1] + 1))
    length = min(max_rank, num_g)
    if not cmcs:
        return {"cmc": np.zeros(length), "mAP": 0.0, "mINP": 0.0, "num_valid": 0, "num_skipped": num_q}
    return {
        "cmc": np.mean(cmcs, axis=0)[:length],
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "num_valid": len(cmcs),
        "num_skipped": num_q - len(cmcs),
    }


def assert_same(got: dict, want: dict, tol: float = 1e-12) -> None:
    assert got["num_valid"] == want["num_valid"]
    assert got["num_skipped"] == want["num_skipped"]
    assert len(got["cmc"]) == len(want["cmc"])
    np.testing.assert_allclose(got["cmc"], want["cmc"], atol=tol, rtol=0)
    assert got["mAP"] == pytest.approx(want["mAP"], abs=tol)
    assert got["mINP"] == pytest.approx(want["mINP"], abs=tol)


def make_case(seed: int, num_q: int = 40, num_g: int = 120, quantise: int | None = None) -> dict:
    """Random labels with every situation of docs/datasets.md §8: same-camera positives, same- and other-clothes
    positives, an identity with a single outfit (pid 0), query pids absent from the gallery (pid 99)."""
    rng = np.random.default_rng(seed)
    num_pids, num_cams = 8, 3
    g_pids = rng.integers(0, num_pids, num_g)
    q_pids = rng.integers(0, num_pids, num_q)
    q_pids[:3] = 99
    g_cams, q_cams = rng.integers(0, num_cams, num_g), rng.integers(0, num_cams, num_q)

    def outfit(pids):
        c = rng.integers(0, 3, len(pids))
        return np.array([f"{p}_{0 if p == 0 else k}" for p, k in zip(pids, c, strict=True)])

    dist = rng.random((num_q, num_g))
    if quantise:
        dist = np.round(dist * quantise) / quantise  # many exact ties
    return {
        "distmat": dist.astype(np.float32),
        "q_pids": q_pids,
        "g_pids": g_pids,
        "q_camids": q_cams,
        "g_camids": g_cams,
        "q_clothes": outfit(q_pids),
        "g_clothes": outfit(g_pids),
    }


def ref_of(case: dict, mode: str, max_rank: int = 50) -> dict:
    c = case
    return reference(
        c["distmat"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], c["q_clothes"], c["g_clothes"],
        mode, max_rank,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["general", "cc", "sc"])
@pytest.mark.parametrize("quantise", [None, 4, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(mode, quantise, seed):
    case = make_case(seed, quantise=quantise)
    assert_same(evaluate_rank(**case, mode=mode), ref_of(case, mode))


@pytest.mark.parametrize("mode", ["general", "cc", "sc"])
def test_all_ties_rank_by_gallery_index(mode):
    case = make_case(3)
    case["distmat"] = np.zeros_like(case["distmat"])  # every row is one big tie: order = gallery index
    assert_same(evaluate_rank(**case, mode=mode), ref_of(case, mode))


def test_float64_and_int_distances():
    case = make_case(4, quantise=8)
    want = ref_of(case, "cc")
    assert_same(evaluate_rank(**{**case, "distmat": case["distmat"].astype(np.float64)}, mode="cc"), want)
    ints = (case["distmat"] * 8).astype(np.int64)  # same order and ties
    assert_same(evaluate_rank(**{**case, "distmat": ints}, mode="cc"), want)
    half = torch.as_tensor(case["distmat"]).to(torch.bfloat16)  # exact: multiples of 1/8
    assert_same(evaluate_rank(**{**case, "distmat": half}, mode="cc"), want)


def test_skipped_queries_counted():
    case = make_case(5)
    got = evaluate_rank(**case)
    assert got["num_skipped"] >= 3  # pid 99 has no gallery entry
    assert got["num_valid"] + got["num_skipped"] == len(case["q_pids"])


def test_single_outfit_identity_drops_out_of_cc():
    # Query pid 0 has one outfit: every positive shares its clothes -> junk in CC, good in general.
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    kw = dict(
        q_pids=[0, 1], g_pids=[0, 0, 1, 1], q_camids=[0, 0], g_camids=[1, 2, 1, 2],
        q_clothes=["0_0", "1_0"], g_clothes=["0_0", "0_0", "1_1", "1_0"],
    )  # fmt: skip
    cc = evaluate_rank(dist, **kw, mode="cc")
    assert (cc["num_valid"], cc["num_skipped"]) == (1, 1)
    # Query 1 in CC: entry 3 (same clothes) is junk, entry 2 (other clothes) good; 0 and 1 are other pids.
    # Ranking 3, 2, 1, 0 -> junk deleted -> entry 2 first.
    np.testing.assert_array_equal(cc["cmc"], [1, 1, 1, 1])
    general = evaluate_rank(dist, **kw, mode="general")
    assert general["num_valid"] == 2
    sc = evaluate_rank(dist, **kw, mode="sc")
    assert sc["num_valid"] == 2
    assert sc["cmc"][0] == 1.0  # query 1: entry 3 (same clothes) first; query 0: entry 0 first


def test_same_camera_positive_is_deleted_not_counted():
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    got = evaluate_rank(dist, [7], [7, 8, 7], [0], [0, 1, 1])  # entry 0: same camera -> junk
    # Kept ranking: 8 (rank 0), 7 (rank 1) -> first hit at rank 1, AP = 1/2, INP = 1/2.
    np.testing.assert_array_equal(got["cmc"], [0, 1, 1])  # length = min(max_rank, num_gallery)
    assert got["mAP"] == 0.5 and got["mINP"] == 0.5


def test_no_valid_query_returns_zeros():
    dist = np.ones((2, 3), dtype=np.float32)
    got = evaluate_rank(dist, [1, 2], [3, 4, 5], [0, 0], [1, 1, 1], max_rank=10)
    assert got["num_valid"] == 0 and got["num_skipped"] == 2
    assert got["mAP"] == 0.0 and got["mINP"] == 0.0
    np.testing.assert_array_equal(got["cmc"], np.zeros(3))


def test_empty_inputs():
    got = evaluate_rank(np.zeros((0, 4), np.float32), [], [1, 2, 3, 4], [], [0, 0, 0, 0])
    assert got["num_valid"] == 0 and got["num_skipped"] == 0 and len(got["cmc"]) == 4
    got = evaluate_rank(np.zeros((2, 0), np.float32), [1, 2], [], [0, 0], [])
    assert got["num_skipped"] == 2 and len(got["cmc"]) == 0


def test_clothes_required_for_cc_and_sc():
    case = make_case(6)
    del case["q_clothes"], case["g_clothes"]
    for mode in ("cc", "sc"):
        with pytest.raises(ValueError, match="needs clothes ids"):
            evaluate_rank(**case, mode=mode)
    with pytest.raises(ValueError, match="unknown mode"):
        evaluate_rank(**case, mode="xx")


def test_nan_at_positive_rejected():
    dist = np.array([[np.nan, 0.2]], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(dist, [1], [1, 2], [0], [1, 1])


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_chunked_equals_unchunked(chunk_size):
    case = make_case(7, num_q=25, quantise=10)
    for mode in ("general", "cc", "sc"):
        assert_same(evaluate_rank(**case, mode=mode, chunk_size=chunk_size), evaluate_rank(**case, mode=mode), 0)


def test_torch_and_numpy_inputs_agree():
    case = make_case(8, quantise=16)
    as_torch = {k: torch.as_tensor(v) if k != "q_clothes" and k != "g_clothes" else v for k, v in case.items()}
    for mode in ("general", "cc", "sc"):
        assert_same(evaluate_rank(**as_torch, mode=mode), evaluate_rank(**case, mode=mode), 0)


def test_integer_clothes_and_shared_mapping():
    # Query clothes "5" and gallery clothes 5 are the same outfit; codes come from one mapping.
    q, g = encode_labels(["5", "a"], [5, 7, "a"])
    assert q[0] == g[0] and q[1] == g[2] and len(set(g)) == 3
    case = make_case(9)
    ints = {**case, "q_clothes": np.unique(case["q_clothes"], return_inverse=True)[1]}
    # Integer codes for the same strings must give the same answer when the mapping is shared.
    _, codes = np.unique(np.concatenate([case["q_clothes"], case["g_clothes"]]), return_inverse=True)
    ints["q_clothes"], ints["g_clothes"] = codes[: len(case["q_clothes"])], codes[len(case["q_clothes"]) :]
    assert_same(evaluate_rank(**ints, mode="cc"), evaluate_rank(**case, mode="cc"), 0)


def test_max_rank_larger_than_gallery():
    case = make_case(10, num_g=20)
    got = evaluate_rank(**case, max_rank=50)
    assert len(got["cmc"]) == 20
    assert got["cmc"][-1] == 1.0  # every valid query has its first hit within the gallery
    assert_same(got, ref_of(case, "general"))
    short = evaluate_rank(**case, max_rank=5)
    np.testing.assert_array_equal(short["cmc"], got["cmc"][:5])


def test_evaluate_features_equals_rank_on_full_cosine_matrix():
    rng = np.random.default_rng(11)
    case = make_case(11, num_q=30, num_g=90)
    qf = torch.as_tensor(rng.normal(size=(30, 16)), dtype=torch.float32)
    gf = torch.as_tensor(rng.normal(size=(90, 16)), dtype=torch.float32)
    full = cosine_distance(torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1))
    labels = {k: v for k, v in case.items() if k != "distmat"}
    got = evaluate_features(qf, gf, **labels, modes=("general", "cc", "sc"), chunk_size=7)
    assert set(got) == {"general", "cc", "sc"}
    for mode, result in got.items():
        assert_same(result, evaluate_rank(full, **labels, mode=mode))
        assert_same(result, reference(full.numpy(), *labels.values(), mode=mode))


def test_evaluate_features_memory_budget_sets_chunks(monkeypatch):
    seen = []
    real = metrics._positives

    def spy(d, labels, rows, ws):
        seen.append(d.shape[0])
        return real(d, labels, rows, ws)

    monkeypatch.setattr(metrics, "_positives", spy)
    monkeypatch.setattr(metrics, "MEMORY_BUDGET", 90 * 4 * 3 * 8)  # 8 rows of 90 float32 entries
    case = make_case(12, num_q=30, num_g=90)
    labels = {k: v for k, v in case.items() if k != "distmat"}
    evaluate_features(torch.randn(30, 8), torch.randn(90, 8), **labels)
    assert seen == [8, 8, 8, 6]


def test_cal_general_equals_torchreid_market1501():
    """torchreid's eval_market1501, restated: drop same pid & same camera, CMC truncated to max_rank,
    AP = sum(precision at hits) / n_rel. On distinct distances it matches CAL's general mode."""
    rng = np.random.default_rng(13)
    num_q, num_g, max_rank = 30, 200, 10
    dist = rng.random((num_q, num_g))  # float64, distinct: no tie policy involved
    q_pids, g_pids = rng.integers(0, 10, num_q), rng.integers(0, 10, num_g)
    q_cams, g_cams = rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)
    indices = np.argsort(dist, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap = [], []
    for i in range(num_q):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        raw = matches[i][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
        all_ap.append(tmp.sum() / raw.sum())
    got = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    np.testing.assert_allclose(got["cmc"], np.mean(all_cmc, axis=0), atol=1e-15)
    assert got["mAP"] == pytest.approx(np.mean(all_ap), abs=1e-15)


def test_topk_helper():
    rng = np.random.default_rng(14)
    qf, gf = torch.as_tensor(rng.normal(size=(9, 5))), torch.as_tensor(rng.normal(size=(20, 5)))
    sims, idx = topk(qf, gf, 4, chunk_size=2)
    full = torch.nn.functional.normalize(qf, dim=1) @ torch.nn.functional.normalize(gf, dim=1).T
    want = full.topk(4, dim=1)
    torch.testing.assert_close(sims, want.values)
    assert torch.equal(idx, want.indices)
    assert topk(qf, gf, 50)[0].shape == (9, 20)


def test_accelerator_code_path_on_cpu(monkeypatch):
    """The non-CPU branches (torch.sort, dense tie mask), forced on CPU tensors, agree with the reference."""
    monkeypatch.setattr(metrics, "_sorted_rows", lambda d, ws: torch.sort(d, dim=1).values)
    monkeypatch.setattr(metrics, "_tied_before", metrics._tied_before_dense)
    monkeypatch.setattr(metrics, "MEMORY_BUDGET", 120 * 9 * 5)  # several blocks of tied positives
    case = make_case(15, quantise=6)
    for mode in ("general", "cc", "sc"):
        assert_same(evaluate_rank(**case, mode=mode), ref_of(case, mode))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    case = make_case(16, quantise=12)
    on_gpu = {**case, "distmat": torch.as_tensor(case["distmat"], device="cuda")}
    for mode in ("general", "cc", "sc"):
        assert_same(evaluate_rank(**on_gpu, mode=mode), ref_of(case, mode))


@pytest.mark.parametrize("mode", ["general", "cc", "sc"])
def test_junk_mask_is_what_the_ranking_deletes(mode):
    from dlcr_data.reid.metrics import junk_mask

    rng = np.random.default_rng(7)
    q_p, g_p = rng.integers(0, 4, 9), rng.integers(0, 4, 30)
    q_c, g_c = rng.integers(0, 3, 9), rng.integers(0, 3, 30)
    q_l, g_l = (
        [f"{p}_{c}" for p, c in zip(q_p, rng.integers(0, 2, 9), strict=True)],
        [f"{p}_{c}" for p, c in zip(g_p, rng.integers(0, 2, 30), strict=True)],
    )
    junk = junk_mask(q_p, g_p, q_c, g_c, q_l, g_l, mode).numpy()
    for i in range(9):
        for j in range(30):
            same = q_p[i] == g_p[j]
            clothes = q_l[i] == g_l[j]
            expected = same and (q_c[i] == g_c[j] or (mode == "cc" and clothes) or (mode == "sc" and not clothes))
            assert junk[i, j] == expected
