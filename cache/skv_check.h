/*
 * skv_check.h — status-propagating macros (after NCCL's checks.h).
 *
 * Every fallible internal call returns a subkv_status. SKV_CHECK returns it upward,
 * SKV_CHECK_GOTO stores it and jumps to the function's one cleanup label. With
 * SUBKV_TRACE_ERRORS defined, each hop prints "file:line status" to stderr so a
 * failure deep inside leaves a short backtrace.
 */
#ifndef SUBKV_CHECK_H
#define SUBKV_CHECK_H

#include "subkv.h"

#ifdef SUBKV_TRACE_ERRORS
#include <stdio.h>
#define SKV_TRACE_(st)                                                                             \
    fprintf(stderr, "subkv: %s:%d %s\n", __FILE__, __LINE__, subkv_status_name(st))
#else
#define SKV_TRACE_(st) ((void)0)
#endif

#define SKV_CHECK(call)                                                                            \
    do {                                                                                           \
        subkv_status skv_st_ = (call);                                                             \
        if (skv_st_ != SKV_OK) {                                                                   \
            SKV_TRACE_(skv_st_);                                                                   \
            return skv_st_;                                                                        \
        }                                                                                          \
    } while (0)

#define SKV_CHECK_GOTO(call, res, label)                                                           \
    do {                                                                                           \
        (res) = (call);                                                                            \
        if ((res) != SKV_OK) {                                                                     \
            SKV_TRACE_(res);                                                                       \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

/* CUDA runtime calls (cuda/ only): map a failure to SKV_ERR_DEVICE with a message. */
#ifdef __CUDACC__
#define SKV_CUDA_CHECK(call, err)                                                                  \
    do {                                                                                           \
        cudaError_t skv_ce_ = (call);                                                              \
        if (skv_ce_ != cudaSuccess)                                                                \
            return skv_set_error((err), SKV_ERR_DEVICE, "%s:%d %s: %s", __FILE__, __LINE__, #call, \
                                 cudaGetErrorString(skv_ce_));                                     \
    } while (0)
#endif

/* MPI calls (coordinator/, worker/): MPI_SUCCESS or SKV_ERR_IO with the MPI message. */
#ifdef MPI_VERSION
#define SKV_MPI_CHECK(call, err)                                                                   \
    do {                                                                                           \
        int skv_me_ = (call);                                                                      \
        if (skv_me_ != MPI_SUCCESS) {                                                              \
            char skv_mm_[MPI_MAX_ERROR_STRING];                                                    \
            int skv_ml_ = 0;                                                                       \
            MPI_Error_string(skv_me_, skv_mm_, &skv_ml_);                                          \
            return skv_set_error((err), SKV_ERR_IO, "%s:%d %s: %s", __FILE__, __LINE__, #call,     \
                                 skv_mm_);                                                         \
        }                                                                                          \
    } while (0)
#endif

/* NCCL calls: ncclSuccess or SKV_ERR_DEVICE with ncclGetErrorString. */
#ifdef NCCL_MAJOR
#define SKV_NCCL_CHECK(call, err)                                                                  \
    do {                                                                                           \
        ncclResult_t skv_nr_ = (call);                                                             \
        if (skv_nr_ != ncclSuccess)                                                                \
            return skv_set_error((err), SKV_ERR_DEVICE, "%s:%d %s: %s", __FILE__, __LINE__, #call, \
                                 ncclGetErrorString(skv_nr_));                                     \
    } while (0)
#endif

#ifdef __cplusplus
extern "C" {
#endif
/* Fill *err (if not NULL) with code and a printf-style message; returns code. */
subkv_status skv_set_error(skv_err *err, subkv_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#ifdef __cplusplus
}
#endif

#endif /* SUBKV_CHECK_H */
