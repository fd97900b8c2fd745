/* aether.wire._ringc: the per-frame paths of the mapping transport's rings, in C.
 *
 * Why by hand: no library implements this ring layout (docs/protocol.md
 * section 10), and in pure Python putting a frame, polling it and giving
 * it back costs 3-5 us per direction (slicing, struct packing, a crc call,
 * bound-method calls), a third of a spinning round trip. Here the same
 * takes a few hundred nanoseconds.
 *
 * aether/wire/rings.py is the specification and the fallback: it holds
 * the same logic in Python (PyRingWriter, PyRingReader), uses this module
 * when it was built, and tests/wire/test_rings_native.py checks with
 * hypothesis that both give the same frames, indices and errors, torn and
 * forged frames included. Only the hot paths are here: RingWriter's
 * put() (its rare cases - a wrap, a full ring, a bad tail - call back into
 * the Python subclass's _put_slow) and all of RingReader.
 *
 * Safety: the region is shared with a peer that may write anything at any
 * time. Every index read from it is checked before use, a frame header is
 * copied out once and checked as a private copy, and nothing is ever
 * written outside this end's ring or its own control word. The buffers are
 * taken from the Python memoryviews on every call (never cached as raw
 * pointers), so a region that was released raises ValueError as the
 * Python version does instead of touching unmapped memory.
 *
 * Memory order: the head (writer) and tail (reader) are published with
 * release stores and the peer's index is read with acquire loads, so the
 * frame's bytes are visible before the index that covers them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ring layout is little-endian; rings.py's Python version serves other machines"
#endif

#define FRAME_SIZE 32
#define KIND_EXECUTE 0xC2
#define KIND_WRAP 0xC7
#define KIND_BASE 0xC0 /* kinds are 0xC0..0xFF: one bit each in a u64 mask */
#define FLAG_HEADER_CRC 1
/* Above this many bytes the crc is left to the configured crc32 (ISA-L,
 * ~9 GB/s); below it the table version here is faster than the call. */
#define CRC_IN_C_MAX 2048
/* rings.PRESUM_MIN: from this payload size a frame's crc asks the reader's
 * `sums` (rings.LoanSums), which may have summed the payload ahead. */
#define PRESUM_MIN 65536

static PyObject *corrupt_factory; /* rings._corrupt(what) -> exception */
static PyObject *crc32_func;      /* crc32(buffer, start) -> int */

/* ---- CRC-32 (the zlib polynomial), slicing by 8 ---- */

