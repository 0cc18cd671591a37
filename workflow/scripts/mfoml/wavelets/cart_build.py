"""The depth-first tree builder of :mod:`mfoml.wavelets.fasttree` (numba).

It follows scikit-learn's ``DepthFirstTreeBuilder`` + ``BestSplitter`` + ``MSE`` node by node,
in the same depth-first order (nodes are numbered as scikit-learn numbers them): the same leaf
rules, node values, impurities and counts, and the same tie-breaking, because the order in
which features are visited is scikit-learn's ``rand_r`` Fisher-Yates draw sequence, simulated
with its constant-feature bookkeeping (:func:`~mfoml.wavelets.cart_kernels.draw_features`);
within a feature the first best position wins, across features the first visited feature with
the largest proxy (strict ``>``, as scikit-learn compares). The rows and their kernels are
described in :mod:`mfoml.wavelets.cart_kernels`.

numba's on-disk cache of a function is keyed by its own source file, and ``build_tree``'s
cached machine code contains the ``cart_kernels`` functions it calls: an edit of
``cart_kernels.py`` alone would leave ``build_tree`` running the old kernels from the cache. So
this file carries :data:`KERNELS_DIGEST`, the digest of ``cart_kernels.py``; a test
(``tests/test_fasttree.py``) fails until it is updated, and updating it changes this file, which
invalidates the cache for every user of the new code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mfoml.wavelets.cart_kernels import (
    EPSILON,
    TREE_LEAF,
    TREE_UNDEFINED,
    ZERO,
    draw_features,
    impurity,
    live_features,
    rows,
    rows_parallel,
    sorted_lists,
)

#: sha256 of ``cart_kernels.py`` (first 16 hex digits): see the module docstring
KERNELS_DIGEST = "9aa2b6e2518b0f8b"
_KW = {"cache": True, "error_model": "numpy"}
#: columns of the integer node table and of the stack
LEFT, RIGHT, FEATURE, N_NODE = 0, 1, 2, 3
START, M, BASE, BUF, DEPTH, PARENT, IS_LEFT, N_CONST = 0, 1, 2, 3, 4, 5, 6, 7


@njit(**_KW)
def _push(st, st_imp, sp, start, m, base, buf, depth, parent, is_left, n_const, imp):
    st[sp, START], st[sp, M], st[sp, BASE], st[sp, BUF] = start, m, base, buf
    st[sp, DEPTH], st[sp, PARENT], st[sp, IS_LEFT], st[sp, N_CONST] = (
        depth,
        parent,
        is_left,
        n_const,
    )
    st_imp[sp] = imp
    return sp + 1


@njit(**_KW)
def _stable_partition(a, start, m, go_left, tmp):
    """Samples ``a[start:start+m]`` with ``go_left`` first, order kept on both sides."""
    w = start
    r = 0
    for p in range(start, start + m):
        i = a[p]
        if go_left[i]:
            a[w] = i
            w += 1
        else:
            tmp[r] = i
            r += 1
    for k in range(r):  # (explicit loops: array-to-slice assignment is slow to compile)
        a[w + k] = tmp[k]


@njit(**_KW)
def _split_sides(fo, fv, s0, m, c, pos, go_left, node_samples):
    """Send the node's samples (``node_samples``, m) to their side of the split of the row at
    ``s0`` (``c = (n_neg, n_pos)``) that leaves ``pos`` samples on the left: ``go_left[i]`` 1 or
    0. Returns the float32 values on both sides of the split (the last one on the left, the
    first one on the right; 0 for a zero)."""
    n_neg, nz = c[0], c[0] + c[1]
    z = m - nz
    for i in node_samples:  # the zeros' side (a split is never between two zeros)
        go_left[i] = pos > n_neg
    for p in range(nz):
        go_left[fo[s0 + p]] = (p if p < n_neg else p + z) < pos
    sides = np.empty(2, dtype=np.float32)
    for k in range(2):
        q = pos - 1 + k  # position -> slot
        sides[k] = fv[s0 + q] if q < n_neg else (ZERO if q < n_neg + z else fv[s0 + q - z])
    return sides[0], sides[1]


@njit(**_KW)
def build_tree(
    go, gv, counts0, n, codes, wts, limits, state, par_min_work, n_threads, m_dense, arenas
):
    """Depth-first CART build in scikit-learn's node order.

    Parameters
    ----------
    go, gv : (d * n,) the presorted global rows (positions uint16/uint32, float32 values): row
        ``f`` at ``f * n`` (:mod:`~mfoml.wavelets.cart_presort`).
    counts0 : (2, d) int32, the rows' numbers of negative and positive values.
    n : samples with positive weight;  codes : (n,) uint32 classes;  wts : (n,) float64
        integer weights.
    limits : float64 ``[n_classes, weighted_n_samples, max_depth, min_samples_split,
        min_samples_leaf, min_weight_leaf, max_features, min_impurity_decrease]`` (scikit-learn's
        resolved values).
    state : (1,) int64, the splitter's ``rand_r`` state;  par_min_work : entries (samples x
        features) from which a node's rows are processed by ``n_threads`` threads;
    m_dense : nodes of at most this many samples are copied into dense blocks;
    arenas : ``(o0, v0, o1, v1)``, two dense-block buffers of ``d * m_dense`` entries.

    Returns
    -------
    ``(ints (k, 4) [left, right, feature, n_node_samples], floats (k, 3) [threshold, impurity,
    weighted_n_node_samples], missing_go_to_left (k,), value (k, n_classes), max_depth)``.
    """
    L = int(limits[0])
    weighted_n_samples = limits[1]
    max_depth, mss, msl = int(limits[2]), int(limits[3]), int(limits[4])
    mwl, max_features, min_impurity_decrease = limits[5], int(limits[6]), limits[7]
    d = go.shape[0] // max(n, 1)
    o0, v0, o1, v1 = arenas
    zero = n - n  # runtime values for kernel arguments (literals would add specializations)
    scan, part = zero == 0, zero != 0
    cap = max(1, 2 * n - 1)
    if max_depth < 30:
        cap = min(cap, 2 ** (max_depth + 1) - 1)
    ints = np.full((cap, 4), TREE_LEAF, dtype=np.int64)
    floats = np.zeros((cap, 3))
    mgl = np.zeros(cap, dtype=np.uint8)
    value = np.zeros((cap, L))
    st = np.empty((n + 2, 8), dtype=np.int64)  # depth-first stack, right child pushed first
    st_imp = np.empty(n + 2)
    features = np.arange(d)
    constant_features = np.zeros(d, dtype=np.int64)
    visit = np.empty(d, dtype=np.int64)
    scan_list = np.empty(d, dtype=np.int64)
    part_list = np.empty(d, dtype=np.int64)
    mark = np.zeros(d, dtype=np.int8)
    is_const = np.zeros(d, dtype=np.bool_)
    res_proxy = np.empty(d)
    res_pos = np.empty(d, dtype=np.int64)
    go_left = np.zeros(n, dtype=np.uint8)
    tmp = (np.empty(n, dtype=go.dtype), np.empty(n, dtype=np.float32))
    tot = np.zeros(L)
    cnt = np.zeros(L)
    par = np.zeros(4)
    par[2], par[3] = msl, mwl
    crit = (codes, wts, tot, par, np.zeros(L))
    ctx = (crit, res_proxy, res_pos, go_left)
    samp = np.arange(n).astype(go.dtype)  # each node's samples in [start, start + m)
    # the rows' (n_neg, n_pos) in the node of stack slot s: counts[s] (grown on demand)
    counts = np.empty((min(n, max_depth, 30) + 2, 2, d), dtype=np.int32)
    counts[0] = counts0
    sp = _push(st, st_imp, 0, 0, n, 0, -1, 0, -1, 0, 0, np.inf)
    node_count = 0
    max_depth_seen = -1
    while sp > 0:
        sp -= 1
        start, m, base, buf = st[sp, START], st[sp, M], st[sp, BASE], st[sp, BUF]
        depth, parent, is_left, n_known = (
            st[sp, DEPTH],
            st[sp, PARENT],
            st[sp, IS_LEFT],
            st[sp, N_CONST],
        )
        imp = st_imp[sp]
        tot[:] = 0.0
        w_node = 0.0
        for p in range(start, start + m):
            i = samp[p]
            tot[codes[i]] += wts[i]
            w_node += wts[i]
        is_leaf = depth >= max_depth or m < mss or m < 2 * msl or w_node < 2 * mwl
        if node_count == 0:
            imp = impurity(tot, w_node, L)
        is_leaf = is_leaf or imp <= EPSILON
        feat = zero + TREE_UNDEFINED
        thr = float(TREE_UNDEFINED)
        pos = m
        imp_l = imp_r = w_l = w_r = 0.0
        n_total = n_known
        ns = npart = zero
        if buf < 0:
            fo, fv, stride, base = go, gv, n, start
        elif buf == 0:
            fo, fv, stride = o0, v0, m
        else:
            fo, fv, stride = o1, v1, m
        c_node = counts[sp]
        if not is_leaf:
            live_features(features, n_known, fv, base, stride, m, c_node, mark, is_const)
            if buf < 0 and m <= m_dense:  # copy the live rows into a dense block of buffer 0
                for f in range(d):
                    if mark[f]:  # unsigned offsets: no wraparound code in the copy
                        dst0, src0 = np.uint64(f * m), np.uint64(f * n + start)
                        for p in range(np.uint64(c_node[0, f] + c_node[1, f])):
                            o0[dst0 + p] = go[src0 + p]
                            v0[dst0 + p] = gv[src0 + p]
                fo, fv, stride, base, buf = o0, v0, m, zero, zero
            args = (features, constant_features, n_known, max_features, is_const, state, visit)
            nv, n_total = draw_features(*args)
            ns, npart = sorted_lists(
                features, n_known, n_total, visit, nv, mark, scan_list, part_list
            )
            par[0] = np.sum(tot * tot)
            par[1] = w_node
            node = (base, stride, m, zero, zero)
            c3 = (c_node, c_node, c_node)
            if n_threads > 1 and ns * m >= par_min_work:
                rows_parallel(scan, fo, fv, node, scan_list, zero, ns, ctx, c3, (fo, fv), n_threads)
            else:
                rows(scan, fo, fv, node, scan_list, zero, ns, ctx, c3, (fo, fv), tmp)
            best = -np.inf
            for t in range(nv):
                if res_proxy[visit[t]] > best:
                    best = res_proxy[visit[t]]
                    feat = visit[t]
                    pos = res_pos[feat]
            if pos < m:
                v_lo, v_hi = _split_sides(
                    fo,
                    fv,
                    base + feat * stride,
                    m,
                    c_node[:, feat],
                    pos,
                    go_left,
                    samp[start : start + m],
                )
                cnt[:] = 0.0
                for p in range(start, start + m):  # branch-free: sides are unpredictable
                    i = samp[p]
                    w_i = wts[i] * go_left[i]
                    cnt[codes[i]] += w_i
                    w_l += w_i
                w_r = w_node - w_l
                imp_l = impurity(cnt, w_l, L)
                imp_r = impurity(tot - cnt, w_r, L)
                improvement = (w_node / weighted_n_samples) * (
                    imp - (w_r / w_node * imp_r) - (w_l / w_node * imp_l)
                )
                thr = np.float64(v_lo) / 2.0 + np.float64(v_hi) / 2.0
                is_leaf = improvement + EPSILON < min_impurity_decrease
            else:
                is_leaf = True
        node_id = node_count
        node_count += 1
        if parent >= 0:
            ints[parent, LEFT if is_left else RIGHT] = node_id
        ints[node_id, N_NODE] = m
        floats[node_id, 1], floats[node_id, 2] = imp, w_node
        for k in range(L):
            value[node_id, k] = tot[k] / w_node
        max_depth_seen = max(max_depth_seen, depth)
        if is_leaf:
            ints[node_id, FEATURE] = TREE_UNDEFINED
            floats[node_id, 0] = TREE_UNDEFINED
            continue
        ints[node_id, FEATURE] = feat
        floats[node_id, 0] = thr
        mgl[node_id] = 1 if pos > m - pos else 0
        # partition the live rows (features[n_total:]) unless both children are leaves
        leaf_l = pos < mss or pos < 2 * msl or w_l < 2 * mwl or imp_l <= EPSILON
        leaf_r = m - pos < mss or m - pos < 2 * msl or w_r < 2 * mwl or imp_r <= EPSILON
        if depth + 1 < max_depth and not (leaf_l and leaf_r):
            dense = zero + (buf >= 0)
            dst = (o1, v1) if buf == 0 else (o0, v0)
            node = (base, stride, m, pos, dense)
            if sp + 2 > counts.shape[0]:
                grown = np.empty((2 * counts.shape[0], 2, d), dtype=np.int32)
                grown[: counts.shape[0]] = counts
                counts = grown
            c3 = (counts[sp], counts[sp + 1], counts[sp])  # node, left child, right child
            if n_threads > 1 and npart * m >= par_min_work:
                rows_parallel(part, fo, fv, node, part_list, zero, npart, ctx, c3, dst, n_threads)
            else:
                rows(part, fo, fv, node, part_list, zero, npart, ctx, c3, dst, tmp)
        _stable_partition(samp, start, m, go_left, tmp[0])
        if buf < 0:
            base_l, base_r, child = start, start + pos, zero - 1
        else:
            base_l, base_r, child = base, base + d * pos, 1 - buf
        sp = _push(
            st,
            st_imp,
            sp,
            start + pos,
            m - pos,
            base_r,
            child,
            depth + 1,
            node_id,
            0,
            n_total,
            imp_r,
        )
        sp = _push(st, st_imp, sp, start, pos, base_l, child, depth + 1, node_id, 1, n_total, imp_l)
    k = node_count
    return ints[:k].copy(), floats[:k].copy(), mgl[:k].copy(), value[:k].copy(), max_depth_seen
