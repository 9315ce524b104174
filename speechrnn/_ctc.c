/* The frame loops of speechrnn.decoding in C: an optional speed-up.
 *
 * beam_search: the loop of prefix_beam_search. forward: the loop of
 * CTCGraph.log_likelihoods. The Python functions prepare their arrays with numpy and hand
 * them here; this file runs the same algorithms with the same arithmetic in the same
 * order (sums too: numpy's pairwise summation is copied), so the results are the same to
 * the bit. Where it is not built (no C compiler), the pure-Python loops run instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define TINY_VALUE 4.9406564584124654e-324 /* numpy's float64 smallest_subnormal */

/* -- prefix beam search ---------------------------------------------------------------
 *
 * Prefixes live in a trie, one node per distinct prefix, so that "prefix P extended by
 * token k" and "is that prefix already in the beam" are node comparisons. */

typedef struct {
    Py_ssize_t *parent, *first_child, *next_sibling;
    int64_t *token;
    Py_ssize_t size, capacity;
} Trie;

static int trie_grow(Trie *t) {
    Py_ssize_t cap = t->capacity ? 2 * t->capacity : 256;
    Py_ssize_t *p = realloc(t->parent, cap * sizeof *p);
    if (!p) return -1;
    t->parent = p;
    p = realloc(t->first_child, cap * sizeof *p);
    if (!p) return -1;
    t->first_child = p;
    p = realloc(t->next_sibling, cap * sizeof *p);
    if (!p) return -1;
    t->next_sibling = p;
    int64_t *k = realloc(t->token, cap * sizeof *k);
    if (!k) return -1;
    t->token = k;
    t->capacity = cap;
    return 0;
}

static void trie_free(Trie *t) {
    free(t->parent);
    free(t->first_child);
    free(t->next_sibling);
    free(t->token);
}

/* The node of `node`'s prefix extended by `token`, made if new; -1 when out of memory. */
static Py_ssize_t trie_child(Trie *t, Py_ssize_t node, int64_t token) {
    for (Py_ssize_t c = t->first_child[node]; c >= 0; c = t->next_sibling[c])
        if (t->token[c] == token) return c;
    if (t->size == t->capacity && trie_grow(t) < 0) return -1;
    Py_ssize_t c = t->size++;
    t->parent[c] = node;
    t->token[c] = token;
    t->first_child[c] = -1;
    t->next_sibling[c] = t->first_child[node];
    t->first_child[node] = c;
    return c;
}

typedef struct {
    double pb, pnb;  /* probability ending in blank, in non-blank */
    Py_ssize_t node;
} Entry;

/* Stable sort by pb + pnb, largest first (Python's list.sort(reverse=True) keeps ties in
 * order too). Lists are short: insertion sort. */
static void sort_entries(Entry *e, Py_ssize_t n) {
    for (Py_ssize_t i = 1; i < n; i++) {
        Entry x = e[i];
        double key = x.pb + x.pnb;
        Py_ssize_t j = i;
        while (j > 0 && e[j - 1].pb + e[j - 1].pnb < key) {
            e[j] = e[j - 1];
            j--;
        }
        e[j] = x;
    }
}

static PyObject *prefix_of(const Trie *t, Py_ssize_t node) {
    Py_ssize_t n = 0;
    for (Py_ssize_t c = node; c > 0; c = t->parent[c]) n++;
    PyObject *tuple = PyTuple_New(n);
    if (!tuple) return NULL;
    for (Py_ssize_t c = node; c > 0; c = t->parent[c]) {
        PyObject *k = PyLong_FromLongLong(t->token[c]);
        if (!k) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, --n, k);
    }
    return tuple;
}

static PyObject *failed_result(void) {  /* [((), -inf)] */
    return Py_BuildValue("[(()d)]", -INFINITY);
}

/* A frame's candidates: the tokens but blank among its beam_width + 1 likeliest (blank
 * counted), with probability above prune, likeliest first; equal probabilities in token
 * order (numpy's stable argsort, which the Python loop uses). Returns how many. */
static Py_ssize_t frame_candidates(const double *row, Py_ssize_t n_tokens, Py_ssize_t blank,
                                   Py_ssize_t beam_width, double prune, int64_t *ids,
                                   double *probs) {
    Py_ssize_t count = 0;
    for (Py_ssize_t k = 0; k < n_tokens; k++) {
        double p = row[k];
        if (k == blank || !(p > prune)) continue;
        Py_ssize_t rank = 0;  /* tokens that sort before k */
        for (Py_ssize_t j = 0; j < n_tokens && rank <= beam_width; j++)
            if (row[j] > p || (row[j] == p && j < k)) rank++;
        if (rank > beam_width) continue;
        Py_ssize_t at = count++;  /* insertion: likeliest first, ties in token order */
        while (at > 0 && probs[at - 1] < p) {
            ids[at] = ids[at - 1];
            probs[at] = probs[at - 1];
            at--;
        }
        ids[at] = k;
        probs[at] = p;
    }
    return count;
}

