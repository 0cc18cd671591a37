"""Numba row kernels of the presorted CART builder (see :mod:`mfoml.wavelets.fasttree`).

Layout (``n`` samples with positive weight, ``d`` features; "sample ``i``" is position ``i`` in
the list of positively weighted samples). Every feature has a *row*: the samples sorted by that
feature's value, as positions (``uint16``/``uint32``) and float32 values in two flat arrays. A
node's row for feature ``f`` starts at ``base + f * stride`` and has ``m`` slots: its
``n_neg`` negative samples (ascending), then its ``n_pos`` positive ones (ascending); the
others are its *zeros* (values ±0, between the two in the sorted order), which are not stored
(the last ``m - n_neg - n_pos`` slots are unused), so a row costs its nonzeros only. ReLU
layers are mostly zeros (62-92 % in the probe's dumps), and every step below skips them.

Rows live in two layouts:

- global rows (``stride = n``, ``base`` = the node's start): each split partitions every row's
  range stably in place, so rows stay sorted inside every node (the children's ranges are the
  node's first ``m_left`` and last ``m - m_left`` slots);
- dense blocks (``stride = m``): a small node's rows are copied into a contiguous block of
  ``d * m`` entries, and a split writes the children as two such blocks (left at ``base``, right
  at ``base + d * m_left``) into the other of two buffers, so small nodes stay contiguous.

The counts ``n_neg`` and ``n_pos`` of every row are kept per node (``cart_build``). Rows of
features found constant in a node are no longer maintained (scikit-learn's descendants never
read them either). A node reads and writes its rows in increasing feature order (memory order;
the order scikit-learn visits features in only decides ties, see ``cart_build``).

The criterion is scikit-learn's ``MSE`` on one-hot targets. With integer weights (bootstrap
counts) all its sums are integers, exact in float64, so ``Σ_k s_k²`` is kept with O(1) updates
per sample (``(s + w)² − s² = w (2 s + w)``) and the proxy ``Σ_k s_Lk² / w_L + Σ_k s_Rk² / w_R``
is evaluated bit-identically to scikit-learn's, from the sums of either side (the other side's
are the node's less these, and the two terms commute).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: scikit-learn's FEATURE_THRESHOLD (a float32 constant; comparisons are in float32).
FEATURE_THRESHOLD = np.float32(1e-7)
#: The value of the zero block (float32, as the rows' values).
ZERO = np.float32(0.0)
#: scikit-learn's EPSILON of the tree builder.
EPSILON = float(np.finfo(np.float64).eps)
RAND_R_MAX = 2147483647
#: Relative margin below the bound under which :func:`_skip` skips candidates.
SKIP_MARGIN = 1e-9
#: Nodes of fewer samples evaluate every candidate (there a skip saves less than it costs).
SKIP_MIN_M = 128
TREE_LEAF = -1
TREE_UNDEFINED = -2
_KW = {"cache": True, "error_model": "numpy"}
#: The per-row kernels allocate nothing, so they run without numba's reference counting (its
#: atomic increments and decrements of every array argument and slice took a fifth of a fit);
#: the per-row helpers are inlined into them (no call per row or per sample).
_NR = {**_KW, "_nrt": False}
_INLINE = {"inline": "always", **_NR}


@njit(**_KW)
def rand_int(low, high, state):
    """scikit-learn's ``rand_int``: ``low + our_rand_r(state) % (high - low)`` (32-bit xorshift)."""
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    # both operands < 2**31: a 32-bit division (a 64-bit one costs several times more)
    return low + np.int64(np.uint32(s & 0x7FFFFFFF) % np.uint32(high - low))


@njit(**_INLINE)
def _add(i, codes, wts, tot, cnt, sq, dot, w_s):
    """Add sample ``i`` to the walked part (arrays of :func:`scan_feature`): its class count
    ``cnt[codes[i]]`` and the part's ``(sq, dot, w_s) = (Σ_k s_k², Σ_k s_k tot_k, Σ w)``,
    returned."""
    c = codes[i]
    w = wts[i]
    lc = cnt[c]
    cnt[c] = lc + w
    return sq + w * (2.0 * lc + w), dot + w * tot[c], w_s + w