static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                              crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t
crc32_table(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint32_t lo = (uint32_t)v ^ crc, hi = (uint32_t)(v >> 32);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* The low 32 bits of `res`, a crc a Python call returned (the reference is
 * taken over; NULL: the call failed); -1 with an exception set on failure. */
static int64_t
crc_from_call(PyObject *res)
{
    if (res == NULL)
        return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(res);
    Py_DECREF(res);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    return (int64_t)(v & 0xFFFFFFFFu);
}

/* CRC-32 of data[start:end] of the memoryview `data` (whose bytes are at
 * `base`); -1 with an exception set on failure. */
static int64_t
frame_crc(PyObject *data, const uint8_t *base, Py_ssize_t start, Py_ssize_t end)
{
    if (end - start <= CRC_IN_C_MAX || crc32_func == NULL)
        return crc32_table(base + start, (size_t)(end - start));
    PyObject *part = PySequence_GetSlice(data, start, end);
    if (part == NULL)
        return -1;
    PyObject *zero = PyLong_FromLong(0);
    PyObject *res = zero ? PyObject_CallFunctionObjArgs(crc32_func, part, zero, NULL) : NULL;
    Py_XDECREF(zero);
    Py_DECREF(part);
    return crc_from_call(res);
}

/* Raise rings._corrupt(what): the session is over. Always returns NULL. */
static PyObject *
corrupt(const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *what = PyUnicode_FromFormatV(format, va);
    va_end(va);
    if (what == NULL)
        return NULL;
    if (corrupt_factory == NULL) {
        PyErr_SetObject(PyExc_RuntimeError, what);
        Py_DECREF(what);
        return NULL;
    }
    PyObject *exc = PyObject_CallOneArg(corrupt_factory, what);
    Py_DECREF(what);
    if (exc == NULL)
        return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* ---- buffers: taken per call, released before returning ---- */

typedef struct {
    Py_buffer ctl, data;
} Bufs;

static int
bufs_get(PyObject *ctl, PyObject *data, Py_ssize_t size, Py_ssize_t max_word, Bufs *b)
{
    if (ctl == NULL || data == NULL || size <= 0) {
        PyErr_SetString(PyExc_ValueError, "the ring was not initialised (__init__ not called)");
        return -1;
    }
    if (PyObject_GetBuffer(ctl, &b->ctl, PyBUF_WRITABLE) < 0)
        return -1;
    if (PyObject_GetBuffer(data, &b->data, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&b->ctl);
        return -1;
    }
    if (b->data.len != size || b->ctl.len < (max_word + 1) * 8 ||
        ((uintptr_t)b->ctl.buf & 7)) {
        PyBuffer_Release(&b->ctl);
        PyBuffer_Release(&b->data);
        PyErr_SetString(PyExc_ValueError, "the ring's buffers changed size");
        return -1;
    }
    return 0;
}

static void
bufs_release(Bufs *b)
{
    PyBuffer_Release(&b->ctl);
    PyBuffer_Release(&b->data);
}

static inline uint64_t
load_word(const Bufs *b, Py_ssize_t word)
{
    return __atomic_load_n((uint64_t *)b->ctl.buf + word, __ATOMIC_ACQUIRE);
}

static inline void
store_word(const Bufs *b, Py_ssize_t word, uint64_t value)
{
    __atomic_store_n((uint64_t *)b->ctl.buf + word, value, __ATOMIC_RELEASE);
}

static int
check_init(PyObject *ctl, PyObject *data, Py_ssize_t head_word, Py_ssize_t tail_word,
           Py_ssize_t *size)
{
    if (head_word < 0 || tail_word < 0 || head_word > 511 || tail_word > 511) {
        PyErr_SetString(PyExc_ValueError, "control words are 0..511");
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_WRITABLE) < 0)
        return -1;
    *size = view.len;
    PyBuffer_Release(&view);
    if (*size < FRAME_SIZE || *size % 8) {
        PyErr_SetString(PyExc_ValueError, "a ring is a multiple of 8 bytes, at least 32");
        return -1;
    }
    Bufs b;
    Py_ssize_t max_word = head_word > tail_word ? head_word : tail_word;
    if (bufs_get(ctl, data, *size, max_word, &b) < 0)
        return -1;
    bufs_release(&b);
    return 0;
}

/* ---- the producer's end ---- */

typedef struct {
    PyObject_HEAD
    PyObject *ctl;
    PyObject *data;
    Py_ssize_t size, head_word, tail_word, pos, wrap_from;
    Py_ssize_t bell_word; /* the peer's "I sleep" word, or -1 */
    unsigned long long head, seq;
} Writer;

static int
Writer_init(Writer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ctl", "data", "head_word", "tail_word", NULL};
    PyObject *ctl, *data;
    Py_ssize_t head_word, tail_word, size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnn", kwlist, &ctl, &data, &head_word,
                                     &tail_word))
        return -1;
    if (check_init(ctl, data, head_word, tail_word, &size) < 0)
        return -1;
    Py_INCREF(ctl);
    Py_XSETREF(self->ctl, ctl);
    Py_INCREF(data);
    Py_XSETREF(self->data, data);
    self->size = size;
    self->head_word = head_word;
    self->tail_word = tail_word;
    self->head = 0;
    self->seq = 1;
    self->pos = -1;
    self->wrap_from = -1;
    self->bell_word = -1;
    return 0;
}

static void
Writer_dealloc(Writer *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->ctl);
    Py_CLEAR(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Writer_traverse(Writer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ctl);
    Py_VISIT(self->data);
    return 0;
}