static PyObject *beam_search(PyObject *self, PyObject *args) {
    Py_buffer prob_buf;
    Py_ssize_t n_tokens, blank, beam_width;
    double prune;
    if (!PyArg_ParseTuple(args, "y*nnnd", &prob_buf, &n_tokens, &blank, &beam_width, &prune))
        return NULL;
    PyObject *result = NULL;
    Trie trie = {0};
    Entry *beams = NULL, *entries = NULL;
    Py_ssize_t *own = NULL;
    int64_t *ids = NULL;
    double *cand_probs = NULL;
    const double *all_probs = prob_buf.buf;
    Py_ssize_t frames = n_tokens > 0 ? prob_buf.len / (Py_ssize_t)sizeof(double) / n_tokens : 0;
    if (n_tokens < 1 || prob_buf.len != frames * n_tokens * (Py_ssize_t)sizeof(double)
        || blank < 0 || blank >= n_tokens || beam_width < 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent probabilities, blank or beam width");
        goto done;
    }
    beams = malloc(beam_width * sizeof *beams);
    entries = malloc(beam_width * (n_tokens + 1) * sizeof *entries);
    own = malloc(beam_width * sizeof *own);
    ids = malloc(n_tokens * sizeof *ids);
    cand_probs = malloc(n_tokens * sizeof *cand_probs);
    if (!beams || !entries || !own || !ids || !cand_probs || trie_grow(&trie) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    trie.size = 1;  /* node 0: the empty prefix */
    trie.parent[0] = -1;
    trie.token[0] = -1;
    trie.first_child[0] = -1;
    trie.next_sibling[0] = -1;
    Py_ssize_t n_beams = 1;
    beams[0] = (Entry){1.0, 0.0, 0};
    double log_scale = 0.0;
    int settled = 0;  /* every prefix ends in blank and they sum to 1 */
    for (Py_ssize_t t = 0; t < frames; t++) {
        const double *row = all_probs + t * n_tokens;
        double p_blank = row[blank];
        Py_ssize_t count = frame_candidates(row, n_tokens, blank, beam_width, prune, ids,
                                            cand_probs);
        if (!count) {
            if (settled && p_blank > 0.0) {
                log_scale += log(p_blank);
                continue;
            }
            double norm = 0.0;
            for (Py_ssize_t j = 0; j < n_beams; j++) {
                beams[j].pb = (beams[j].pb + beams[j].pnb) * p_blank;
                norm += beams[j].pb;
            }
            if (norm <= 0.0) {
                result = failed_result();
                goto done;
            }
            log_scale += log(norm);
            for (Py_ssize_t j = 0; j < n_beams; j++) {
                beams[j].pb /= norm;
                beams[j].pnb = 0.0;
            }
            settled = 1;
            continue;
        }
        settled = 0;
        const double *probs = cand_probs;
        Py_ssize_t n_entries = 0;
        for (Py_ssize_t j = 0; j < n_beams; j++) own[j] = -1;
        for (Py_ssize_t j = 0; j < n_beams; j++) {
            double pb = beams[j].pb, pnb = beams[j].pnb, total = pb + pnb;
            Py_ssize_t node = beams[j].node;
            int64_t last = trie.token[node];
            double p_rep = 0.0;
            for (Py_ssize_t c = 0; c < count; c++)
                if (ids[c] == last) p_rep = pnb * probs[c];
            /* A repeat only extends the prefix after a blank; otherwise it merges. */
            if (own[j] < 0) {
                own[j] = n_entries;
                entries[n_entries++] = (Entry){total * p_blank, p_rep, node};
            } else {
                entries[own[j]].pb += total * p_blank;
                entries[own[j]].pnb += p_rep;
            }
            for (Py_ssize_t c = 0; c < count; c++) {
                double p = (ids[c] == last ? pb : total) * probs[c];
                Py_ssize_t child = trie_child(&trie, node, ids[c]);
                if (child < 0) {
                    PyErr_NoMemory();
                    goto done;
                }
                Py_ssize_t m = 0;  /* the child's place in the beam, if there */
                while (m < n_beams && beams[m].node != child) m++;
                if (m < n_beams) {
                    if (own[m] < 0) {
                        own[m] = n_entries;
                        entries[n_entries++] = (Entry){0.0, p, child};
                    } else {
                        entries[own[m]].pnb += p;
                    }
                } else {
                    entries[n_entries++] = (Entry){0.0, p, child};
                }
            }
        }
        if (n_entries > beam_width) {
            sort_entries(entries, n_entries);
            n_entries = beam_width;
        }
        double norm = 0.0;
        for (Py_ssize_t j = 0; j < n_entries; j++) norm += entries[j].pb + entries[j].pnb;
        if (norm <= 0.0) {
            result = failed_result();
            goto done;
        }
        log_scale += log(norm);
        for (Py_ssize_t j = 0; j < n_entries; j++)
            beams[j] = (Entry){entries[j].pb / norm, entries[j].pnb / norm, entries[j].node};
        n_beams = n_entries;
    }
    /* Sorted by log-probability, as the Python loop sorts (pb holds it, pnb 0). */
    Py_ssize_t kept = 0;
    for (Py_ssize_t j = 0; j < n_beams; j++)
        if (beams[j].pb + beams[j].pnb > 0)
            beams[kept++] = (Entry){log_scale + log(beams[j].pb + beams[j].pnb), 0.0,
                                    beams[j].node};
    sort_entries(beams, kept);
    result = PyList_New(kept);
    if (!result) goto done;
    for (Py_ssize_t j = 0; j < kept; j++) {
        PyObject *prefix = prefix_of(&trie, beams[j].node);
        PyObject *pair = prefix ? Py_BuildValue("(Nd)", prefix, beams[j].pb) : NULL;
        if (!pair) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, j, pair);
    }
done:
    trie_free(&trie);
    free(beams);
    free(entries);
    free(own);
    free(ids);
    free(cand_probs);
    PyBuffer_Release(&prob_buf);
    return result;
}