@njit(**_INLINE)
def _proxy(sq, dot, w_s, sq_tot, w_node, mwl, bound):
    """scikit-learn's proxy ``Σ s_Lk² / w_L + Σ s_Rk² / w_R`` of a split whose one side has the
    sums of :func:`_add` (the other side's Σ s_k² is ``sq_tot − 2 dot + sq``), or -inf where a
    side weighs less than ``mwl`` (min_weight_leaf) or the division-free test ``sq_l w_r +
    sq_r w_l >= bound w_l w_r`` says the proxy is below ``bound`` (the two terms commute, so
    either side's sums give scikit-learn's value bit for bit)."""
    sq_o = sq_tot - 2.0 * dot + sq
    w_o = w_node - w_s
    if (mwl <= 0.0 or (w_s >= mwl and w_o >= mwl)) and sq * w_o + sq_o * w_s >= bound * (w_s * w_o):
        return sq / w_s + sq_o / w_o
    return -np.inf


@njit(**_INLINE)
def _walk_start(par, cnt):
    """A walk's constants ``(sq_tot, w_node, min_samples_leaf, min_weight_leaf)`` from ``par``
    and its initial ``(sq, dot, w_s, best, pos)``; clears the class counts ``cnt``."""
    for k in range(cnt.shape[0]):
        cnt[k] = 0.0
    return par[0], par[1], int(par[2]), par[3], 0.0, 0.0, 0.0, -np.inf, -1


@njit(**_NR)  # not inlined: a cold path, kept out of the walks' loops
def _skip(sq, dot, w_s, sq_tot, w_node, bound):
    """Weight that can be moved into the walked part before any proxy reaches ``bound``.

    With the walked part's sums ``(sq, w_s)`` and the other part's ``(sq_o, w_o)`` (:func:`_add`),
    moving samples of total weight ``Δ`` across raises the walked term ``sq / w`` by at most
    ``Δ`` (``‖s‖² / w`` is sublinear and a moved class vector ``a`` has ``‖a‖² / Δ <= Δ``) and
    leaves the other term at most ``sq_o / (w_o - Δ)`` (its counts only fall). Every proxy
    within ``Δ*`` is below ``bound (1 - SKIP_MARGIN)``, where ``Δ*`` is the root in ``[0, w_o)``
    of ``sq / w_s + Δ + sq_o / (w_o - Δ) = that``, in the cancellation-free form; 0 where the
    current proxy is not below it. The margin dwarfs the rounding of these few operations, so
    no candidate that the proxy test would accept is skipped."""
    sq_o = sq_tot - 2.0 * dot + sq
    w_o = w_node - w_s
    b = bound * (1.0 - SKIP_MARGIN) - sq / w_s
    num = b * w_o - sq_o
    if num <= 0.0:
        return 0.0
    return 2.0 * num / ((w_o + b) + np.sqrt((w_o - b) * (w_o - b) + 4.0 * sq_o))


@njit(**_INLINE)
def _walk_up(ofs, vfs, stop, m, codes, wts, tot, par, cnt, bound):
    """Slots ``0 .. stop - 1`` upwards with the sums of the left part (slot = position); the
    candidate after slot ``p`` lies between ``vfs[p]`` and ``vfs[p + 1]``. Returns ``(best,
    pos, bound)``: the first best proxy (-inf if none reaches ``bound``), its position (samples
    on the left), the bound raised to it. After a candidate below the bound, the candidates
    within :func:`_skip`'s weight are not evaluated (the sums are still kept)."""
    sq_tot, w_node, msl, mwl, sq, dot, w_s, best, pos = _walk_start(par, cnt)
    resume = 0.0  # the walked weight from which candidates are evaluated again
    one = np.uint64(1)
    for p in range(np.uint64(stop)):  # unsigned slots: no wraparound code in the loop
        sq, dot, w_s = _add(ofs[p], codes, wts, tot, cnt, sq, dot, w_s)
        q = np.int64(p) + 1
        if w_s >= resume and vfs[p + one] > vfs[p] + FEATURE_THRESHOLD and msl <= q <= m - msl:
            proxy = _proxy(sq, dot, w_s, sq_tot, w_node, mwl, bound)
            if proxy > best:
                best, pos, bound = proxy, q, max(bound, proxy * (1.0 - 1e-12))
            elif bound > -np.inf and m >= SKIP_MIN_M:
                resume = w_s + _skip(sq, dot, w_s, sq_tot, w_node, bound)
    return best, pos, bound


