/*
 * tg_lib.c -- library identity: ABI version, embedded defaults, the no-op bridge probe.
 */
#include "tg_internal.h"

TG_API int32_t tg_abi_version(void) { return TG_ABI_VERSION; }

/* Written by hand on purpose: this is an independent surface that the harness's `defaults`
 * check compares against reference/defaults.py, so it must NOT be generated from it.
 * Keys of TrainingDefaults, sorted, compact JSON (Python's json.dumps float spelling). */
static const char defaults_json[] =
    "{\"batch_size\":16,\"beta1\":0.9,\"beta2\":0.95,\"context_length\":64,\"dropout\":0.0,"
    "\"eps\":1e-08,\"grad_clip\":1.0,\"init_std\":0.02,\"learning_rate\":0.0003,"
    "\"seed\":1337,\"warmup_steps\":100,\"weight_decay\":0.1}";

TG_API const char *tg_defaults_json(void) { return defaults_json; }

TG_API void tg_noop(void) {}