static int
as_u64(PyObject *o, unsigned long long max, unsigned long long *out)
{
    if (!PyLong_Check(o))
        return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* put(kind, op_id, arg, payload=b"") */
static PyObject *
Writer_put(Writer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "put(kind, op_id, arg, payload=b'')");
        return NULL;
    }
    PyObject *payload_obj = nargs == 4 ? args[3] : NULL;
    unsigned long long kind = 0, op_id = 0, arg = 0;
    Py_buffer payload = {0};
    Bufs b;
    int fast = as_u64(args[0], 0xFFFF, &kind) == 0 &&
               as_u64(args[1], UINT64_MAX, &op_id) == 0 &&
               as_u64(args[2], 0xFFFFFFFFu, &arg) == 0;
    if (fast && payload_obj != NULL) {
        if (PyObject_GetBuffer(payload_obj, &payload, PyBUF_SIMPLE) < 0)
            return NULL;
    }
    Py_ssize_t max_word = self->tail_word > self->head_word ? self->tail_word : self->head_word;
    if (self->bell_word > max_word)
        max_word = self->bell_word;
    if (bufs_get(self->ctl, self->data, self->size, max_word, &b) < 0) {
        if (payload.obj)
            PyBuffer_Release(&payload);
        return NULL;
    }
    uint64_t size = (uint64_t)self->size;
    uint64_t n = (uint64_t)payload.len;
    uint64_t span = FRAME_SIZE + ((n + 7) & ~(uint64_t)7);
    uint64_t head = self->head;
    uint64_t pos = head % size;
    uint64_t tail = load_word(&b, self->tail_word);
    if (!fast || n > 0xFFFFFFFFu || pos + span > size || tail > head ||
        head + span - tail > size || (tail & 7)) {
        /* a wrap, a full ring, a bad tail or odd arguments: the Python path
         * raises or handles them as rings.py specifies */
        bufs_release(&b);
        if (payload.obj)
            PyBuffer_Release(&payload);
        if (payload_obj == NULL)
            return PyObject_CallMethod((PyObject *)self, "_put_slow", "OOO", args[0], args[1],
                                       args[2]);
        return PyObject_CallMethod((PyObject *)self, "_put_slow", "OOOO", args[0], args[1],
                                   args[2], payload_obj);
    }
    uint8_t *f = (uint8_t *)b.data.buf + pos;
    if (n)
        memmove(f + FRAME_SIZE, payload.buf, (size_t)n);
    if (payload.obj)
        PyBuffer_Release(&payload);
    uint32_t seq32 = (uint32_t)self->seq, arg32 = (uint32_t)arg, len32 = (uint32_t)n, zero = 0;
    uint16_t kind16 = (uint16_t)kind, flags16 = 0;
    uint64_t op64 = op_id;
    memcpy(f + 4, &seq32, 4);
    memcpy(f + 8, &op64, 8);
    memcpy(f + 16, &kind16, 2);
    memcpy(f + 18, &flags16, 2);
    memcpy(f + 20, &arg32, 4);
    memcpy(f + 24, &len32, 4);
    memcpy(f + 28, &zero, 4);
    int64_t crc = frame_crc(self->data, (const uint8_t *)b.data.buf, (Py_ssize_t)pos + 4,
                            (Py_ssize_t)(pos + FRAME_SIZE + n));
    if (crc < 0) {
        bufs_release(&b);
        return NULL;
    }
    uint32_t crc32v = (uint32_t)crc;
    memcpy(f, &crc32v, 4);
    self->seq = (self->seq + 1) & 0xFFFFFFFFu;
    self->head = head + span;
    store_word(&b, self->head_word, head + span);
    int bell = 0;
    if (self->bell_word >= 0) {
        /* Dekker's pattern with the peer's "announce, re-check" (mapping.py):
         * the head's store must be visible before the peer's word is read. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        bell = load_word(&b, self->bell_word) != 0;
    }
    bufs_release(&b);
    return PyBool_FromLong(bell);
}

static PyMethodDef Writer_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Writer_put, METH_FASTCALL,
     "Copy one frame in and publish it (raises RingFull, ValueError); True when the\n"
     "peer announced it sleeps (bell_word), so that it must be woken."},
    {NULL}};

static PyObject *
Writer_get_bell(Writer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->bell_word);
}

static int
Writer_set_bell(Writer *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "bell_word cannot be deleted");
        return -1;
    }
    Py_ssize_t word = PyLong_AsSsize_t(value);
    if (word == -1 && PyErr_Occurred())
        return -1;
    if (word < -1 || word > 511) {
        PyErr_SetString(PyExc_ValueError, "bell_word is a control word 0..511, or -1");
        return -1;
    }
    self->bell_word = word;
    return 0;
}

static PyGetSetDef Writer_getset[] = {
    {"bell_word", (getter)Writer_get_bell, (setter)Writer_set_bell,
     "The control word where the peer announces it sleeps (-1: none)", NULL},
    {NULL}};

static PyMemberDef Writer_members[] = {
    {"_ctl", T_OBJECT, offsetof(Writer, ctl), READONLY, NULL},
    {"_data", T_OBJECT, offsetof(Writer, data), READONLY, NULL},
    {"_size", T_PYSSIZET, offsetof(Writer, size), READONLY, NULL},
    {"_head_word", T_PYSSIZET, offsetof(Writer, head_word), READONLY, NULL},
    {"_tail_word", T_PYSSIZET, offsetof(Writer, tail_word), READONLY, NULL},
    {"_pos", T_PYSSIZET, offsetof(Writer, pos), 0, NULL},
    {"_wrap_from", T_PYSSIZET, offsetof(Writer, wrap_from), 0, NULL},
    {"head", T_ULONGLONG, offsetof(Writer, head), 0, "bytes published (only grows)"},
    {"seq", T_ULONGLONG, offsetof(Writer, seq), 0, "the next frame's sequence number"},
    {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aether.wire._ringc.WriterCore",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The producer's hot path; rings.RingWriter adds the rest.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_traverse = (traverseproc)Writer_traverse,
    .tp_methods = Writer_methods,
    .tp_members = Writer_members,
    .tp_getset = Writer_getset,
};

/* ---- the consumer's end ---- */

typedef struct {
    PyObject_HEAD
    PyObject *ctl;
    PyObject *data;
    PyObject *kinds;
    PyObject *sums; /* rings.LoanSums or NULL/None */
    Py_ssize_t size, head_word, tail_word;
    unsigned long long tail, seq;
    long long next;
    uint64_t kind_mask;
    unsigned int flags;
} Reader;

static int
Reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ctl", "data", "head_word", "tail_word", "kinds", NULL};
    PyObject *ctl, *data, *kinds;
    Py_ssize_t head_word, tail_word, size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnnO", kwlist, &ctl, &data, &head_word,
                                     &tail_word, &kinds))
        return -1;
    if (check_init(ctl, data, head_word, tail_word, &size) < 0)
        return -1;
    uint64_t mask = 0;
    PyObject *it = PyObject_GetIter(kinds);
    if (it == NULL)
        return -1;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        long k = PyLong_AsLong(item);
        Py_DECREF(item);
        if (k == -1 && PyErr_Occurred())
            break;
        if (k < KIND_BASE || k >= KIND_BASE + 64 || k == KIND_WRAP) {
            PyErr_Format(PyExc_ValueError, "frame kind 0x%lx cannot be accepted", k);
            break;
        }
        mask |= (uint64_t)1 << (k - KIND_BASE);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    Py_INCREF(ctl);
    Py_XSETREF(self->ctl, ctl);
    Py_INCREF(data);
    Py_XSETREF(self->data, data);
    Py_INCREF(kinds);
    Py_XSETREF(self->kinds, kinds);
    self->kind_mask = mask;
    self->size = size;
    self->head_word = head_word;
    self->tail_word = tail_word;
    self->tail = 0;
    self->seq = 1;
    self->next = -1;
    self->flags = 0;
    return 0;
}

