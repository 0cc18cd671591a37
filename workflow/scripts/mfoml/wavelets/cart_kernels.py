"""Numba kernels of the presorted CART builder (see :mod:`mfoml.wavelets.fasttree`).

Data layout of one tree fit (``n`` = samples with positive weight, ``d`` = features). Sample
``i`` means position ``i`` in the list of positively weighted samples.

- Global rows: ``go`` (d * n) uint16/int32 and ``gv`` (d * n) float32, row ``f`` at ``f * n``:
  for every feature the samples sorted by its value. A node owns the range ``[start, start +
  m)`` of every row, and a split partitions each row's range stably, so rows stay sorted inside
  every node (scikit-learn sorts again at every node instead).
- Dense blocks: a node with at most ``m_dense`` samples is copied into a block of ``d`` rows of
  ``m`` (row ``f`` at ``base + f * m``); its split writes the children as two such blocks
  (left at ``base``, right at ``base + d * m_left``) into the other of two buffers. Small
  nodes thus stay contiguous and cache-resident, whatever their depth.
- Rows of features found constant in a node are no longer maintained (scikit-learn's
  descendants never read them either). ``samp`` holds each node's samples in ``[start, start +
  m)``; ``codes`` (n,) int32 classes; ``wts`` (n,) float64 integer weights (bootstrap counts).

The criterion is scikit-learn's ``MSE`` on one-hot targets. With integer weights all its sums
are integers (exact in float64), so the proxy ``Σ_k s_Lk² / w_L + Σ_k s_Rk² / w_R`` is kept
with O(1) updates per sample (``(s + w)² − s² = w (2 s + w)``) and evaluated bit-identically
to scikit-learn's.

Tie-breaking reproduces scikit-learn's ``BestSplitter``: the order in which features are
visited comes from its ``rand_r`` xorshift generator and its Fisher-Yates draws over the
``features`` array (with its known/found constant-feature bookkeeping), simulated node by node
in the same depth-first order; within a feature the first best position wins, across features
the first visited feature with the largest proxy (strict ``>`` as in scikit-learn).
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
SCAN, PART_INPLACE, PART_DENSE = 0, 1, 2


@njit(cache=True, error_model="numpy")
def _rand_int(low, high, state):
    """scikit-learn's ``rand_int``: ``low + our_rand_r(state) % (high - low)`` (32-bit xorshift)."""
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s & 0x7FFFFFFF) % (high - low)


@njit(cache=True, nogil=True)
def pack_keys(Xu, samples, f0, keys, shift):
    """``keys[k, j] = (order-preserving bits of X[samples[j], f0 + k]) << shift | j``.

    ``Xu``: X (N, d) float32 viewed as uint32; ``keys``: (nb, n) uint64. Negative floats have
    all bits flipped, non-negative ones the sign bit set, so unsigned order == float order.
    """
    nb, n = keys.shape
    for j in range(n):
        row = samples[j]
        for k in range(nb):
            b = np.uint64(Xu[row, f0 + k])
            if b & 0x80000000:
                b = b ^ 0xFFFFFFFF
            else:
                b = b | 0x80000000
            keys[k, j] = (b << shift) | np.uint64(j)


@njit(cache=True, nogil=True)
def unpack_keys(keys, f0, shift, order, vals_u):
    """Inverse of :func:`pack_keys` on sorted keys: positions into ``order``, value bits into
    ``vals_u`` (float32 storage viewed as uint32), rows ``f0 .. f0 + nb``."""
    nb, n = keys.shape
    mask = (np.uint64(1) << shift) - np.uint64(1)
    for k in range(nb):
        for j in range(n):
            key = keys[k, j]
            order[f0 + k, j] = key & mask
            b = key >> shift
            if b & 0x80000000:
                b = b ^ 0x80000000
            else:
                b = b ^ 0xFFFFFFFF
            vals_u[f0 + k, j] = b