@njit(**_INLINE)
def _walk_down(ofs, vfs, start, stop, m, codes, wts, tot, par, cnt, bound):
    """Slots ``stop - 1`` down to ``start`` with the sums of the right part (slot ``p`` is
    position ``p + m - stop``: the row's zeros lie below ``start``); the candidate before slot
    ``p`` lies between ``vfs[p - 1]`` and ``vfs[p]``. Returns ``(best, pos, bound)`` as
    :func:`_walk_up`, the leftmost of equal best proxies (``>=`` as it walks down), with the
    same skipping."""
    sq_tot, w_node, msl, mwl, sq, dot, w_s, best, pos = _walk_start(par, cnt)
    resume = 0.0
    for t in range(stop - start):
        p = stop - 1 - t
        up = np.uint64(p)  # unsigned where the slot is never -1: no wraparound code
        sq, dot, w_s = _add(ofs[up], codes, wts, tot, cnt, sq, dot, w_s)
        q = p + m - stop
        if w_s >= resume and vfs[up] > vfs[p - 1] + FEATURE_THRESHOLD and msl <= q <= m - msl:
            proxy = _proxy(sq, dot, w_s, sq_tot, w_node, mwl, bound)
            if proxy >= best and proxy > -np.inf:
                best, pos, bound = proxy, q, max(bound, proxy * (1.0 - 1e-12))
            elif bound > -np.inf and m >= SKIP_MIN_M:
                resume = w_s + _skip(sq, dot, w_s, sq_tot, w_node, bound)
    return best, pos, bound


@njit(**_INLINE)
def scan_feature(ofs, vfs, n_neg, n_pos, codes, wts, tot, par, cnt, floor):
    """Best proxy of one row (``ofs``/``vfs``: its m slots, ``n_neg`` negatives and ``n_pos``
    positives) and its position.

    ``codes`` (n,) classes, ``wts`` (n,) integer weights, ``tot`` (L,) the node's class sums,
    ``par = [sq_tot, w_node, min_samples_leaf, min_weight_leaf]``, ``cnt`` (L,) scratch. A
    candidate position ``q`` (samples on the left, 1..m-1) splits where consecutive values of
    the sorted row, zeros included, differ by more than FEATURE_THRESHOLD in float32, with at
    least ``min_samples_leaf`` samples and ``min_weight_leaf`` weight on each side.

    A row without zeros is walked upwards in one go. A row with zeros is walked from both ends
    towards them: the negatives upwards, then the positives downwards (the slot next to each
    walk's end holds a zero meanwhile; slot -1 is the row's last, unused slot), so the zeros
    cost nothing. The proxy is evaluated as scikit-learn does (two divisions) only where the
    division-free test says it may beat the best so far (bound = that less 1e-12 relative), and
    that test runs only where :func:`_skip`'s bound (an upper bound of the proxies within a
    weight of the last candidate below the bound) does not rule it out; neither skips a
    candidate that scikit-learn would take. The leftmost best position wins (scikit-learn's
    strict ``>``). Returns ``(proxy, pos)``, pos -1 if none.

    ``floor``: the best proxy of the features scanned before in this node. A row whose maximum
    is below it cannot be the node's split, so the test starts from ``floor`` too: the row's
    exact maximum (and its first position) is returned whenever it reaches ``floor``, otherwise
    ``(-inf, -1)`` or a value below ``floor``. This only saves proxy evaluations.
    """
    m = ofs.shape[0]
    nz = n_neg + n_pos
    bound = floor * (1.0 - 1e-12)  # proxies are positive
    if nz == m:
        best, pos, bound = _walk_up(ofs, vfs, m - 1, m, codes, wts, tot, par, cnt, bound)
        return best, pos
    best = best_hi = -np.inf
    pos = pos_hi = -1
    if n_neg > 0:
        keep = vfs[n_neg]
        vfs[n_neg] = ZERO
        best, pos, bound = _walk_up(ofs, vfs, n_neg, m, codes, wts, tot, par, cnt, bound)
        vfs[n_neg] = keep
    if n_pos > 0:
        keep = vfs[n_neg - 1]
        vfs[n_neg - 1] = ZERO
        best_hi, pos_hi, bound = _walk_down(
            ofs, vfs, n_neg, nz, m, codes, wts, tot, par, cnt, bound
        )
        vfs[n_neg - 1] = keep
    if best_hi > best:  # the positives' candidates lie right of the negatives'
        return best_hi, pos_hi
    return best, pos


@njit(**_INLINE)
def _send(ofs, vfs, p0, p1, go_left, do, dv, a, b):
    """Slots ``p0 .. p1 - 1`` of a row into ``do``/``dv``: a sample going left to slot ``a``,
    one going right to ``b``, each then moved up (branch-free: a sample's side is unpredictable
    for features unrelated to the split). Returns the final ``(a, b)``. Indices are unsigned
    (numba then emits no wraparound code for negative indices, which cost the loop registers)."""
    ua, ub = np.uint64(a), np.uint64(b)
    for p in range(np.uint64(p0), np.uint64(p1)):
        i = ofs[p]
        g = np.uint64(go_left[i])
        k = ua if g else ub
        do[k] = i
        dv[k] = vfs[p]
        ua += g
        ub += np.uint64(1) - g
    return np.int64(ua), np.int64(ub)