static void
Reader_dealloc(Reader *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->ctl);
    Py_CLEAR(self->data);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->sums);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ctl);
    Py_VISIT(self->data);
    Py_VISIT(self->kinds);
    Py_VISIT(self->sums);
    return 0;
}

/* sums.frame_crc(header, start, end) as an int; -1 with an exception set. */
static int64_t
sums_crc(PyObject *sums, Py_ssize_t header, Py_ssize_t start, Py_ssize_t end)
{
    return crc_from_call(PyObject_CallMethod(sums, "frame_crc", "nnn", header, start, end));
}

static inline int
reader_bufs(Reader *self, Bufs *b)
{
    return bufs_get(self->ctl, self->data, self->size,
                    self->tail_word > self->head_word ? self->tail_word : self->head_word, b);
}

/* The producer's head word, with the control buffer held in `ctl` (release
 * it after the last read); NULL with an exception set if it is not there. */
static const uint64_t *
reader_head_word(Reader *self, Py_buffer *ctl)
{
    if (self->ctl == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring was not initialised (__init__ not called)");
        return NULL;
    }
    if (PyObject_GetBuffer(self->ctl, ctl, PyBUF_SIMPLE) < 0)
        return NULL;
    if (ctl->len < (self->head_word + 1) * 8 || ((uintptr_t)ctl->buf & 7)) {
        PyBuffer_Release(ctl);
        PyErr_SetString(PyExc_ValueError, "the ring's buffers changed size");
        return NULL;
    }
    return (const uint64_t *)ctl->buf + self->head_word;
}