@njit(cache=True, error_model="numpy")
def _scan_feature(of, vf, start, m, codes, wts, tot, sq_tot, w_node, msl, mwl, cnt):
    """Best proxy of one feature on a node and its position (1..m-1; -1 if none).

    ``of[start:start+m]`` / ``vf[...]``: the node's samples sorted by the feature. A candidate
    position ``q`` splits between ``q - 1`` and ``q`` where the values differ by more than
    FEATURE_THRESHOLD (in float32) and both sides hold ``>= msl`` samples and ``>= mwl`` weight.
    The proxy is evaluated in float64 exactly as scikit-learn does only where a division-free
    test ``A >= bound * B`` (``A = sq_l w_r + sq_r w_l``, ``B = w_l w_r``, bound = best with a
    1e-12 margin) says it may beat the best so far, so no candidate scikit-learn would take
    is skipped.
    """
    for k in range(cnt.shape[0]):
        cnt[k] = 0.0
    sq_l = 0.0
    sq_r = sq_tot
    w_l = 0.0
    best = -np.inf
    bound = -np.inf
    best_pos = -1
    lo = msl - 1  # candidates q = p + 1 with msl <= q <= m - msl
    hi = m - msl
    ofs = of[start : start + m]
    vfs = vf[start : start + m]
    v_prev = vfs[0]
    for p in range(m - 1):
        i = ofs[p]
        c = codes[i]
        w = wts[i]
        lc = cnt[c]
        sq_l += w * (2.0 * lc + w)
        sq_r += w * (w - 2.0 * (tot[c] - lc))
        cnt[c] = lc + w
        w_l += w
        v_next = vfs[p + 1]
        if v_next > v_prev + FEATURE_THRESHOLD and p >= lo and p < hi:
            w_r = w_node - w_l
            if w_l >= mwl and w_r >= mwl:
                if sq_l * w_r + sq_r * w_l >= bound * (w_l * w_r):
                    proxy = sq_l / w_l + sq_r / w_r
                    if proxy > best:
                        best = proxy
                        bound = proxy * (1.0 - 1e-12)  # proxies are positive
                        best_pos = p + 1
        v_prev = v_next
    return best, best_pos


@njit(cache=True, error_model="numpy")
def _rows(
    mode,
    feats,
    lo,
    hi,
    fo,
    fv,
    base,
    stride,
    m,
    codes,
    wts,
    tot,
    sq_tot,
    w_node,
    msl,
    mwl,
    res_proxy,
    res_pos,
    cnt,
    skip,
    go_left,
    tmp_i,
    tmp_v,
    do,
    dv,
    m_l,
):
    """Per-row work of a node for the features ``feats[lo:hi]``.

    ``SCAN``: best proxy/position of each row into ``res_proxy`` / ``res_pos``.
    ``PART_INPLACE``: stable in-place partition of each row's range (``go_left`` first), except
    row ``skip``. ``PART_DENSE``: each row of the block ``(fo, fv, base, m)`` written to the
    children blocks in ``(do, dv)``: left row at ``base + f * m_l``, right row at
    ``base + d * m_l + f * (m - m_l)``.
    """
    d = res_proxy.shape[0]
    m_r = m - m_l
    for t in range(lo, hi):
        f = feats[t]
        s0 = base + f * stride
        if mode == SCAN:
            res_proxy[f], res_pos[f] = _scan_feature(
                fo, fv, s0, m, codes, wts, tot, sq_tot, w_node, msl, mwl, cnt
            )
        elif mode == PART_INPLACE:
            # branch-free: the side of a sample is unpredictable for features unrelated to
            # the split, so each element is written to both destinations
            if f == skip:
                continue
            ofs = fo[s0 : s0 + m]
            vfs = fv[s0 : s0 + m]
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
        else:
            ofs = fo[s0 : s0 + m]
            vfs = fv[s0 : s0 + m]
            w = base + f * m_l
            r = base + d * m_l + f * m_r
            for p in range(m):
                i = ofs[p]
                g = go_left[i]
                k = w if g else r
                do[k] = i
                dv[k] = vfs[p]
                w += g
                r += 1 - g


@njit(parallel=True, cache=True, error_model="numpy")
def _rows_parallel(
    mode,
    feats,
    lo,
    hi,
    fo,
    fv,
    base,
    stride,
    m,
    codes,
    wts,
    tot,
    sq_tot,
    w_node,
    msl,
    mwl,
    res_proxy,
    res_pos,
    skip,
    go_left,
    do,
    dv,
    m_l,
    n_threads,
):
    """:func:`_rows` over ``n_threads`` chunks of ``feats[lo:hi]`` (own temporaries each)."""
    n_feats = hi - lo
    n_chunks = min(n_feats, n_threads)
    for ch in prange(n_chunks):
        cnt = np.empty(tot.shape[0])
        tmp_i = np.empty(m, dtype=fo.dtype)
        tmp_v = np.empty(m, dtype=np.float32)
        _rows(
            mode,
            feats,
            lo + ch * n_feats // n_chunks,
            lo + (ch + 1) * n_feats // n_chunks,
            fo,
            fv,
            base,
            stride,
            m,
            codes,
            wts,
            tot,
            sq_tot,
            w_node,
            msl,
            mwl,
            res_proxy,
            res_pos,
            cnt,
            skip,
            go_left,
            tmp_i,
            tmp_v,
            do,
            dv,
            m_l,
        )