@njit(**_INLINE)
def _send_in_place(ofs, vfs, p0, p1, go_left, tmp_i, tmp_v, a, b):
    """:func:`_send` with the left side in place (``a <= p``) and the right side into
    ``tmp_i``/``tmp_v`` (both written, one kept: branch-free)."""
    ua, ub = np.uint64(a), np.uint64(b)
    for p in range(np.uint64(p0), np.uint64(p1)):
        i = ofs[p]
        v = vfs[p]
        g = np.uint64(go_left[i])
        ofs[ua] = i
        vfs[ua] = v
        tmp_i[ub] = i
        tmp_v[ub] = v
        ua += g
        ub += np.uint64(1) - g
    return np.int64(ua), np.int64(ub)


@njit(**_NR)
def rows(scan, fo, fv, node, feats, lo, hi, ctx, counts, dst, tmp):
    """Per-row work of a node for the features ``feats[lo:hi]``.

    ``node = (base, stride, m, m_left, dense)``; ``ctx = (crit, res_proxy, res_pos, go_left)``
    with ``crit`` as in :func:`scan_feature`; ``counts = (node, left, right)``: (2, d) int32
    arrays, each row's ``n_neg`` (``[0]``) and ``n_pos`` (``[1]``) in the node and in its
    children (``right`` may be ``node``: an entry is read before it is written). ``scan``:
    best proxy/position of each row into ``res_proxy``/``res_pos``. Otherwise partition each
    row's nonzeros stably by ``go_left``: a dense block into ``dst = (do, dv)`` (left row at
    ``base + f * m_left``, right row at ``base + d * m_left + f * (m - m_left)``), a global row
    in place (the right child's row from slot ``m_left``, through ``tmp``: two arrays of m).
    """
    base, stride, m, m_l, dense = node
    crit, res_proxy, res_pos, go_left = ctx
    c_node, c_left, c_right = counts
    codes, wts, tot, par, cnt = crit
    do, dv = dst
    tmp_i, tmp_v = tmp
    d = res_proxy.shape[0]
    floor = -np.inf
    for t in range(lo, hi):
        f = feats[t]
        s0 = base + f * stride
        ofs = fo[s0 : s0 + m]
        vfs = fv[s0 : s0 + m]
        n_neg, n_pos = c_node[0, f], c_node[1, f]
        if scan:
            res_proxy[f], res_pos[f] = scan_feature(
                ofs, vfs, n_neg, n_pos, codes, wts, tot, par, cnt, floor
            )
            floor = max(floor, res_proxy[f])
            continue
        if dense:
            a0 = base + f * m_l
            b0 = base + d * m_l + f * (m - m_l)
            a, b = _send(ofs, vfs, 0, n_neg, go_left, do, dv, a0, b0)
            c_left[0, f], c_right[0, f] = a - a0, b - b0
            a, b = _send(ofs, vfs, n_neg, n_neg + n_pos, go_left, do, dv, a, b)
        else:
            a0 = b0 = 0
            a, b = _send_in_place(ofs, vfs, 0, n_neg, go_left, tmp_i, tmp_v, a0, b0)
            c_left[0, f], c_right[0, f] = a - a0, b - b0
            a, b = _send_in_place(ofs, vfs, n_neg, n_neg + n_pos, go_left, tmp_i, tmp_v, a, b)
            for k in range(np.uint64(b)):  # unsigned: no wraparound code
                ofs[np.uint64(m_l) + k] = tmp_i[k]
                vfs[np.uint64(m_l) + k] = tmp_v[k]
        c_left[1, f] = a - a0 - c_left[0, f]
        c_right[1, f] = b - b0 - c_right[0, f]


@njit(parallel=True, **_KW)
def rows_parallel(scan, fo, fv, node, feats, lo, hi, ctx, counts, dst, n_threads):
    """:func:`rows` over ``n_threads`` chunks of ``feats[lo:hi]``, each with own temporaries."""
    crit, res_proxy, res_pos, go_left = ctx
    codes, wts, tot, par, cnt = crit
    m = node[2]
    n_feats = hi - lo
    n_chunks = min(n_feats, n_threads)
    for ch in prange(n_chunks):
        crit_ch = (codes, wts, tot, par, np.empty_like(cnt))
        tmp = (np.empty(m, dtype=fo.dtype), np.empty(m, dtype=np.float32))
        a = lo + ch * n_feats // n_chunks
        b = lo + (ch + 1) * n_feats // n_chunks
        ctx_ch = (crit_ch, res_proxy, res_pos, go_left)
        rows(scan, fo, fv, node, feats, a, b, ctx_ch, counts, dst, tmp)