static PyObject *
Reader_pending(Reader *self, PyObject *Py_UNUSED(ignored))
{
    Py_buffer ctl;
    const uint64_t *headp = reader_head_word(self, &ctl);
    if (headp == NULL)
        return NULL;
    uint64_t head = __atomic_load_n(headp, __ATOMIC_ACQUIRE);
    PyBuffer_Release(&ctl);
    return PyBool_FromLong(head != self->tail);
}

static inline int64_t
monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* spin(seconds): True once the producer has published something not yet
 * read, looking for up to `seconds` without sleeping (the GIL is kept, as
 * a Python spin keeps it). One call instead of a Python loop of pending()
 * and clock reads: the reply is seen within a few nanoseconds of landing
 * and the spin pauses the CPU between looks. */
static PyObject *
Reader_spin(Reader *self, PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    Py_buffer ctl;
    const uint64_t *headp = reader_head_word(self, &ctl);
    if (headp == NULL)
        return NULL;
    const uint64_t tail = self->tail;
    int found = __atomic_load_n(headp, __ATOMIC_ACQUIRE) != tail;
    if (!found && seconds > 0) {
        /* seconds beyond a day are a day: the sum below cannot overflow */
        int64_t end = monotonic_ns() + (int64_t)((seconds < 86400.0 ? seconds : 86400.0) * 1e9);
        for (;;) {
            for (int i = 0; i < 64; i++) {
                if (__atomic_load_n(headp, __ATOMIC_ACQUIRE) != tail) {
                    found = 1;
                    break;
                }
                cpu_relax();
            }
            if (found || monotonic_ns() >= end)
                break;
        }
    }
    PyBuffer_Release(&ctl);
    return PyBool_FromLong(found);
}

