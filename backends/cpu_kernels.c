/* The CPU backend's compiled kernels: each does in one pass over memory what NumPy does in
 * several, with no per-operation Python overhead.
 *
 *   softmax_xent(z, y, d, n, c, f64) -> mean loss   the fused softmax + cross-entropy (below)
 *   bias_relu(y, b, f64)                      y = max(y + b, 0) in place; y: (N, M), b: (M,)
 *   relu_backward(g, y, out, f64)             out = g where y > 0, else 0
 *   sum_rows(x, out, f64)                     out = Σ over the rows of x; x: (N, M), out: (M,)
 *   adam(p, g, m, v, f64, lr, b1, b2, eps, decay, flush, l2)     one Adam step in place
 *   momentum(p, g, v, f64, lr, mu, nesterov, decay, flush, l2)   one SGD-momentum step in place
 *   gemm(a, b, c, alpha, beta, fn, ilp64) -> bool   c ← alpha·a·b + beta·c through the row-major
 *                                             cblas_?gemm at address fn (see backends/blas.py)
 *
 * The optimizer steps do, element by element, the very float operations of the contract's NumPy
 * versions (backends/contract.py) in the same order, and the build turns off FMA contraction,
 * so both give bit-identical parameters (but where a denormal float arises: see the optimizer
 * steps); here they take one pass instead of eight.
 *
 * Arrays arrive as C-contiguous buffers (the caller checks dtypes and shapes; this module
 * checks every byte length against n and c before touching memory). f64 selects double
 * precision, else float32. Sums are vectorised with OpenMP SIMD reductions; float32 exp is
 * the polynomial below, so that the compiler can vectorise it without a vector math library.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* The SHA-256 of this file with this digest left out (backends/compiled.py checks the built module
 * against the source; tests/test_cpu_kernels.py says the new value after an edit). */
#define NNX_SOURCE_SHA256 "0594d91a8eb79feb357366a7504b709a290d4dcde4478f7bf8c4db7438730ac0"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* x86-64 with GCC or Clang on Linux: the hot loops are compiled for AVX2 (and the loss over
 * long rows for AVX-512) as well, and the loader picks the clone that the CPU runs. AVX-512 is
 * kept for rows of 64 and more: it made N=4096, C=1000 1.5x faster than AVX2, but rows of 10
 * 2.5x slower, as they fit no 16-wide vector and run the scalar remainder loop. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#define WIDE_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#define WIDE_VECTOR_CLONES
#endif
#define WIDE_ROW 64

/* The build turns FMA contraction off (see the optimizer steps below); the loss may use it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif

/* exp(t) for t in [log(FLT_MIN), 0], within 2 ulp (Cephes' expf: Cody-Waite reduction
 * t = k·ln2 + r, |r| <= ln2/2, a degree-6 polynomial, then a scale by 2^k built from bits). */
