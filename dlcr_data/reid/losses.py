"""Training losses: label-smoothed identity CE, batch-hard triplet, CosFace, and CAL's clothes-based adversarial loss.

Notation: B samples with identity labels y_i and (real images only) clothes labels c_i; s = CosFace scale,
m = CosFace margin; cos_ik = cosine between sample i's BN feature and clothes prototype k.
"""

from __future__ import annotations

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
    """Batch-hard triplet loss (Hermans et al. 2017) on the features before the BN-neck:

        L = (1/B) Σ_a max(0, m + max_{p: y_p = y_a} d(a, p) - min_{n: y_n ≠ y_a} d(a, n))

    with Euclidean d and margin m = 0.3. Anchors without a positive (other than themselves) or without a negative
    are left out; if none is left the loss is 0 (connected to the graph, so backward still works).
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
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


def positive_clothes_mask(pid2clothes: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """(B, num_clothes) mask of the outfits each sample's identity wears in the training set."""
    return pid2clothes[pids]
