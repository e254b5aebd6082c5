/*
 * STAND-IN for libedgetpu, compiled by the test session (tests/fake_libedgetpu.py) with the system cc.
 * It drives no Edge TPU and makes no claim of TPU execution. It implements the external-delegate entry
 * points an interpreter's load_delegate() calls (tensorflow/lite/delegates/external/
 * external_delegate_interface.h) and misbehaves the way a libedgetpu built against another TensorFlow,
 * or a stuck accelerator, does. One behaviour per build, chosen with -DFAKE_<BEHAVIOUR>:
 *
 *   FAKE_SEGFAULT  tflite_plugin_create_delegate dies with SIGSEGV (tensorflow/tensorflow#62371)
 *   FAKE_HANG      tflite_plugin_create_delegate never returns
 *   FAKE_NULL      reports an error through the callback, then returns NULL
 *   FAKE_CTOR      the library's initialiser dies with SIGSEGV when it is loaded (dlopen)
 *   FAKE_NOOP      returns a do-nothing delegate: its Prepare claims no node, so the interpreter's own CPU
 *                  kernels run the whole model (the success path, for the probe cache and a mid-run fault)
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef void (*report_error_fn)(const char *);

/* TfLiteDelegate as tensorflow/lite/core/c/common.h lays it out; the pointers' targets stay opaque. */
typedef struct FakeDelegate {
    void *data_;
    int (*Prepare)(void *context, struct FakeDelegate *delegate);
    int (*CopyFromBufferHandle)(void *context, struct FakeDelegate *delegate, int handle, void *tensor);
    int (*CopyToBufferHandle)(void *context, struct FakeDelegate *delegate, int handle, void *tensor);
    void (*FreeBufferHandle)(void *context, struct FakeDelegate *delegate, int *handle);
    int64_t flags;
    void *opaque_delegate_builder;
} FakeDelegate;

/* An invalid write the compiler cannot prove or drop: what a mismatched build does. */
__attribute__((unused)) static void invalid_write(void) {
    volatile int *volatile nowhere = NULL;
    *nowhere = 1;
}

__attribute__((unused)) static int claim_nothing(void *context, FakeDelegate *delegate) {
    (void)context;
    (void)delegate;
    return 0; /* kTfLiteOk, no ReplaceNodeSubsetsWithDelegateKernels: every node stays on the CPU */
}

#ifdef FAKE_CTOR
__attribute__((constructor)) static void crash_on_load(void) { invalid_write(); }
#endif

void *tflite_plugin_create_delegate(char **keys, char **values, size_t count, report_error_fn report) {
    (void)keys;
    (void)values;
    (void)count;
#if defined(FAKE_SEGFAULT)
    (void)report;
    invalid_write();
    return NULL;
#elif defined(FAKE_HANG)
    (void)report;
    for (;;) pause();
#elif defined(FAKE_NULL)
    if (report) report("Failed to open device: no Edge TPU found (stand-in libedgetpu)");
    return NULL;
#else
    (void)report;
    FakeDelegate *delegate = calloc(1, sizeof(FakeDelegate));
    if (delegate) delegate->Prepare = claim_nothing;
    return delegate;
#endif
}

void tflite_plugin_destroy_delegate(void *delegate) { free(delegate); }