static PyObject *
Reader_poll(Reader *self, PyObject *Py_UNUSED(ignored))
{
    if (self->ctl == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring was not initialised (__init__ not called)");
        return NULL;
    }
    if (self->next >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "poll before release of the previous frame");
        return NULL;
    }
    Bufs b;
    if (reader_bufs(self, &b) < 0)
        return NULL;
    const uint64_t size = (uint64_t)self->size;
    const uint8_t *data = (const uint8_t *)b.data.buf;
    PyObject *res = NULL;
    int skipped = 0; /* an honest producer never wraps twice in a row (rings.py) */
    for (;;) {
        uint64_t tail = self->tail;
        uint64_t head = load_word(&b, self->head_word);
        if (head == tail) {
            res = Py_None;
            Py_INCREF(res);
            goto out;
        }
        uint64_t avail = head - tail;
        if (head < tail || avail > size || (avail & 7)) {
            corrupt("producer head %llu is impossible with tail %llu",
                    (unsigned long long)head, (unsigned long long)tail);
            goto out;
        }
        uint64_t pos = tail % size;
        uint64_t room = size - pos;
        uint8_t hdr[FRAME_SIZE];
        uint16_t kind = 0;
        if (room >= FRAME_SIZE) {
            memcpy(hdr, data + pos, FRAME_SIZE); /* one read: the checks see a private copy */
            memcpy(&kind, hdr + 16, 2);
        }
        if (room < FRAME_SIZE || kind == KIND_WRAP) {
            if (skipped) {
                corrupt("a wrap right after a wrap");
                goto out;
            }
            skipped = 1;
            if (avail < room) {
                corrupt("wrap before the producer reached the end of the ring");
                goto out;
            }
            self->tail = tail + room;
            store_word(&b, self->tail_word, tail + room);
            continue;
        }
        uint32_t crc, seq, arg, length, reserved;
        uint64_t op_id;
        uint16_t flags;
        memcpy(&crc, hdr, 4);
        memcpy(&seq, hdr + 4, 4);
        memcpy(&op_id, hdr + 8, 8);
        memcpy(&flags, hdr + 18, 2);
        memcpy(&arg, hdr + 20, 4);
        memcpy(&length, hdr + 24, 4);
        memcpy(&reserved, hdr + 28, 4);
        uint64_t span = FRAME_SIZE + (((uint64_t)length + 7) & ~(uint64_t)7);
        if (span > avail || span > room) {
            corrupt("frame of %u bytes overruns the published data", (unsigned int)length);
            goto out;
        }
        if (seq != self->seq) {
            corrupt("frame sequence %u, expected %llu", (unsigned int)seq, self->seq);
            goto out;
        }
        int kind_ok = kind >= KIND_BASE && kind < KIND_BASE + 64 &&
                      (self->kind_mask >> (kind - KIND_BASE)) & 1;
        if (!kind_ok || reserved ||
            (flags && (flags != FLAG_HEADER_CRC || kind != KIND_EXECUTE))) {
            corrupt("frame kind 0x%x flags %u reserved %u", (unsigned int)kind,
                    (unsigned int)flags, (unsigned int)reserved);
            goto out;
        }
        Py_ssize_t start = (Py_ssize_t)pos + FRAME_SIZE;
        Py_ssize_t end = start + (Py_ssize_t)length;
        int64_t got;
        if (!flags && length >= PRESUM_MIN && self->sums != NULL && self->sums != Py_None)
            got = sums_crc(self->sums, (Py_ssize_t)pos + 4, start, end);
        else
            got = frame_crc(self->data, data, (Py_ssize_t)pos + 4, flags ? start : end);
        if (got < 0)
            goto out;
        if ((uint32_t)got != crc) {
            corrupt("frame %u fails its crc32", (unsigned int)seq);
            goto out;
        }
        PyObject *view = PySequence_GetSlice(self->data, start, end);
        if (view == NULL)
            goto out;
        res = PyTuple_New(4);
        if (res == NULL) {
            Py_DECREF(view);
            goto out;
        }
        PyObject *k = PyLong_FromUnsignedLong(kind);
        PyObject *o = PyLong_FromUnsignedLongLong(op_id);
        PyObject *a = PyLong_FromUnsignedLong(arg);
        if (k == NULL || o == NULL || a == NULL) {
            Py_XDECREF(k);
            Py_XDECREF(o);
            Py_XDECREF(a);
            Py_DECREF(view);
            Py_CLEAR(res);
            goto out;
        }
        PyTuple_SET_ITEM(res, 0, k);
        PyTuple_SET_ITEM(res, 1, o);
        PyTuple_SET_ITEM(res, 2, a);
        PyTuple_SET_ITEM(res, 3, view);
        self->flags = flags;
        self->seq = ((unsigned long long)seq + 1) & 0xFFFFFFFFu;
        self->next = (long long)(tail + span);
        goto out;
    }
out:
    bufs_release(&b);
    return res;
}

/* take(seconds): spin(seconds), then poll() if something is pending; None
 * when nothing came. One call for the waiter's common case. */
