"""Training losses: label-smoothed identity CE, batch-hard triplet, CosFace, and CAL's clothes-based adversarial loss;
DG-Net's teacher soft labels and ramp (CVPR 2019); CLIP3DReID's global alignment and Sinkhorn OT (CVPR 2024).

Notation: B samples with identity labels y_i and (real images only) clothes labels c_i; s = CosFace scale,
m = CosFace margin; cos_ik = cosine between sample i's BN feature and clothes prototype k.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLabelSmooth(nn.Module):
    """Identity loss with label smoothing (Szegedy et al.), as CAL/BoT:

        q_ik = (1 - ε)·[k = y_i] + ε / N,   L = -(1/B) Σ_i Σ_k q_ik · log softmax(z_i)_k

    with N identity classes and ε = 0.1.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.epsilon)  # same q as above


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017):

        L = (1/B) Σ_a max(0, m + max_{p: y_p = y_a} d(a, p) - min_{n: y_n ≠ y_a} d(a, n))

    with margin m = 0.3 and d either Euclidean (torchreid's, on the features before the BN-neck) or cosine,
    d = 1 - cos (CAL's `losses/triplet_loss.py` with TEST.DISTANCE cosine, on L2-normalised BN features: the caller
    picks the feature). Anchors without a positive (other than themselves) or without a negative are left out; if
    none is left the loss is 0 (connected to the graph, so backward still works).
    """

    def __init__(self, margin: float = 0.3, distance: str = "euclidean") -> None:
        super().__init__()
        self.margin, self.distance = margin, distance

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.distance == "cosine":
            unit = F.normalize(features, dim=1)
            dist = 1 - unit @ unit.T
        else:
            dist = torch.cdist(features, features).clamp(min=1e-12)
        same = targets[:, None] == targets[None, :]
        eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
        pos, neg = same & ~eye, ~same
        valid = pos.any(1) & neg.any(1)
        if not valid.any():
            return features.sum() * 0.0
        hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(1)
        hardest_neg = dist.masked_fill(~neg, float("inf")).amin(1)
        return F.relu(self.margin + hardest_pos - hardest_neg)[valid].mean()


class CosFaceLoss(nn.Module):
    """CosFace (Wang et al. 2018) on cosine logits, CAL's clothes-classifier loss:

        L = -(1/B) Σ_i log( e^{s(cos_{i,c_i} - m)} / (e^{s(cos_{i,c_i} - m)} + Σ_{k≠c_i} e^{s·cos_ik}) )

    CAL's defaults: s = 16, m = 0 (a scaled softmax over cosines).
    """

    def __init__(self, scale: float = 16.0, margin: float = 0.0) -> None:
        super().__init__()
        self.scale, self.margin = scale, margin

    def forward(self, cosines: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(targets, cosines.shape[1]).to(cosines.dtype)
        return F.cross_entropy(self.scale * (cosines - self.margin * one_hot), targets)


class ClothesAdversarialLoss(nn.Module):
    """CAL's clothes-based adversarial loss (Gu et al., CVPR 2022, Eq. 4-5), on the real images only.

    The backbone is trained so that the clothes classifier cannot tell apart the outfits of one identity. With
    S⁺_i = the clothes classes of sample i's identity (row y_i of `pid2clothes`, K_i = |S⁺_i|) and S⁻_i the rest,
    each positive class k ∈ S⁺_i competes only against the negatives:

        log p_ik = s·cos_ik - log( e^{s·cos_ik} + Σ_{j ∈ S⁻_i} e^{s·cos_ij} )
        q_ik     = (1 - ε)·[k = c_i] + ε / K_i · [k ∈ S⁺_i]
        L        = -(1/B) Σ_i Σ_{k ∈ S⁺_i} q_ik · log p_ik

    ε = 1 gives the uniform target over the identity's outfits (the paper's motivation); ε = 0.1 is the value of
    CAL's released configs (`LOSS.EPSILON`), kept as default because DLCR trains with CAL's code. s = 16 (CAL's
    `LOSS.CLA_S`). The clothes classifier's weights are detached by the caller: this loss trains the backbone only.
    """

    def __init__(self, scale: float = 16.0, epsilon: float = 0.1) -> None:
        super().__init__()
        self.scale, self.epsilon = scale, epsilon

    def forward(self, cosines: torch.Tensor, clothes: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
        """cosines (B, C); clothes (B,) labels; positive_mask (B, C) = pid2clothes[pids] (0/1)."""
        logits = self.scale * cosines
        positive = positive_mask.to(logits.dtype)
        # log(e^{l_k} + Σ_neg e^{l_j}) per class k, computed stably as a logsumexp of two terms
        neg_lse = logits.masked_fill(positive.bool(), float("-inf")).logsumexp(1, keepdim=True)
        log_prob = logits - torch.logaddexp(logits, neg_lse.expand_as(logits))
        own = F.one_hot(clothes, logits.shape[1]).to(logits.dtype)
        target = (1 - self.epsilon) * own + self.epsilon * positive / positive.sum(1, keepdim=True)
        return -(target * log_prob).masked_fill(target == 0, 0.0).sum(1).mean()


# -- DG-Net (Zheng et al., CVPR 2019): primary feature learning from a teacher ---------------------------------
def ramp_weight(progress: float, start: float = 0.3, ramp: float = 0.04, cap: float = 2.0) -> float:
    """DG-Net's teacher-loss weight at `progress` = global step / total steps (in [0, 1]):

        w = 0                                   while progress <= start
        w = cap · (progress - start) / ramp     then, linearly,
        w = cap                                 from progress >= start + ramp.

    DG-Net: 0 until 30k of 100k iterations, then +0.0005 per iteration up to 2 (≈4k iterations), i.e. start 0.3,
    ramp 0.04, cap 2 as fractions of the run, so the same shape fits any run length. ramp = 0: a step to `cap`.
    """
    if progress <= start:
        return 0.0
    if ramp <= 0:
        return cap
    return cap * min(1.0, (progress - start) / ramp)


def teacher_target(logits: torch.Tensor, logits_flipped: torch.Tensor) -> torch.Tensor:
    """DG-Net's soft label (`teacher_soft`): the frozen teacher's softmax on an image plus its softmax on the
    horizontal flip, renormalised to sum to 1 per row (= their mean)."""
    summed = F.softmax(logits.float(), dim=1) + F.softmax(logits_flipped.float(), dim=1)
    return summed / summed.sum(1, keepdim=True)


def soft_target_kl(student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(student)) summed over classes and averaged over the batch (DG-Net: KLDiv with summed
    reduction ÷ batch size): Σ_k t_k (log t_k - log softmax(z)_k). Terms with t_k = 0 contribute 0."""
    return F.kl_div(F.log_softmax(student_logits.float(), dim=1), target, reduction="batchmean")