@njit(**_KW)
def live_features(features, n_known, fv, base, stride, m, counts, mark, is_const):
    """Mark the node's live features (``mark[f] = 1``; 0 for the ``n_known`` constants found at
    ancestors, whose rows are no longer maintained) and flag the live ones that are constant
    here (the largest value within FEATURE_THRESHOLD of the smallest, zeros included;
    ``counts``: (2, d) ``n_neg``, ``n_pos`` of the rows), in increasing feature order so that
    the rows are read in memory order."""
    d = features.shape[0]
    mark[:] = 1
    for k in range(n_known):
        mark[features[k]] = 0
    for f in range(d):
        if mark[f]:
            s0 = base + f * stride
            n_neg, n_pos = counts[0, f], counts[1, f]
            full = n_neg + n_pos == m
            lo = fv[s0] if n_neg > 0 or full else ZERO
            hi = fv[s0 + n_neg + n_pos - 1] if n_pos > 0 or full else ZERO
            is_const[f] = hi <= lo + FEATURE_THRESHOLD


@njit(**_KW)
def draw_features(features, constant_features, n_known, max_features, is_const, state, visit):
    """scikit-learn's Fisher-Yates feature draws of ``node_split_best`` for one node.

    Fills ``visit`` with the non-constant features in the order scikit-learn evaluates them
    (its ``rand_r`` generator ``state``) and applies its bookkeeping of ``features`` and
    ``constant_features`` (``is_const``: see :func:`live_features`). Returns
    ``(n_visit, n_total_constants)``: ``features[n_known:n_total]`` are the constants found.
    """
    d = features.shape[0]
    f_i = d
    n_visited = n_found = n_drawn = nv = 0
    n_total = n_known
    while f_i > n_total and (n_visited < max_features or n_visited <= n_found + n_drawn):
        n_visited += 1
        f_j = rand_int(n_drawn, f_i - n_found, state)
        if f_j < n_known:
            features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
            n_drawn += 1
            continue
        f_j += n_found
        f = features[f_j]
        if is_const[f]:
            features[f_j], features[n_total] = features[n_total], features[f_j]
            n_found += 1
            n_total += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        visit[nv] = f
        nv += 1
    for k in range(n_known):
        features[k] = constant_features[k]
    for k in range(n_known, n_total):
        constant_features[k] = features[k]
    return nv, n_total


@njit(**_KW)
def sorted_lists(features, n_known, n_total, visit, nv, mark, scan_list, part_list):
    """The visited features and the rows to keep for the children (all live features but the
    constants just found), each in increasing order. Returns their lengths."""
    for k in range(n_known, n_total):
        mark[features[k]] = 0
    for t in range(nv):
        mark[visit[t]] = 2
    ns = npart = 0
    for f in range(features.shape[0]):
        if mark[f] == 2:
            scan_list[ns] = f
            ns += 1
        if mark[f]:
            part_list[npart] = f
            npart += 1
    return ns, npart


@njit(**_KW)
def impurity(cnt, w, n_outputs):
    """scikit-learn's ``MSE`` impurity of one-hot rows, ``(w / w − Σ_k (s_k / w)²) / L``, in its
    order of operations (``w / w`` is its ``sq_sum / weighted_n``)."""
    imp = w / w
    for k in range(cnt.shape[0]):
        imp -= (cnt[k] / w) ** 2
    return imp / n_outputs


@njit(**_KW)
def apply_tree(X, left, right, feature, threshold):
    """Leaf id of every row of X (n, d) float32: ``X[i, f] <= threshold`` goes left."""
    n = X.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        node = 0
        while left[node] != TREE_LEAF:
            node = left[node] if X[i, feature[node]] <= threshold[node] else right[node]
        out[i] = node
    return out


@njit(**_KW)
def decision_paths(X, left, right, feature, threshold):
    """CSR ``(indptr, indices)`` of the nodes on each row's root-to-leaf path (root first)."""
    n = X.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        node = 0
        length = 1
        while left[node] != TREE_LEAF:
            node = left[node] if X[i, feature[node]] <= threshold[node] else right[node]
            length += 1
        indptr[i + 1] = indptr[i] + length
    indices = np.empty(indptr[n], dtype=np.int64)
    for i in range(n):
        node = 0
        k = indptr[i]
        indices[k] = 0
        while left[node] != TREE_LEAF:
            node = left[node] if X[i, feature[node]] <= threshold[node] else right[node]
            k += 1
            indices[k] = node
    return indptr, indices