@njit(cache=True, error_model="numpy")
def _draw_features(
    features, constant_features, n_known, max_features, fv, base, stride, m, rand_state, visit
):
    """scikit-learn's Fisher-Yates feature draws of ``node_split_best`` for one node.

    Fills ``visit`` with the non-constant features in the order scikit-learn evaluates them
    and applies its bookkeeping of ``features`` / ``constant_features``. Returns
    ``(n_visit, n_total_constants)``.
    """
    d = features.shape[0]
    f_i = d
    n_visited = 0
    n_found = 0
    n_drawn = 0
    n_total = n_known
    nv = 0
    while f_i > n_total and (n_visited < max_features or n_visited <= n_found + n_drawn):
        n_visited += 1
        f_j = _rand_int(n_drawn, f_i - n_found, rand_state)
        if f_j < n_known:
            features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
            n_drawn += 1
            continue
        f_j += n_found
        f = features[f_j]
        s0 = base + f * stride
        if fv[s0 + m - 1] <= fv[s0] + FEATURE_THRESHOLD:
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


@njit(cache=True, error_model="numpy")
def _impurity(cnt, w, n_outputs):
    """scikit-learn's ``MSE`` impurity of one-hot rows: ``(w / w − Σ_k (s_k / w)²) / L``."""
    imp = w / w
    for k in range(cnt.shape[0]):
        imp -= (cnt[k] / w) ** 2
    return imp / n_outputs