# -- CLIP3DReID (Liu et al., CVPR 2024): global alignment and optimal-transport local alignment ---------------
def global_alignment_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between L2-normalised student and teacher embeddings (CLIP3DReID's paper; its release uses a KL on
    logits at T = 2 instead), as the squared distance per sample (= 2 - 2·cos), averaged over the batch:
    an element-wise mean would shrink the loss (and its gradient) by the embedding width."""
    diff = F.normalize(student.float(), dim=1) - F.normalize(target.float(), dim=1)
    return diff.pow(2).sum(1).mean()


@torch.no_grad()
def sinkhorn(
    cost: torch.Tensor, epsilon: float = 0.1, max_iters: int = 100, tol: float = 0.01
) -> tuple[torch.Tensor, int]:
    """Entropic optimal-transport plans between uniform marginals, in the log domain (stable for small ε).

    cost (B, N, M) → plans T (B, N, M) with rows summing to 1/N and columns to 1/M (up to `tol`),
    T = diag(u) · exp(-cost/ε) · diag(v). Alternating updates of log u, log v; stops after `max_iters` or when the
    row-marginal error Σ_i |T_i· - 1/N| of every plan is below `tol` (the column marginals are exact
    after each v update). CLIP3DReID: ε = 0.1, at most 100 iterations, threshold 0.01. Returns (T, iterations).
    """
    b, n, m = cost.shape
    log_k = -cost.float() / epsilon
    log_a = torch.full((b, n), -math.log(n), device=cost.device)
    log_b = torch.full((b, m), -math.log(m), device=cost.device)
    log_u, log_v = torch.zeros_like(log_a), torch.zeros_like(log_b)
    iters, error = 0, float("inf")
    while iters < max_iters and error >= tol:
        log_u = log_a - torch.logsumexp(log_k + log_v[:, None, :], dim=2)
        log_v = log_b - torch.logsumexp(log_k + log_u[:, :, None], dim=1)
        rows = torch.logsumexp(log_k + log_v[:, None, :], dim=2) + log_u
        error = (rows.exp() - log_a.exp()).abs().sum(1).amax().item()  # every plan of the batch
        iters += 1
    return (log_u[:, :, None] + log_k + log_v[:, None, :]).exp(), iters


def ot_alignment_loss(
    local: torch.Tensor, text: torch.Tensor, epsilon: float = 0.1, max_iters: int = 100, tol: float = 0.01
) -> torch.Tensor:
    """CLIP3DReID's local alignment: 1 - Σ_ij T_ij · cos(local_i, text_j), averaged over the batch.

    local (B, N, D) student tokens, text (B, K, D) each image's text embeddings; cost = 1 - cos; T = `sinkhorn`
    plan, computed without gradient (as PLOT, Chen et al. ICLR 2023, whose OT prompt-alignment CLIP3DReID
    follows): the plan says which token matches which word, the gradient pulls matched pairs together.
    Σ T = 1, so the loss is in [0, 2], 0 when every matched pair is aligned."""
    sim = torch.einsum("bnd,bkd->bnk", F.normalize(local.float(), dim=2), F.normalize(text.float(), dim=2))
    plan, _ = sinkhorn(1 - sim.detach(), epsilon, max_iters, tol)
    return (1 - (plan * sim).sum((1, 2))).mean()
