"""Numba row kernels of the presorted CART builder (see :mod:`mfoml.wavelets.fasttree`).

Layout (``n`` samples with positive weight, ``d`` features; "sample ``i``" is position ``i`` in
the list of positively weighted samples). Every feature has a *row*: the samples sorted by that
feature's value, as positions (``uint16``/``uint32``) and float32 values in two flat arrays. A
node's row for feature ``f`` starts at ``base + f * stride`` and has ``m`` entries:

- global rows (``stride = n``, ``base`` = the node's start): each split partitions every row's
  range stably in place, so rows stay sorted inside every node;
- dense blocks (``stride = m``): a small node's rows are copied into a contiguous block of
  ``d * m`` entries, and a split writes the children as two such blocks (left at ``base``, right
  at ``base + d * m_left``) into the other of two buffers, so small nodes stay contiguous.

Rows of features found constant in a node are no longer maintained (scikit-learn's descendants
never read them either). A node reads and writes its rows in increasing feature order (memory
order; the order scikit-learn visits features in only decides ties, see ``cart_build``).

The criterion is scikit-learn's ``MSE`` on one-hot targets. With integer weights (bootstrap
counts) all its sums are integers, exact in float64, so ``Σ_k s_k²`` is kept with O(1) updates
per sample (``(s + w)² − s² = w (2 s + w)``) and the proxy ``Σ_k s_Lk² / w_L + Σ_k s_Rk² / w_R``
is evaluated bit-identically to scikit-learn's.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: scikit-learn's FEATURE_THRESHOLD (a float32 constant; comparisons are in float32).
FEATURE_THRESHOLD = np.float32(1e-7)
#: scikit-learn's EPSILON of the tree builder.
EPSILON = float(np.finfo(np.float64).eps)
RAND_R_MAX = 2147483647
TREE_LEAF = -1
TREE_UNDEFINED = -2
_KW = {"cache": True, "error_model": "numpy"}


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


@njit(cache=True, nogil=True)
def pack_keys(Xu, samples, f0, keys, shift):
    """``keys[k, j] = (order-preserving bits of X[samples[j], f0 + k]) << shift | j``.

    ``Xu``: X (N, d) float32 viewed as uint32; ``keys``: (nb, n) uint64. Negative floats get all
    bits flipped, the others the sign bit set, so unsigned order is float order.
    """
    nb, n = keys.shape
    sign = np.uint32(0x80000000)
    ones = np.uint32(0xFFFFFFFF)
    for j in range(n):
        row = Xu[samples[j], f0 : f0 + nb]
        tag = np.uint64(j)
        for k in range(nb):
            b = row[k]
            b = b ^ ones if b & sign else b | sign
            keys[k, j] = (np.uint64(b) << shift) | tag


@njit(cache=True, nogil=True)
def unpack_keys(keys, f0, shift, order, vals_u):
    """Inverse of :func:`pack_keys` on sorted keys: positions into ``order`` and float bits into
    ``vals_u`` (float32 storage viewed as uint32), rows ``f0 .. f0 + nb``."""
    nb, n = keys.shape
    mask = (np.uint64(1) << shift) - np.uint64(1)
    sign = np.uint32(0x80000000)
    ones = np.uint32(0xFFFFFFFF)
    for k in range(nb):
        key_row = keys[k]
        o_row = order[f0 + k]
        v_row = vals_u[f0 + k]
        for j in range(n):
            key = key_row[j]
            o_row[j] = key & mask
            b = np.uint32(key >> shift)
            v_row[j] = b ^ sign if b & sign else b ^ ones


@njit(**_KW)
def scan_feature(ofs, vfs, codes, wts, tot, par, cnt, floor):
    """Best proxy of one sorted row ``ofs``/``vfs`` (the node's m samples) and its position.

    ``par = [sq_tot, w_node, min_samples_leaf, min_weight_leaf]``. A candidate position ``q``
    (1..m-1) splits where the float32 values differ by more than FEATURE_THRESHOLD with at
    least ``min_samples_leaf`` samples and ``min_weight_leaf`` weight on each side. The proxy is
    evaluated as scikit-learn does (two divisions) only where the division-free test
    ``sq_l w_r + sq_r w_l >= bound w_l w_r`` (bound = the best so far less 1e-12 relative) says
    it may beat the best so far, so no candidate that scikit-learn would take is skipped; the
    first best position wins (strict ``>``). Returns ``(proxy, pos)``, pos -1 if none.

    ``floor``: the best proxy of the features scanned before in this node. A row whose maximum
    is below it cannot be the node's split, so the test starts from ``floor`` too: the row's
    exact maximum (and its first position) is returned whenever it reaches ``floor``, otherwise
    ``(-inf, -1)`` or a value below ``floor``. This only saves divisions.
    """
    m = ofs.shape[0]
    for k in range(cnt.shape[0]):
        cnt[k] = 0.0
    sq_tot, w_node, mwl = par[0], par[1], par[3]
    lo = int(par[2]) - 1  # q = p + 1 needs msl <= q <= m - msl
    hi = m - int(par[2])
    sq_l = 0.0  # Σ_k s_Lk²
    dot = 0.0  # Σ_k s_k s_Lk, so that Σ_k s_Rk² = sq_tot − 2 dot + sq_l
    w_l = 0.0
    best = -np.inf
    bound = floor * (1.0 - 1e-12)  # proxies are positive
    best_pos = -1
    v_prev = vfs[0]
    for p in range(m - 1):
        i = ofs[p]
        c = codes[i]
        w = wts[i]
        lc = cnt[c]
        sq_l += w * (2.0 * lc + w)
        dot += w * tot[c]
        cnt[c] = lc + w
        w_l += w
        v_next = vfs[p + 1]
        if v_next > v_prev + FEATURE_THRESHOLD and p >= lo and p < hi:
            w_r = w_node - w_l
            sq_r = sq_tot - 2.0 * dot + sq_l
            if (mwl <= 0.0 or (w_l >= mwl and w_r >= mwl)) and (
                sq_l * w_r + sq_r * w_l >= bound * (w_l * w_r)
            ):
                proxy = sq_l / w_l + sq_r / w_r
                if proxy > best:
                    best = proxy
                    bound = max(bound, proxy * (1.0 - 1e-12))
                    best_pos = p + 1
        v_prev = v_next
    return best, best_pos


@njit(**_KW)
def rows(scan, fo, fv, node, feats, lo, hi, ctx, dst, tmp):
    """Per-row work of a node for the features ``feats[lo:hi]``.

    ``node = (base, stride, m, m_left, skip, dense)``; ``ctx = (crit, res_proxy, res_pos,
    go_left)`` with ``crit = (codes, wts, tot, par, cnt)``. ``scan``: best proxy/position of
    each row into ``res_proxy``/``res_pos``. Otherwise partition by ``go_left``: in place and
    stable for global rows (row ``skip``, the split feature, is already partitioned), or, for a
    dense block, into ``dst = (do, dv)``: left row at ``base + f * m_left``, right row at
    ``base + d * m_left + f * (m - m_left)``. Both partitions are branch-free (a sample's side
    is unpredictable for features unrelated to the split).
    """
    base, stride, m, m_l, skip, dense = node
    crit, res_proxy, res_pos, go_left = ctx
    codes, wts, tot, par, cnt = crit
    do, dv = dst
    tmp_i, tmp_v = tmp
    d = res_proxy.shape[0]
    floor = -np.inf
    for t in range(lo, hi):
        f = feats[t]
        ofs = fo[base + f * stride : base + f * stride + m]
        vfs = fv[base + f * stride : base + f * stride + m]
        if scan:
            res_proxy[f], res_pos[f] = scan_feature(ofs, vfs, codes, wts, tot, par, cnt, floor)
            floor = max(floor, res_proxy[f])
        elif dense:
            w = base + f * m_l
            r = base + d * m_l + f * (m - m_l)
            for p in range(m):
                i = ofs[p]
                g = go_left[i]
                k = w if g else r
                do[k] = i
                dv[k] = vfs[p]
                w += g
                r += 1 - g
        elif f != skip:
            w = 0
            r = 0
            for p in range(m):
                i = ofs[p]
                v = vfs[p]
                g = go_left[i]
                ofs[w] = i
                vfs[w] = v
                tmp_i[r] = i
                tmp_v[r] = v
                w += g
                r += 1 - g
            for k in range(r):
                ofs[w + k] = tmp_i[k]
                vfs[w + k] = tmp_v[k]


@njit(parallel=True, **_KW)
def rows_parallel(scan, fo, fv, node, feats, lo, hi, ctx, dst, n_threads):
    """:func:`rows` over ``n_threads`` chunks of ``feats[lo:hi]``, each with own temporaries."""
    crit, res_proxy, res_pos, go_left = ctx
    codes, wts, tot, par, cnt = crit
    m = node[2]
    n_feats = hi - lo
    n_chunks = min(n_feats, n_threads)
    for ch in prange(n_chunks):
        crit_ch = (codes, wts, tot, par, np.empty(cnt.shape[0]))
        tmp = (np.empty(m, dtype=fo.dtype), np.empty(m, dtype=np.float32))
        a = lo + ch * n_feats // n_chunks
        b = lo + (ch + 1) * n_feats // n_chunks
        rows(scan, fo, fv, node, feats, a, b, (crit_ch, res_proxy, res_pos, go_left), dst, tmp)


@njit(**_KW)
def live_features(features, n_known, fv, base, stride, m, mark, is_const):
    """Mark the node's live features (``mark[f] = 1``; 0 for the ``n_known`` constants found at
    ancestors, whose rows are no longer maintained) and flag the live ones that are constant
    here (sorted row's last value within FEATURE_THRESHOLD of its first), in increasing feature
    order so that the rows are read in memory order."""
    d = features.shape[0]
    mark[:] = 1
    for k in range(n_known):
        mark[features[k]] = 0
    for f in range(d):
        if mark[f]:
            s0 = base + f * stride
            is_const[f] = fv[s0 + m - 1] <= fv[s0] + FEATURE_THRESHOLD


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