@njit(cache=True, error_model="numpy")
def build_tree(
    go,
    gv,
    n,
    codes,
    wts,
    n_classes,
    weighted_n_samples,
    max_depth,
    min_samples_split,
    min_samples_leaf,
    min_weight_leaf,
    max_features,
    min_impurity_decrease,
    rand_state,
    par_min_work,
    n_threads,
    m_dense,
    ar0_o,
    ar0_v,
    ar1_o,
    ar1_v,
):
    """Depth-first CART build in scikit-learn's node order.

    ``go``/``gv``: the presorted global rows (d * n); ``ar*``: two dense-block buffers of
    ``d * m_dense`` entries. Returns the node arrays ``(left, right, feature, threshold,
    impurity, n_node_samples, weighted_n_node_samples, missing_go_to_left, value
    (n_nodes, n_classes), max_depth)``.
    """
    d = go.shape[0] // max(n, 1)
    L = n_classes
    # runtime (non-literal) integers for the kernel calls: literal arguments would make numba
    # compile one specialization of the kernels per call site
    zero = n - n
    mode_scan = zero + SCAN
    mode_inplace = zero + PART_INPLACE
    mode_dense = zero + PART_DENSE
    no_skip = zero - 1
    cap = max(1, 2 * n - 1)
    if max_depth < 30:
        cap = min(cap, 2 ** (max_depth + 1) - 1)
    left = np.full(cap, TREE_LEAF, dtype=np.int64)
    right = np.full(cap, TREE_LEAF, dtype=np.int64)
    feature = np.full(cap, TREE_UNDEFINED, dtype=np.int64)
    threshold = np.full(cap, float(TREE_UNDEFINED))
    impurity = np.zeros(cap)
    n_node = np.zeros(cap, dtype=np.int64)
    w_node_arr = np.zeros(cap)
    mgl = np.zeros(cap, dtype=np.uint8)
    value = np.zeros((cap, L))
    # Depth-first stack (right child pushed first so that the left one is built first).
    st_size = n + 2
    st_start = np.empty(st_size, dtype=np.int64)
    st_m = np.empty(st_size, dtype=np.int64)
    st_base = np.empty(st_size, dtype=np.int64)
    st_buf = np.empty(st_size, dtype=np.int64)  # -1: global rows, 0/1: dense buffer
    st_depth = np.empty(st_size, dtype=np.int64)
    st_parent = np.empty(st_size, dtype=np.int64)
    st_left = np.empty(st_size, dtype=np.bool_)
    st_imp = np.empty(st_size)
    st_const = np.empty(st_size, dtype=np.int64)
    features = np.arange(d)
    constant_features = np.zeros(d, dtype=np.int64)
    visit = np.empty(d, dtype=np.int64)
    res_proxy = np.empty(d)
    res_pos = np.empty(d, dtype=np.int64)
    go_left = np.zeros(n, dtype=np.uint8)
    tmp_i = np.empty(n, dtype=go.dtype)
    tmp_v = np.empty(n, dtype=np.float32)
    tot = np.zeros(L)
    cnt = np.zeros(L)
    samp = np.arange(n).astype(go.dtype)  # each node's samples in [start, start + m)
    st_start[0], st_m[0], st_base[0], st_buf[0] = 0, n, 0, -1
    st_depth[0], st_parent[0], st_left[0], st_imp[0], st_const[0] = 0, -1, False, np.inf, 0
    sp = 1
    node_count = 0
    max_depth_seen = -1
    first = True
    while sp > 0:
        sp -= 1
        start, m, base, buf = st_start[sp], st_m[sp], st_base[sp], st_buf[sp]
        depth, parent, is_left = st_depth[sp], st_parent[sp], st_left[sp]
        imp, n_known = st_imp[sp], st_const[sp]
        for k in range(L):
            tot[k] = 0.0
        w_node = 0.0
        for p in range(start, start + m):
            i = samp[p]
            tot[codes[i]] += wts[i]
            w_node += wts[i]
        is_leaf = (
            depth >= max_depth
            or m < min_samples_split
            or m < 2 * min_samples_leaf
            or w_node < 2 * min_weight_leaf
        )
        if first:
            imp = _impurity(tot, w_node, L)
            first = False
        is_leaf = is_leaf or imp <= EPSILON
        feat = zero + TREE_UNDEFINED
        thr = float(TREE_UNDEFINED)
        w_r = 0.0
        miss_left = 0
        pos = m
        imp_l = 0.0
        imp_r = 0.0
        n_total = n_known
        sq_tot = 0.0
        if buf < 0:
            fo, fv, stride = go, gv, n
            base = start
        elif buf == 0:
            fo, fv, stride = ar0_o, ar0_v, m
        else:
            fo, fv, stride = ar1_o, ar1_v, m
        if not is_leaf and buf < 0 and m <= m_dense:
            # copy the node's live rows into a dense block of the first buffer
            for t in range(n_known, d):
                f = features[t]
                for p in range(m):
                    ar0_o[f * m + p] = go[f * n + start + p]
                    ar0_v[f * m + p] = gv[f * n + start + p]
            fo, fv, stride, base, buf = ar0_o, ar0_v, m, 0, 0
        if not is_leaf:
            nv, n_total = _draw_features(
                features,
                constant_features,
                n_known,
                max_features,
                fv,
                base,
                stride,
                m,
                rand_state,
                visit,
            )
            for k in range(L):
                sq_tot += tot[k] * tot[k]
            if n_threads > 1 and nv * m >= par_min_work:
                _rows_parallel(
                    mode_scan,
                    visit,
                    zero,
                    nv,
                    fo,
                    fv,
                    base,
                    stride,
                    m,
                    codes,
                    wts,
                    tot,
                    sq_tot,
                    w_node,
                    min_samples_leaf,
                    min_weight_leaf,
                    res_proxy,
                    res_pos,
                    no_skip,
                    go_left,
                    fo,
                    fv,
                    zero,
                    n_threads,
                )
            else:
                _rows(
                    mode_scan,
                    visit,
                    zero,
                    nv,
                    fo,
                    fv,
                    base,
                    stride,
                    m,
                    codes,
                    wts,
                    tot,
                    sq_tot,
                    w_node,
                    min_samples_leaf,
                    min_weight_leaf,
                    res_proxy,
                    res_pos,
                    cnt,
                    no_skip,
                    go_left,
                    tmp_i,
                    tmp_v,
                    fo,
                    fv,
                    zero,
                )
            best = -np.inf
            for t in range(nv):
                f = visit[t]
                if res_proxy[f] > best:
                    best = res_proxy[f]
                    feat = f
                    pos = res_pos[f]
            if pos < m:
                s0 = base + feat * stride
                for k in range(L):
                    cnt[k] = 0.0
                w_l = 0.0
                for p in range(s0, s0 + pos):
                    i = fo[p]
                    cnt[codes[i]] += wts[i]
                    w_l += wts[i]
                w_r = w_node - w_l
                imp_l = _impurity(cnt, w_l, L)
                for k in range(L):
                    cnt[k] = tot[k] - cnt[k]
                imp_r = _impurity(cnt, w_r, L)
                improvement = (w_node / weighted_n_samples) * (
                    imp - (w_r / w_node * imp_r) - (w_l / w_node * imp_l)
                )
                thr = np.float64(fv[s0 + pos - 1]) / 2.0 + np.float64(fv[s0 + pos]) / 2.0
                miss_left = 1 if pos > m - pos else 0
                is_leaf = improvement + EPSILON < min_impurity_decrease
            else:
                is_leaf = True
        node_id = node_count
        node_count += 1
        if parent >= 0:
            if is_left:
                left[parent] = node_id
            else:
                right[parent] = node_id
        impurity[node_id] = imp
        n_node[node_id] = m
        w_node_arr[node_id] = w_node
        for k in range(L):
            value[node_id, k] = tot[k] / w_node
        if depth > max_depth_seen:
            max_depth_seen = depth
        if is_leaf:
            continue
        feature[node_id] = feat
        threshold[node_id] = thr
        mgl[node_id] = miss_left
        # partition the live rows (features[n_total:]) and samp for the children
        s0 = base + feat * stride
        for p in range(s0, s0 + m):
            go_left[fo[p]] = 1 if p < s0 + pos else 0
        mode = mode_inplace if buf < 0 else mode_dense
        if buf == 0:
            do, dv = ar1_o, ar1_v
        else:
            do, dv = ar0_o, ar0_v
        # children that will be leaves never read their rows: skip the rows if both are
        w_l = w_node - w_r
        leaf_l = (
            depth + 1 >= max_depth
            or pos < min_samples_split
            or pos < 2 * min_samples_leaf
            or w_l < 2 * min_weight_leaf
            or imp_l <= EPSILON
        )
        leaf_r = (
            depth + 1 >= max_depth
            or m - pos < min_samples_split
            or m - pos < 2 * min_samples_leaf
            or w_r < 2 * min_weight_leaf
            or imp_r <= EPSILON
        )
        if leaf_l and leaf_r:
            pass
        elif n_threads > 1 and (d - n_total) * m >= par_min_work:
            _rows_parallel(
                mode,
                features,
                n_total,
                d,
                fo,
                fv,
                base,
                stride,
                m,
                codes,
                wts,
                tot,
                sq_tot,
                w_node,
                min_samples_leaf,
                min_weight_leaf,
                res_proxy,
                res_pos,
                feat,
                go_left,
                do,
                dv,
                pos,
                n_threads,
            )
        else:
            _rows(
                mode,
                features,
                n_total,
                d,
                fo,
                fv,
                base,
                stride,
                m,
                codes,
                wts,
                tot,
                sq_tot,
                w_node,
                min_samples_leaf,
                min_weight_leaf,
                res_proxy,
                res_pos,
                cnt,
                feat,
                go_left,
                tmp_i,
                tmp_v,
                do,
                dv,
                pos,
            )
        w = start
        r = 0
        for p in range(start, start + m):
            i = samp[p]
            if go_left[i]:
                samp[w] = i
                w += 1
            else:
                tmp_i[r] = i
                r += 1
        for k in range(r):
            samp[w + k] = tmp_i[k]
        if buf < 0:
            base_l, base_r, child_buf = start, start + pos, -1
        else:
            base_l, base_r, child_buf = base, base + d * pos, 1 - buf
        st_start[sp], st_m[sp], st_base[sp], st_buf[sp] = start + pos, m - pos, base_r, child_buf
        st_depth[sp], st_parent[sp], st_left[sp] = depth + 1, node_id, False
        st_imp[sp], st_const[sp] = imp_r, n_total
        sp += 1
        st_start[sp], st_m[sp], st_base[sp], st_buf[sp] = start, pos, base_l, child_buf
        st_depth[sp], st_parent[sp], st_left[sp] = depth + 1, node_id, True
        st_imp[sp], st_const[sp] = imp_l, n_total
        sp += 1
    k = node_count
    return (
        left[:k].copy(),
        right[:k].copy(),
        feature[:k].copy(),
        threshold[:k].copy(),
        impurity[:k].copy(),
        n_node[:k].copy(),
        w_node_arr[:k].copy(),
        mgl[:k].copy(),
        value[:k].copy(),
        max_depth_seen,
    )


@njit(cache=True, error_model="numpy")
def apply_tree(X, left, right, feature, threshold):
    """Leaf id of every row of X (n, d) float32: ``X[i, f] <= threshold`` goes left."""
    n = X.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        node = 0
        while left[node] != TREE_LEAF:
            if X[i, feature[node]] <= threshold[node]:
                node = left[node]
            else:
                node = right[node]
        out[i] = node
    return out


@njit(cache=True, error_model="numpy")
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