static PyObject *
Reader_take(Reader *self, PyObject *arg)
{
    PyObject *found = Reader_spin(self, arg);
    if (found == NULL)
        return NULL;
    int pending = found == Py_True;
    Py_DECREF(found);
    if (!pending)
        Py_RETURN_NONE;
    return Reader_poll(self, NULL);
}

static PyObject *
Reader_release(Reader *self, PyObject *Py_UNUSED(ignored))
{
    if (self->next >= 0) {
        Bufs b;
        if (reader_bufs(self, &b) < 0)
            return NULL;
        uint64_t next = (uint64_t)self->next;
        self->next = -1;
        self->tail = next;
        store_word(&b, self->tail_word, next);
        bufs_release(&b);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Reader_methods[] = {
    {"pending", (PyCFunction)Reader_pending, METH_NOARGS,
     "True when the producer has published something not yet read."},
    {"spin", (PyCFunction)Reader_spin, METH_O,
     "spin(seconds): True once something is pending, looking for up to `seconds`."},
    {"poll", (PyCFunction)Reader_poll, METH_NOARGS,
     "The next frame as (kind, op_id, arg, payload view), or None if empty."},
    {"take", (PyCFunction)Reader_take, METH_O,
     "take(seconds): spin(seconds), then the next frame as poll() gives it, or None."},
    {"release", (PyCFunction)Reader_release, METH_NOARGS,
     "Give the last polled frame's bytes back to the producer."},
    {NULL}};

static PyMemberDef Reader_members[] = {
    {"_ctl", T_OBJECT, offsetof(Reader, ctl), READONLY, NULL},
    {"_data", T_OBJECT, offsetof(Reader, data), READONLY, NULL},
    {"_size", T_PYSSIZET, offsetof(Reader, size), READONLY, NULL},
    {"_head_word", T_PYSSIZET, offsetof(Reader, head_word), READONLY, NULL},
    {"_tail_word", T_PYSSIZET, offsetof(Reader, tail_word), READONLY, NULL},
    {"kinds", T_OBJECT, offsetof(Reader, kinds), READONLY, NULL},
    {"tail", T_ULONGLONG, offsetof(Reader, tail), 0, "bytes consumed (only grows)"},
    {"seq", T_ULONGLONG, offsetof(Reader, seq), 0, "the next frame's sequence number"},
    {"_next", T_LONGLONG, offsetof(Reader, next), READONLY, NULL},
    {"flags", T_UINT, offsetof(Reader, flags), READONLY, "flags of the frame polled last"},
    {"sums", T_OBJECT, offsetof(Reader, sums), 0,
     "rings.LoanSums for a loan's crc summed ahead, or None"},
    {NULL}};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aether.wire._ringc.RingReader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The consumer's end of one ring (rings.PyRingReader in C).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_methods = Reader_methods,
    .tp_members = Reader_members,
};

/* ---- module ---- */

static PyObject *
configure(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"corrupt", "crc32", NULL};
    PyObject *factory, *crc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OO", kwlist, &factory, &crc))
        return NULL;
    Py_INCREF(factory);
    Py_XSETREF(corrupt_factory, factory);
    Py_INCREF(crc);
    Py_XSETREF(crc32_func, crc);
    Py_RETURN_NONE;
}

static PyObject *
fence(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *
crc32_c(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t crc = crc32_table((const uint8_t *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(*, corrupt, crc32): the error factory and the bulk crc32 to use."},
    {"fence", fence, METH_NOARGS, "A full memory barrier (mfence on x86-64)."},
    {"crc32", crc32_c, METH_O, "CRC-32 (zlib's) of a buffer, by this module's table code."},
    {NULL}};

static struct PyModuleDef ringc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aether.wire._ringc",
    .m_doc = "The mapping transport's ring hot paths in C (see aether.wire.rings).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__ringc(void)
{
    crc_init();
    if (PyType_Ready(&WriterType) < 0 || PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ringc_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "WriterCore", (PyObject *)&WriterType) < 0)
        goto fail;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "RingReader", (PyObject *)&ReaderType) < 0)
        goto fail;
    if (PyModule_AddIntConstant(m, "CRC_IN_C_MAX", CRC_IN_C_MAX) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
