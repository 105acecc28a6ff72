"""The recipe's losses as bnn computes them (include/bnn/losses/, include/bnn/kernels/).

- cross_entropy: mean over the batch of -sum_k target * log_softmax(logits); integer labels
  with label smoothing e give the target (1 - e) one_hot + e / K; soft targets (mix-up) are used as given.
- logit_matching (KD): T^2 * mean_n KL(softmax(z_T / T) || softmax(z_S / T)), the teacher constant,
  positions where the teacher's probability is 0 adding nothing.
- attention_transfer: at each transfer point Q = sum_c A_c^2 per sample and position, normalized
  per sample ("l2": Q / ||Q||_2, "max": Q / max Q, "none"; a norm below eps is replaced by eps
  and is then a constant), distance "squared" (mean over samples and positions of the squared
  difference), "absolute" (mean of |difference|) or "l2norm" (mean over samples of the L2 norm of
  the difference); the mean over transfer points, times beta.
"""
import torch
import torch.nn.functional as F

ATTENTION_NORMS = ("l2", "max", "none")
ATTENTION_DISTANCES = ("squared", "absolute", "l2norm")


def cross_entropy(logits, labels=None, label_smoothing=0.0, soft_targets=None):
    if soft_targets is not None:
        target = soft_targets
    else:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
        k = logits.shape[1]
        target = torch.full_like(logits, label_smoothing / k)
        target.scatter_add_(1, labels.view(-1, 1).long(),
                            torch.full((logits.shape[0], 1), 1.0 - label_smoothing, dtype=logits.dtype,
                                       device=logits.device))
    return -(target * F.log_softmax(logits, dim=1)).sum() / logits.shape[0]


def logit_matching(student_logits, teacher_logits, temperature=1.0):
    t = float(temperature)
    log_ps = F.log_softmax(student_logits / t, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / t, dim=1)
    pt = log_pt.exp()
    kl = torch.where(pt > 0, pt * (log_pt - log_ps), torch.zeros_like(pt))
    return t * t * kl.sum() / student_logits.shape[0]


def attention_map(features, norm="l2", eps=1e-12):
    """[N, C, H, W] -> [N, H*W]: sum over channels of the squares, normalized per sample."""
    if norm not in ATTENTION_NORMS:
        raise ValueError(f"attention_map: norm must be one of {ATTENTION_NORMS}, got {norm!r}")
    q = features.pow(2).sum(dim=1).flatten(1)
    if norm == "none":
        return q
    d = q.norm(dim=1, keepdim=True) if norm == "l2" else q.max(dim=1, keepdim=True).values
    # A clamped divisor is a constant: no gradient flows through it (as bnn's kernel).
    d = torch.where(d < eps, torch.full_like(d, eps), d)
    return q / d


def attention_transfer(pairs, norm="l2", distance="squared", beta=1.0, eps=1e-12):
    """pairs: [(student map, teacher map), ...] of [N, C, H, W] with equal N, H, W."""
    if not pairs:
        raise ValueError("attention_transfer: expected at least one (student, teacher) pair, got none")
    if distance not in ATTENTION_DISTANCES:
        raise ValueError(f"attention_transfer: distance must be one of {ATTENTION_DISTANCES}, got {distance!r}")
    total = 0.0
    for s, t in pairs:
        diff = attention_map(s, norm, eps) - attention_map(t, norm, eps)
        if distance == "squared":
            total = total + diff.pow(2).mean()
        elif distance == "absolute":
            total = total + diff.abs().mean()
        else:
            total = total + diff.norm(dim=1).mean()
    return beta * total / len(pairs)