/* -- CTC forward pass over a compiled graph ------------------------------------------ */

/* numpy's pairwise summation of n doubles (numpy/_core/src/umath/loops_utils.h.src), so
 * that sums come out as numpy's do. */
static double pairwise_sum(const double *a, Py_ssize_t n) {
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        Py_ssize_t i;
        for (int j = 0; j < 8; j++) r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/* forward(probs, log_probs, n_tokens, labels, used, log_fan_in, start, skip, after_gap,
 *         after_letter, max_change, starts, final, out): CTCGraph.log_likelihoods, which
 * calls it, with probs = exp(log_probs), both [frames, n_tokens] float64 in C order, and
 * the graph's arrays; each sequence's log-likelihood goes to out. */
static PyObject *forward(PyObject *self, PyObject *args) {
    Py_buffer probs_b, lp_b, labels_b, used_b, start_b, skip_b, gap_b, letter_b, starts_b,
        final_b, out_b;
    Py_ssize_t n_tokens;
    double log_fan_in, max_change;
    if (!PyArg_ParseTuple(args, "y*y*ny*y*dy*y*y*y*dy*y*w*", &probs_b, &lp_b, &n_tokens,
                          &labels_b, &used_b, &log_fan_in, &start_b, &skip_b, &gap_b,
                          &letter_b, &max_change, &starts_b, &final_b, &out_b))
        return NULL;
    PyObject *result = NULL;
    double *vectors = NULL, *change = NULL;
    const Py_ssize_t D = (Py_ssize_t)sizeof(double), I = (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t size = start_b.len / D, n = out_b.len / D, n_used = used_b.len / I;
    const Py_ssize_t frames = n_tokens > 0 ? probs_b.len / D / n_tokens : 0;
    const Py_ssize_t width = n > 0 ? final_b.len / I / n : 0;
    const double *probs = probs_b.buf, *log_probs = lp_b.buf, *start = start_b.buf;
    const double *skip = skip_b.buf, *after_gap = gap_b.buf, *after_letter = letter_b.buf;
    const int64_t *labels = labels_b.buf, *used = used_b.buf, *starts = starts_b.buf;
    const int64_t *final = final_b.buf;
    double *out = out_b.buf;
    const int has_gaps = gap_b.len > 0;
    if (size < 5 || frames < 1 || n < 1 || n_used < 1 || width < 1
        || probs_b.len != frames * n_tokens * D || lp_b.len != probs_b.len
        || labels_b.len != size * I || skip_b.len != (size - 2) * D
        || (has_gaps && (gap_b.len != (size - 3) * D || letter_b.len != (size - 4) * D))
        || starts_b.len != n * I || final_b.len != n * width * I) {
        PyErr_SetString(PyExc_ValueError, "inconsistent graph arrays");
        goto done;
    }
    for (Py_ssize_t s = 0; s < size; s++) {
        if (labels[s] < -1 || labels[s] >= n_tokens) {
            PyErr_SetString(PyExc_ValueError, "label out of range");
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < n_used; k++) {
        if (used[k] < 0 || used[k] >= n_tokens) {
            PyErr_SetString(PyExc_ValueError, "label out of range");
            goto done;
        }
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t end = j + 1 < n ? starts[j + 1] : size;
        if (starts[j] < 0 || starts[j] >= end || end > size) {
            PyErr_SetString(PyExc_ValueError, "sequence starts out of order");
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < n * width; k++) {
        if (final[k] < 0 || final[k] >= size) {
            PyErr_SetString(PyExc_ValueError, "final state out of range");
            goto done;
        }
    }
    vectors = calloc(2 * size, sizeof *vectors);
    change = malloc(frames * sizeof *change);
    if (!vectors || !change) {
        PyErr_NoMemory();
        goto done;
    }
    /* A frame scales a sequence's total by at least its least likely label's probability
     * and at most (states a state may come from) times its likeliest one's. */
    for (Py_ssize_t t = 0; t < frames; t++) {
        const double *lp = log_probs + t * n_tokens;
        double lo = lp[used[0]], hi = lp[used[0]];
        for (Py_ssize_t k = 1; k < n_used; k++) {
            double v = lp[used[k]];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        double up = log_fan_in + hi;
        change[t] = -lo > up ? -lo : up;
    }
    double *a = vectors, *b = vectors + size;
    for (Py_ssize_t s = 0; s < size; s++)
        a[s] = (labels[s] < 0 ? 0.0 : probs[labels[s]]) * start[s];
    for (Py_ssize_t j = 0; j < n; j++) out[j] = 0.0;
    double budget = 0.0;
    for (Py_ssize_t t = 0; t < frames; t++) {
        if (t) {
            const double *p = probs + t * n_tokens;
            for (Py_ssize_t s = 2; s < size; s++) {
                double v = a[s] + a[s - 1];
                v = v + a[s - 2] * skip[s - 2];
                if (has_gaps && s >= 3) {
                    v = v + a[s - 3] * after_gap[s - 3];
                    if (s >= 4) v = v + a[s - 4] * after_letter[s - 4];
                }
                b[s] = v * (labels[s] < 0 ? 0.0 : p[labels[s]]);
            }
            double *swap = a;
            a = b;
            b = swap;
        }
        /* Rescaled where the Python loop rescales: before the totals may have moved by
         * more than e^max_change since the last time, and at the last frame. */
        budget += change[t];
        if (t + 1 == frames || budget + change[t + 1] > max_change) {
            budget = 0.0;
            for (Py_ssize_t j = 0; j < n; j++) {
                Py_ssize_t from = starts[j], end = j + 1 < n ? starts[j + 1] : size;
                /* numpy's reduceat: the first value, plus the pairwise sum of the rest */
                double total = a[from] + pairwise_sum(a + from + 1, end - from - 1);
                out[j] += log(total);
                double divisor = total > TINY_VALUE ? total : TINY_VALUE;
                for (Py_ssize_t s = from; s < end; s++) a[s] /= divisor;
            }
        }
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        double total = 0.0;
        for (Py_ssize_t k = 0; k < width; k++) total += a[final[j * width + k]];
        out[j] += log(total);
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    free(vectors);
    free(change);
    PyBuffer_Release(&probs_b);
    PyBuffer_Release(&lp_b);
    PyBuffer_Release(&labels_b);
    PyBuffer_Release(&used_b);
    PyBuffer_Release(&start_b);
    PyBuffer_Release(&skip_b);
    PyBuffer_Release(&gap_b);
    PyBuffer_Release(&letter_b);
    PyBuffer_Release(&starts_b);
    PyBuffer_Release(&final_b);
    PyBuffer_Release(&out_b);
    return result;
}

static PyMethodDef methods[] = {
    {"beam_search", beam_search, METH_VARARGS,
     "beam_search(probs, n_tokens, blank, beam_width, prune) -> [(ids, log p)], best "
     "first. probs: float64 [frames, n_tokens], C order."},
    {"forward", forward, METH_VARARGS,
     "forward(probs, log_probs, n_tokens, labels, used, log_fan_in, start, skip, "
     "after_gap, after_letter, max_change, starts, final, out): CTCGraph's forward pass; "
     "writes each sequence's log-likelihood to out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ctc",
                                    "The frame loops of speechrnn.decoding in C.", -1, methods};

PyMODINIT_FUNC PyInit__ctc(void) { return PyModule_Create(&module); }