static inline float exp_nonpositive(float t) {
    const float rounder = 12582912.0f; /* 1.5·2^23: adding and subtracting it rounds to an integer */
    float k = (t * 1.44269504088896341f + rounder) - rounder;
    float r = t - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* One row: returns logsumexp(z) - z[label] and writes d = (softmax(z) - onehot(label)) / n.
 * The row max is subtracted first and z - max is clamped at `lowest` (see denormal_floor in
 * backends/contract.py: it keeps the products of the backward pass out of the denormals).
 * A row holding NaN or +Inf, only -Inf, or a label outside [0, c) gives NaN (as the CUDA kernel
 * does for a label); a -Inf entry alone is a probability of 0, as with NumPy. */
#define SUM_BLOCK 1024
#define DEFINE_XENT_ROW(NAME, T, EXP)                                                                             \
    static inline __attribute__((always_inline)) double NAME(const T *z, int64_t label, T *d, int64_t c, T inv_n, \
                                                             T lowest) {                                          \
        T m = z[0];                                                                                               \
        int nonfinite = 0;                                                                                        \
        _Pragma("omp simd reduction(max : m) reduction(| : nonfinite)")                                           \
        for (int64_t j = 0; j < c; j++) {                                                                         \
            m = z[j] > m ? z[j] : m;                                                                              \
            nonfinite |= !(z[j] < (T)INFINITY); /* NaN or +Inf; -Inf is exp(-Inf) = 0 */                          \
        }                                                                                                         \
        if (nonfinite || m == -(T)INFINITY || label < 0 || label >= c) {                                          \
            for (int64_t j = 0; j < c; j++) d[j] = (T)NAN;                                                        \
            return NAN;                                                                                           \
        }                                                                                                         \
        double total = 0; /* blocks of SUM_BLOCK summed in T, the blocks in double: accurate unvectorised too */ \
        for (int64_t lo = 0; lo < c; lo += SUM_BLOCK) {                                                           \
            const int64_t hi = lo + SUM_BLOCK < c ? lo + SUM_BLOCK : c;                                           \
            T block = 0;                                                                                          \
            _Pragma("omp simd reduction(+ : block)")                                                              \
            for (int64_t j = lo; j < hi; j++) {                                                                   \
                T t = z[j] - m;                                                                                   \
                T e = EXP(t < lowest ? lowest : t);                                                               \
                d[j] = e;                                                                                         \
                block += e;                                                                                       \
            }                                                                                                     \
            total += block;                                                                                       \
        }                                                                                                         \
        const T sum = (T)total;                                                                                   \
        const T scale = inv_n / sum;                                                                              \
        _Pragma("omp simd")                                                                                       \
        for (int64_t j = 0; j < c; j++) d[j] *= scale;                                                            \
        d[label] -= inv_n;                                                                                        \
        return log(total) - (double)(z[label] - m);                                                               \
    }

DEFINE_XENT_ROW(xent_row_f32, float, exp_nonpositive)
DEFINE_XENT_ROW(xent_row_f64, double, exp)

/* All rows: the sum of their losses. */
#define DEFINE_XENT(NAME, ROW, T, CLONES)                                                                           \
    CLONES static double NAME(const T *z, const int64_t *labels, T *d, Py_ssize_t n, Py_ssize_t c, double lowest) { \
        double total = 0;                                                                                           \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                        \
            total += ROW(z + i * c, labels[i], d + i * c, c, (T)(1.0 / n), (T)lowest);                              \
        }                                                                                                           \
        return total;                                                                                               \
    }

DEFINE_XENT(xent_f32, xent_row_f32, float, VECTOR_CLONES)

/* Rows narrower than a vector (a few classes) leave the loops over a row mostly scalar remainder,
 * so this walks blocks of rows instead: shift each row by its max, then the exponentials of the
 * whole block in one long vector loop, then each row's sum, scale and loss. The results differ
 * from xent_row_f32's by rounding only: each row's sum is taken in another order, and the loss
 * takes one log of a block's product of row sums instead of a log per row. */
#define NARROW_ROW 16
#define NARROW_BLOCK 64
VECTOR_CLONES static double xent_f32_narrow(const float *z, const int64_t *labels, float *d, Py_ssize_t n,
                                            Py_ssize_t c, double lowest) {
    const float inv_n = (float)(1.0 / n), low = (float)lowest;
    double total = 0;
    float maxima[NARROW_BLOCK];
    for (Py_ssize_t lo = 0; lo < n; lo += NARROW_BLOCK) {
        const Py_ssize_t rows = n - lo < NARROW_BLOCK ? n - lo : NARROW_BLOCK;
        double sums = 1;
        const float *zb = z + lo * c;
        float *db = d + lo * c;
        for (Py_ssize_t r = 0; r < rows; r++) {
            const float *zr = zb + r * c;
            float m = zr[0];
            int nonfinite = 0;
            for (Py_ssize_t j = 0; j < c; j++) {
                m = zr[j] > m ? zr[j] : m;
                nonfinite |= !(zr[j] < INFINITY); /* NaN or +Inf; -Inf is exp(-Inf) = 0 */
            }
            const int64_t label = labels[lo + r];
            const int bad = nonfinite || m == -INFINITY || label < 0 || label >= c;
            maxima[r] = bad ? NAN : m; /* a row of NaN below; its exponentials are of 0 */
            for (Py_ssize_t j = 0; j < c; j++) {
                const float t = bad ? 0 : zr[j] - m;
                db[r * c + j] = t < low ? low : t;
            }
        }
        _Pragma("omp simd")
        for (Py_ssize_t k = 0; k < rows * c; k++) db[k] = exp_nonpositive(db[k]);
        for (Py_ssize_t r = 0; r < rows; r++) {
            float *dr = db + r * c;
            const int64_t label = labels[lo + r];
            if (maxima[r] != maxima[r]) {
                for (Py_ssize_t j = 0; j < c; j++) dr[j] = NAN;
                total += NAN;
                continue;
            }
            float sum = 0;
            for (Py_ssize_t j = 0; j < c; j++) sum += dr[j];
            const float scale = inv_n / sum;
            for (Py_ssize_t j = 0; j < c; j++) dr[j] *= scale;
            dr[label] -= inv_n;
            sums *= sum; /* each sum is in [1, c], so 64 of them stay below 16^64 */
            total -= (double)(zb[r * c + label] - maxima[r]);
        }
        total += log(sums); /* one log per block: the sum of the rows' logs, but for rounding */
    }
    return total;
}
DEFINE_XENT(xent_f32_wide, xent_row_f32, float, WIDE_VECTOR_CLONES)
DEFINE_XENT(xent_f64, xent_row_f64, double, VECTOR_CLONES)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

