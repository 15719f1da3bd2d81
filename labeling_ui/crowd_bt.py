"""The Crowd-BT model (Chen, Bennett, Collins-Thompson, Horvitz 2013) written out: its negative
log posterior with an analytic, vectorised gradient, and the MAP fit. `reliability.py` turns
rankings into its observations and reads reviewers' reliabilities and items' consensus off it.

Each (item, answer position) has a latent score s, each reviewer r a reliability eta_r:

    P(r says i better than j) = eta_r * sigmoid(s_i - s_j) + (1 - eta_r) * sigmoid(s_j - s_i)

with a Gaussian prior N(0, SCORE_PRIOR_SD^2) on every s and a Beta(ETA_PRIOR) prior on every eta.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, minimize
from scipy.special import expit

SCORE_PRIOR_SD = 3.0       # latent score prior N(0, sd^2): wide, since a narrow one makes "the pair
                           # is close" the cheap explanation of every disagreement (at 1.5 a random
                           # reviewer looked reliable)
ETA_PRIOR = (4.0, 2.0)     # Beta(a, b) on eta: mode 0.75, worth a handful of comparisons
ETA_BOUNDS = (1e-4, 1 - 1e-4)
FIT_OPTIONS = {"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-5}
MAX_SWEEPS = 50            # block Fisher-scoring sweeps before L-BFGS-B


def neg_log_posterior(x: np.ndarray, a: np.ndarray, b: np.ndarray, y: np.ndarray, r: np.ndarray,
                      w: np.ndarray, n_scores: int, fixed_eta: np.ndarray) -> tuple[float, np.ndarray]:
    """Crowd-BT negative log posterior and its gradient.

    `x` = scores (n_scores) then the free etas; observation k says score a[k] beat score b[k] with
    weight y[k] (1 won, 0 lost, 0.5 tie) by reviewer r[k], counted w[k] times. Reviewers past the
    free etas have the fixed reliabilities `fixed_eta` (the gold pseudo-reviewer).
    """
    s, eta_free = x[:n_scores], x[n_scores:]
    eta = np.concatenate([eta_free, fixed_eta])[r]
    d = s[a] - s[b]
    sig, sig_neg = expit(d), expit(-d)
    p = np.maximum(eta * sig + (1 - eta) * sig_neg, 1e-300)      # P(a beats b)
    q = np.maximum(eta * sig_neg + (1 - eta) * sig, 1e-300)      # P(b beats a) = 1 - p, without cancellation
    ll = w * (y * np.log(p) + (1 - y) * np.log(q))
    dll_dp = w * (y / p - (1 - y) / q)                           # dq = -dp
    g_d = dll_dp * (2 * eta - 1) * sig * sig_neg                 # dp/dd
    g_eta = dll_dp * (sig - sig_neg)                             # dp/deta
    alpha, beta = ETA_PRIOR
    var = SCORE_PRIOR_SD ** 2
    log_prior = (-(s @ s) / (2 * var) + (alpha - 1) * np.log(eta_free).sum()
                 + (beta - 1) * np.log1p(-eta_free).sum())
    grad = np.empty_like(x)
    grad[:n_scores] = (np.bincount(a, g_d, n_scores) - np.bincount(b, g_d, n_scores)) - s / var
    grad[n_scores:] = (np.bincount(r, g_eta, len(eta_free) + len(fixed_eta))[:len(eta_free)]
                       + (alpha - 1) / eta_free - (beta - 1) / (1 - eta_free))
    return -(ll.sum() + log_prior), -grad


def _scoring_sweeps(x: np.ndarray, a, b, y, r, w, n_scores: int, fixed: np.ndarray, item_of_score, pos_of_score,
                    max_sweeps: int = MAX_SWEEPS) -> np.ndarray:
    """Warm start for L-BFGS-B: alternate Fisher-scoring steps on all scores (one K x K solve per
    item, batched) and on all etas (one-dimensional each), until the steps are tiny.

    Scores only couple within an item and etas only through the scores, so these block steps
    converge in a few sweeps where plain L-BFGS-B over all variables needs hundreds of iterations
    (an eta moves the scores of every item its reviewer ranked)."""
    s, eta_free = x[:n_scores].copy(), x[n_scores:].copy()
    n_free = len(eta_free)
    n_items, kmax = int(item_of_score[-1]) + 1, int(pos_of_score.max()) + 1
    item, pa, pb = item_of_score[a], pos_of_score[a], pos_of_score[b]
    cell = item * kmax * kmax
    h_index = np.concatenate([cell + pa * kmax + pa, cell + pb * kmax + pb,
                              cell + pa * kmax + pb, cell + pb * kmax + pa])
    g_index = item * kmax
    # Positions an item does not have (its K below the largest): identity rows, zero gradient.
    padded = np.ones((n_items, kmax))
    padded[item_of_score, pos_of_score] = 0.0
    diag = padded + (1 - padded) / SCORE_PRIOR_SD ** 2
    alpha, beta = ETA_PRIOR
    lo, hi = ETA_BOUNDS

    def terms(eta):
        e = np.concatenate([eta, fixed])[r]
        d = s[a] - s[b]
        sig, sig_neg = expit(d), expit(-d)
        p = np.maximum(e * sig + (1 - e) * sig_neg, 1e-300)
        q = np.maximum(e * sig_neg + (1 - e) * sig, 1e-300)
        return e, sig, sig_neg, p, q, w * (y / p - (1 - y) / q)

    for _ in range(max_sweeps):
        e, sig, sig_neg, p, q, dll_dp = terms(eta_free)
        dp_dd = (2 * e - 1) * sig * sig_neg
        info = w * dp_dd ** 2 / (p * q)                                    # Fisher information of d
        g = dll_dp * dp_dd
        grad = (np.bincount(g_index + pa, g, n_items * kmax)
                - np.bincount(g_index + pb, g, n_items * kmax)).reshape(n_items, kmax)
        grad[item_of_score, pos_of_score] -= s / SCORE_PRIOR_SD ** 2
        hess = np.bincount(h_index, np.concatenate([info, info, -info, -info]), n_items * kmax * kmax)
        hess = hess.reshape(n_items, kmax, kmax) + diag[:, :, None] * np.eye(kmax)
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0][item_of_score, pos_of_score]
        s += step

        e, sig, sig_neg, p, q, dll_dp = terms(eta_free)
        dp_de = sig - sig_neg
        g_eta = (np.bincount(r, dll_dp * dp_de, n_free + len(fixed))[:n_free]
                 + (alpha - 1) / eta_free - (beta - 1) / (1 - eta_free))
        i_eta = (np.bincount(r, w * dp_de ** 2 / (p * q), n_free + len(fixed))[:n_free]
                 + (alpha - 1) / eta_free ** 2 + (beta - 1) / (1 - eta_free) ** 2)
        new = eta_free + np.clip(g_eta / i_eta, -0.25, 0.25)
        new = np.clip(new, (eta_free + lo) / 2, (eta_free + hi) / 2)       # at most halfway to a bound
        eta_step = np.abs(new - eta_free).max(initial=0.0)
        eta_free = new
        if np.abs(step).max(initial=0.0) < 1e-4 and eta_step < 1e-5:
            break
    return np.concatenate([s, eta_free])


def fit(x0: np.ndarray, a, b, y, r, w, n_scores: int, fixed: np.ndarray, item_of_score, pos_of_score
        ) -> tuple[np.ndarray, np.ndarray]:
    """The MAP scores and etas: block Fisher-scoring sweeps from `x0`, then L-BFGS-B to finish."""
    x1 = _scoring_sweeps(x0, a, b, y, r, w, n_scores, fixed, item_of_score, pos_of_score)
    if not np.isfinite(x1).all() or (neg_log_posterior(x1, a, b, y, r, w, n_scores, fixed)[0]
                                     > neg_log_posterior(x0, a, b, y, r, w, n_scores, fixed)[0]):
        x1 = x0  # a safeguard only: the sweeps have not been seen to make things worse
    n_rev = len(x0) - n_scores
    # L-BFGS-B on z = x * scale, scale ~ sqrt(curvature): an eta is seen by hundreds of
    # comparisons, a score by a dozen, and unscaled their curvatures differ by orders of
    # magnitude. There the Hessian is roughly the identity, so gtol reads in posterior
    # standard deviations.
    h_s = 1 / SCORE_PRIOR_SD ** 2 + 0.2 * (np.bincount(a, w, n_scores) + np.bincount(b, w, n_scores))
    h_eta = 1.0 + np.bincount(r, w, n_rev + len(fixed))[:n_rev]
    scale = np.sqrt(np.concatenate([h_s, h_eta]))

    def objective(z):
        f, g = neg_log_posterior(z / scale, a, b, y, r, w, n_scores, fixed)
        return f, g / scale

    lo, hi = ETA_BOUNDS
    bounds = Bounds(np.concatenate([np.full(n_scores, -np.inf), lo * scale[n_scores:]]),
                    np.concatenate([np.full(n_scores, np.inf), hi * scale[n_scores:]]))
    res = minimize(objective, x1 * scale, jac=True, method="L-BFGS-B", bounds=bounds, options=FIT_OPTIONS)
    x = res.x / scale
    return x[:n_scores], np.clip(x[n_scores:], lo, hi)
