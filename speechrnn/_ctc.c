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

static PyObject *beam_search(PyObject *self, PyObject *args) {
    Py_buffer blank_buf, count_buf, id_buf, prob_buf;
    Py_ssize_t beam_width;
    if (!PyArg_ParseTuple(args, "y*y*y*y*n", &blank_buf, &count_buf, &id_buf, &prob_buf,
                          &beam_width))
        return NULL;
    PyObject *result = NULL;
    Trie trie = {0};
    Entry *beams = NULL, *entries = NULL;
    Py_ssize_t *own = NULL;
    const double *p_blanks = blank_buf.buf, *cand_probs = prob_buf.buf;
    const int64_t *counts = count_buf.buf, *cand_ids = id_buf.buf;
    Py_ssize_t frames = blank_buf.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t n_cand = id_buf.len / (Py_ssize_t)sizeof(int64_t);
    if (count_buf.len != frames * (Py_ssize_t)sizeof(int64_t)
        || prob_buf.len != n_cand * (Py_ssize_t)sizeof(double) || beam_width < 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent candidate arrays");
        goto done;
    }
    Py_ssize_t max_count = 0, total_count = 0;
    for (Py_ssize_t t = 0; t < frames; t++) {
        if (counts[t] < 0) {
            PyErr_SetString(PyExc_ValueError, "negative candidate count");
            goto done;
        }
        total_count += counts[t];
        if (counts[t] > max_count) max_count = counts[t];
    }
    if (total_count != n_cand) {
        PyErr_SetString(PyExc_ValueError, "candidate counts do not add up");
        goto done;
    }
    beams = malloc(beam_width * sizeof *beams);
    entries = malloc(beam_width * (max_count + 1) * sizeof *entries);
    own = malloc(beam_width * sizeof *own);
    if (!beams || !entries || !own || trie_grow(&trie) < 0) {
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
    Py_ssize_t i = 0;
    for (Py_ssize_t t = 0; t < frames; t++) {
        double p_blank = p_blanks[t];
        Py_ssize_t count = counts[t];
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
        const int64_t *ids = cand_ids + i;
        const double *probs = cand_probs + i;
        i += count;
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
    PyBuffer_Release(&blank_buf);
    PyBuffer_Release(&count_buf);
    PyBuffer_Release(&id_buf);
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

/* forward(emit, start, skip, after_gap, after_letter, change, max_change, starts, final,
 *         out): see CTCGraph.log_likelihoods, which calls it. */
static PyObject *forward(PyObject *self, PyObject *args) {
    Py_buffer emit_b, start_b, skip_b, gap_b, letter_b, change_b, starts_b, final_b, out_b;
    double max_change;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*dy*y*w*", &emit_b, &start_b, &skip_b, &gap_b,
                          &letter_b, &change_b, &max_change, &starts_b, &final_b, &out_b))
        return NULL;
    PyObject *result = NULL;
    double *vectors = NULL, *norm = NULL;
    const Py_ssize_t size = start_b.len / (Py_ssize_t)sizeof(double);
    const Py_ssize_t frames = change_b.len / (Py_ssize_t)sizeof(double);
    const Py_ssize_t n = out_b.len / (Py_ssize_t)sizeof(double);
    const Py_ssize_t width = n ? final_b.len / (Py_ssize_t)sizeof(int64_t) / n : 0;
    const double *emit = emit_b.buf, *start = start_b.buf, *skip = skip_b.buf;
    const double *after_gap = gap_b.buf, *after_letter = letter_b.buf, *change = change_b.buf;
    const int64_t *starts = starts_b.buf, *final = final_b.buf;
    double *out = out_b.buf;
    const int has_gaps = gap_b.len > 0;
    if (size < 5 || frames < 1 || n < 1
        || emit_b.len != frames * size * (Py_ssize_t)sizeof(double)
        || skip_b.len != (size - 2) * (Py_ssize_t)sizeof(double)
        || (has_gaps && (gap_b.len != (size - 3) * (Py_ssize_t)sizeof(double)
                         || letter_b.len != (size - 4) * (Py_ssize_t)sizeof(double)))
        || starts_b.len != n * (Py_ssize_t)sizeof(int64_t)
        || final_b.len != n * width * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent graph arrays");
        goto done;
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
    norm = malloc(n * sizeof *norm);
    if (!vectors || !norm) {
        PyErr_NoMemory();
        goto done;
    }
    double *a = vectors, *b = vectors + size;
    for (Py_ssize_t s = 0; s < size; s++) a[s] = emit[s] * start[s];
    for (Py_ssize_t j = 0; j < n; j++) out[j] = 0.0;
    double budget = 0.0;
    for (Py_ssize_t t = 0; t < frames; t++) {
        if (t) {
            const double *e = emit + t * size;
            for (Py_ssize_t s = 2; s < size; s++) {
                double v = a[s] + a[s - 1];
                v = v + a[s - 2] * skip[s - 2];
                if (has_gaps && s >= 3) {
                    v = v + a[s - 3] * after_gap[s - 3];
                    if (s >= 4) v = v + a[s - 4] * after_letter[s - 4];
                }
                b[s] = v * e[s];
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
                norm[j] = total;
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
    free(norm);
    PyBuffer_Release(&emit_b);
    PyBuffer_Release(&start_b);
    PyBuffer_Release(&skip_b);
    PyBuffer_Release(&gap_b);
    PyBuffer_Release(&letter_b);
    PyBuffer_Release(&change_b);
    PyBuffer_Release(&starts_b);
    PyBuffer_Release(&final_b);
    PyBuffer_Release(&out_b);
    return result;
}

static PyMethodDef methods[] = {
    {"beam_search", beam_search, METH_VARARGS,
     "beam_search(p_blank, counts, cand_ids, cand_probs, beam_width) -> [(ids, log p)], "
     "best first. p_blank: float64 per frame; counts: int64 candidates per frame; cand_ids "
     "(int64) and cand_probs (float64): every frame's candidates, likeliest first."},
    {"forward", forward, METH_VARARGS,
     "forward(emit, start, skip, after_gap, after_letter, change, max_change, starts, "
     "final, out): CTCGraph's forward pass; writes each sequence's log-likelihood to out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ctc",
                                    "The frame loops of speechrnn.decoding in C.", -1, methods};

PyMODINIT_FUNC PyInit__ctc(void) { return PyModule_Create(&module); }