static int check_length(const Py_buffer *buf, Py_ssize_t expected, const char *name) {
    if (buf->len != expected) {
        PyErr_Format(PyExc_ValueError, "%s must hold %zd bytes; got %zd", name, expected, buf->len);
        return 0;
    }
    return 1;
}

static PyObject *softmax_xent(PyObject *self, PyObject *args) {
    Py_buffer z, y, d;
    Py_ssize_t n, c;
    int f64;
    if (!PyArg_ParseTuple(args, "y*y*w*nnp", &z, &y, &d, &n, &c, &f64)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = f64 ? sizeof(double) : sizeof(float);
    if (n <= 0 || c <= 0) {
        PyErr_SetString(PyExc_ValueError, "softmax_xent needs n > 0 and c > 0");
    } else if (check_length(&z, n * c * size, "logits") && check_length(&d, n * c * size, "dlogits") &&
               check_length(&y, n * (Py_ssize_t)sizeof(int64_t), "labels")) {
        /* the lowest z - max kept: log(smallest normal) + 32·log(2) + log(n·c) */
        const double lowest = log(f64 ? DBL_MIN : FLT_MIN) + 32 * log(2.0) + log((double)n * (double)c);
        double total;
        Py_BEGIN_ALLOW_THREADS
        if (f64) total = xent_f64(z.buf, y.buf, d.buf, n, c, lowest);
        else if (c >= WIDE_ROW) total = xent_f32_wide(z.buf, y.buf, d.buf, n, c, lowest);
        else if (c < NARROW_ROW) total = xent_f32_narrow(z.buf, y.buf, d.buf, n, c, lowest);
        else total = xent_f32(z.buf, y.buf, d.buf, n, c, lowest);
        Py_END_ALLOW_THREADS
        result = PyFloat_FromDouble(total / (double)n);
    }
    PyBuffer_Release(&z);
    PyBuffer_Release(&y);
    PyBuffer_Release(&d);
    return result;
}

#define DEFINE_BIAS_RELU(NAME, T)                                                        \
    VECTOR_CLONES static void NAME(T *y, const T *b, Py_ssize_t rows, Py_ssize_t cols) { \
        for (Py_ssize_t i = 0; i < rows; i++) {                                          \
            T *row = y + i * cols;                                                       \
            _Pragma("omp simd")                                                          \
            for (Py_ssize_t j = 0; j < cols; j++) {                                      \
                T v = row[j] + b[j];                                                     \
                row[j] = v > 0 ? v : 0;                                                  \
            }                                                                            \
        }                                                                                \
    }

DEFINE_BIAS_RELU(bias_relu_f32, float)
DEFINE_BIAS_RELU(bias_relu_f64, double)

static PyObject *bias_relu(PyObject *self, PyObject *args) {
    Py_buffer y, b;
    int f64;
    if (!PyArg_ParseTuple(args, "w*y*p", &y, &b, &f64)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = f64 ? sizeof(double) : sizeof(float);
    const Py_ssize_t cols = b.len / size;
    if (b.len % size || cols == 0 || y.len % b.len) {
        PyErr_Format(PyExc_ValueError, "y (%zd bytes) must be rows of b (%zd bytes)", y.len, b.len);
    } else {
        const Py_ssize_t rows = y.len / b.len;
        Py_BEGIN_ALLOW_THREADS
        if (f64) bias_relu_f64(y.buf, b.buf, rows, cols);
        else bias_relu_f32(y.buf, b.buf, rows, cols);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&y);
    PyBuffer_Release(&b);
    return result;
}

#define DEFINE_RELU_BACKWARD(NAME, T)                                                  \
    VECTOR_CLONES static void NAME(const T *g, const T *y, T *out, Py_ssize_t count) { \
        _Pragma("omp simd")                                                            \
        for (Py_ssize_t i = 0; i < count; i++) out[i] = y[i] > 0 ? g[i] : 0;           \
    }

DEFINE_RELU_BACKWARD(relu_backward_f32, float)
DEFINE_RELU_BACKWARD(relu_backward_f64, double)

static PyObject *relu_backward(PyObject *self, PyObject *args) {
    Py_buffer g, y, out;
    int f64;
    if (!PyArg_ParseTuple(args, "y*y*w*p", &g, &y, &out, &f64)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = f64 ? sizeof(double) : sizeof(float);
    if (g.len != y.len || out.len != y.len || y.len % size) {
        PyErr_Format(PyExc_ValueError, "grad, y and out must be the same size; got %zd, %zd and %zd bytes", g.len,
                     y.len, out.len);
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (f64) relu_backward_f64(g.buf, y.buf, out.buf, y.len / size);
        else relu_backward_f32(g.buf, y.buf, out.buf, y.len / size);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&g);
    PyBuffer_Release(&y);
    PyBuffer_Release(&out);
    return result;
}

#define DEFINE_SUM_ROWS(NAME, T)                                                           \
    VECTOR_CLONES static void NAME(const T *x, T *out, Py_ssize_t rows, Py_ssize_t cols) { \
        for (Py_ssize_t j = 0; j < cols; j++) out[j] = 0;                                  \
        for (Py_ssize_t i = 0; i < rows; i++) {                                            \
            const T *row = x + i * cols;                                                   \
            _Pragma("omp simd")                                                            \
            for (Py_ssize_t j = 0; j < cols; j++) out[j] += row[j];                        \
        }                                                                                  \
    }

DEFINE_SUM_ROWS(sum_rows_f32, float)
DEFINE_SUM_ROWS(sum_rows_f64, double)

static PyObject *sum_rows(PyObject *self, PyObject *args) {
    Py_buffer x, out;
    int f64;
    if (!PyArg_ParseTuple(args, "y*w*p", &x, &out, &f64)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = f64 ? sizeof(double) : sizeof(float);
    if (out.len % size || out.len == 0 || x.len % out.len) {
        PyErr_Format(PyExc_ValueError, "x (%zd bytes) must be rows of out (%zd bytes)", x.len, out.len);
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (f64) sum_rows_f64(x.buf, out.buf, x.len / out.len, out.len / size);
        else sum_rows_f32(x.buf, out.buf, x.len / out.len, out.len / size);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* ---- optimizer steps -------------------------------------------------------------------- */
/* The steps run with denormal floats off (x86's MXCSR: results flushed to zero, inputs read as
 * zero), as TensorFlow's CPU kernels run. With an L2 penalty, a weight whose loss gradient is 0
 * shrinks geometrically, so that (g + l2·p)² passes through the denormals, where an operation is
 * about 100 times slower (Adam's pass over 784 x 100 weights during a fit: 73 -> 101 us). A
 * denormal is below 1.2e-38 in float32: beside Adam's eps it changes no update. The NumPy versions,
 * which keep denormals, give the same parameters bit for bit but where one arises. The caller's
 * MXCSR is restored after the step. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <xmmintrin.h>
#define DENORMALS_OFF 0x8040u /* MXCSR: FTZ (bit 15) and DAZ (bit 6) */
static inline unsigned int denormals_off(void) {
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | DENORMALS_OFF);
    return csr;
}
static inline void denormals_restore(unsigned int csr) { /* the caller's modes, the step's flags */
    _mm_setcsr((_mm_getcsr() & ~DENORMALS_OFF) | (csr & DENORMALS_OFF));
}
#else
static inline unsigned int denormals_off(void) { return 0; }
static inline void denormals_restore(unsigned int csr) { (void)csr; }
#endif

#define FLUSH 0x1p-60 /* (x + FLUSH) - FLUSH is x, except that |x| below ~2^-84 becomes 0 */

#define DEFINE_ADAM(NAME, T, SQRT, T_MIN)                                                                \
    VECTOR_CLONES static void NAME(T *p, const T *g, T *m, T *v, Py_ssize_t count, double lr, double b1, \
                                   double b2, double eps, double decay, int flush, double l2) {          \
        const T lr_ = (T)lr, b1_ = (T)b1, b2_ = (T)b2, c1 = (T)(1.0 - b1), c2 = (T)(1.0 - b2);           \
        const T eps_ = (T)eps < T_MIN ? T_MIN : (T)eps; /* a denormal one would read as 0: 0/0 */       \
        const T decay_ = (T)decay, f = (T)FLUSH, l2_ = (T)l2;                                            \
        _Pragma("omp simd")                                                                              \
        for (Py_ssize_t i = 0; i < count; i++) {                                                         \
            const T gi = l2 != 0.0 ? g[i] + l2_ * p[i] : g[i];                                           \
            T mi = m[i] * b1_ + gi * c1;                                                                 \
            T vi = v[i] * b2_ + (gi * gi) * c2;                                                          \
            if (flush) {                                                                                 \
                mi = (mi + f) - f;                                                                       \
                vi = (vi + f) - f;                                                                       \
            }                                                                                            \
            m[i] = mi;                                                                                   \
            v[i] = vi;                                                                                   \
            p[i] = p[i] * decay_ - (mi / (SQRT(vi) + eps_)) * lr_;                                       \
        }                                                                                                \
    }

DEFINE_ADAM(adam_f32, float, sqrtf, FLT_MIN)
DEFINE_ADAM(adam_f64, double, sqrt, DBL_MIN)

#define DEFINE_MOMENTUM(NAME, T)                                                                   \
    VECTOR_CLONES static void NAME(T *p, const T *g, T *v, Py_ssize_t count, double lr, double mu, \
                                   int nesterov, double decay, int flush, double l2) {             \
        const T lr_ = (T)lr, mu_ = (T)mu, decay_ = (T)decay, f = (T)FLUSH, l2_ = (T)l2;            \
        _Pragma("omp simd")                                                                        \
        for (Py_ssize_t i = 0; i < count; i++) {                                                   \
            const T gi = l2 != 0.0 ? g[i] + l2_ * p[i] : g[i];                                     \
            T vi = v[i] * mu_ + gi;                                                                \
            if (flush) vi = (vi + f) - f;                                                          \
            v[i] = vi;                                                                             \
            const T step = nesterov ? vi * mu_ + gi : vi;                                          \
            p[i] = p[i] * decay_ - step * lr_;                                                     \
        }                                                                                          \
    }

DEFINE_MOMENTUM(momentum_f32, float)
DEFINE_MOMENTUM(momentum_f64, double)

static int same_lengths(Py_buffer *const *buffers, int count, Py_ssize_t size) {
    for (int i = 1; i < count; i++) {
        if (buffers[i]->len != buffers[0]->len) {
            PyErr_Format(PyExc_ValueError, "the parameter, its gradient and its state must be the same size; got "
                         "%zd and %zd bytes", buffers[0]->len, buffers[i]->len);
            return 0;
        }
    }
    if (buffers[0]->len % size) {
        PyErr_Format(PyExc_ValueError, "%zd bytes is not a whole number of elements", buffers[0]->len);
        return 0;
    }
    return 1;
}

static PyObject *adam(PyObject *self, PyObject *args) {
    Py_buffer p, g, m, v;
    int f64, flush;
    double lr, b1, b2, eps, decay, l2;
    if (!PyArg_ParseTuple(args, "w*y*w*w*pdddddpd", &p, &g, &m, &v, &f64, &lr, &b1, &b2, &eps, &decay, &flush, &l2))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = f64 ? sizeof(double) : sizeof(float);
    Py_buffer *const all[] = {&p, &g, &m, &v};
    if (same_lengths(all, 4, size)) {
        const Py_ssize_t count = p.len / size;
        Py_BEGIN_ALLOW_THREADS
        const unsigned int csr = denormals_off();
        if (f64) adam_f64(p.buf, g.buf, m.buf, v.buf, count, lr, b1, b2, eps, decay, flush, l2);
        else adam_f32(p.buf, g.buf, m.buf, v.buf, count, lr, b1, b2, eps, decay, flush, l2);
        denormals_restore(csr);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    for (int i = 0; i < 4; i++) PyBuffer_Release(all[i]);
    return result;
}

static PyObject *momentum(PyObject *self, PyObject *args) {
    Py_buffer p, g, v;
    int f64, nesterov, flush;
    double lr, mu, decay, l2;
    if (!PyArg_ParseTuple(args, "w*y*w*pddpdpd", &p, &g, &v, &f64, &lr, &mu, &nesterov, &decay, &flush, &l2))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = f64 ? sizeof(double) : sizeof(float);
    Py_buffer *const all[] = {&p, &g, &v};
    if (same_lengths(all, 3, size)) {
        const Py_ssize_t count = p.len / size;
        Py_BEGIN_ALLOW_THREADS
        const unsigned int csr = denormals_off();
        if (f64) momentum_f64(p.buf, g.buf, v.buf, count, lr, mu, nesterov, decay, flush, l2);
        else momentum_f32(p.buf, g.buf, v.buf, count, lr, mu, nesterov, decay, flush, l2);
        denormals_restore(csr);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    for (int i = 0; i < 3; i++) PyBuffer_Release(all[i]);
    return result;
}

/* ---- gemm: a call into NumPy's own BLAS, with the checks done here rather than in Python ---- */
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
/* cblas_?gemm with 64-bit (ILP64) or 32-bit (LP64) integers; which one, and where, is the caller's
 * (a NumPy backend instance's) setting: no process-global state here. */
#define GEMM_TYPES(T, I) int, int, int, I, I, I, T, const T *, I, const T *, I, T, T *, I
typedef void (*sgemm64_fn)(GEMM_TYPES(float, int64_t));
typedef void (*dgemm64_fn)(GEMM_TYPES(double, int64_t));
typedef void (*sgemm32_fn)(GEMM_TYPES(float, int));
typedef void (*dgemm32_fn)(GEMM_TYPES(double, int));

/* The transpose flag and leading dimension of a 2-D view as a row-major BLAS operand; 0 when
 * neither its rows nor its columns are contiguous. */
static int operand(const Py_buffer *v, int64_t *ld) {
    const Py_ssize_t item = v->itemsize, rows = v->shape[0], cols = v->shape[1];
    if (v->strides[1] == item && v->strides[0] >= (cols > 1 ? cols : 1) * item && v->strides[0] % item == 0) {
        *ld = v->strides[0] / item;
        return NO_TRANS;
    }
    if (v->strides[0] == item && v->strides[1] >= (rows > 1 ? rows : 1) * item && v->strides[1] % item == 0) {
        *ld = v->strides[1] / item;
        return TRANS;
    }
    return 0;
}

/* One past the last byte of a non-empty 2-D view with non-negative strides (what operand() accepts). */
static const char *end_of(const Py_buffer *v) {
    return (const char *)v->buf + (v->shape[0] - 1) * v->strides[0] + (v->shape[1] - 1) * v->strides[1] + v->itemsize;
}

static int overlaps(const Py_buffer *x, const Py_buffer *y) {
    return (const char *)x->buf < end_of(y) && (const char *)y->buf < end_of(x);
}

static PyObject *gemm(PyObject *self, PyObject *args) {
    PyObject *a_obj, *b_obj, *c_obj;
    double alpha, beta;
    unsigned long long fn;
    int ilp64;
    if (!PyArg_ParseTuple(args, "OOOddKp", &a_obj, &b_obj, &c_obj, &alpha, &beta, &fn, &ilp64)) return NULL;
    Py_buffer a, b, c;
    const int flags = PyBUF_STRIDES | PyBUF_FORMAT;
    if (PyObject_GetBuffer(c_obj, &c, flags | PyBUF_WRITABLE) < 0) return NULL;
    if (PyObject_GetBuffer(a_obj, &a, flags) < 0) {
        PyBuffer_Release(&c);
        return NULL;
    }
    if (PyObject_GetBuffer(b_obj, &b, flags) < 0) {
        PyBuffer_Release(&c);
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *result = NULL;
    if (a.ndim != 2 || b.ndim != 2 || c.ndim != 2 || a.shape[1] != b.shape[0] || c.shape[0] != a.shape[0] ||
        c.shape[1] != b.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "gemm needs 2-D a (M, K), b (K, N) and c (M, N)");
        goto done;
    }
    const char fmt = c.format[0] == '<' || c.format[0] == '=' ? c.format[1] : c.format[0];
    int64_t lda = 0, ldb = 0;
    const int op_a = operand(&a, &lda), op_b = operand(&b, &ldb);
    const int same_type = strcmp(a.format, c.format) == 0 && strcmp(b.format, c.format) == 0;
    const int64_t m = c.shape[0], n = c.shape[1], k = a.shape[1];
    const int64_t limit = ilp64 ? INT64_MAX : INT32_MAX;
    if (!same_type || fn == 0 || (fmt != 'f' && fmt != 'd') || !op_a || !op_b || m > limit || n > limit ||
        k > limit || lda > limit || ldb > limit ||
        c.strides[1] != c.itemsize || c.strides[0] != n * c.itemsize || m == 0 || n == 0 || k == 0 ||
        overlaps(&a, &c) || overlaps(&b, &c)) {
        result = Py_NewRef(Py_False); /* not for BLAS: the caller computes it another way */
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    const void *f = (const void *)(uintptr_t)fn;
    if (fmt == 'f' && ilp64)
        ((sgemm64_fn)f)(ROW_MAJOR, op_a, op_b, m, n, k, (float)alpha, a.buf, lda, b.buf, ldb, (float)beta, c.buf, n);
    else if (fmt == 'f')
        ((sgemm32_fn)f)(ROW_MAJOR, op_a, op_b, (int)m, (int)n, (int)k, (float)alpha, a.buf, (int)lda, b.buf, (int)ldb,
                        (float)beta, c.buf, (int)n);
    else if (ilp64)
        ((dgemm64_fn)f)(ROW_MAJOR, op_a, op_b, m, n, k, alpha, a.buf, lda, b.buf, ldb, beta, c.buf, n);
    else
        ((dgemm32_fn)f)(ROW_MAJOR, op_a, op_b, (int)m, (int)n, (int)k, alpha, a.buf, (int)lda, b.buf, (int)ldb, beta,
                        c.buf, (int)n);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_True);
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&c);
    return result;
}

static PyMethodDef methods[] = {
    {"softmax_xent", softmax_xent, METH_VARARGS,
     "softmax_xent(logits, labels, dlogits, n, c, f64) -> mean loss; writes dlogits (N, C); labels: (N,) int64."},
    {"bias_relu", bias_relu, METH_VARARGS, "bias_relu(y, b, f64): y = max(y + b, 0) in place."},
    {"relu_backward", relu_backward, METH_VARARGS, "relu_backward(grad, y, out, f64): out = grad where y > 0."},
    {"sum_rows", sum_rows, METH_VARARGS, "sum_rows(x, out, f64): out = the sum of the rows of x."},
    {"adam", adam, METH_VARARGS, "adam(p, g, m, v, f64, lr, beta1, beta2, eps, decay, flush, l2): one Adam step."},
    {"momentum", momentum, METH_VARARGS,
     "momentum(p, g, v, f64, lr, mu, nesterov, decay, flush, l2): one SGD-with-momentum step."},
    {"gemm", gemm, METH_VARARGS,
     "gemm(a, b, c, alpha, beta, fn, ilp64) -> whether c was set to alpha·a·b + beta·c by the cblas_?gemm at fn."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu_kernels", "nnx's compiled CPU kernels.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__cpu_kernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "SOURCE_SHA256", NNX_SOURCE_SHA256) < 0) Py_CLEAR(m);
    return m;
}
