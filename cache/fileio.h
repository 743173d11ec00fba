/*
 * fileio.h — durable file writes for checkpoints (POSIX).
 */
#ifndef SUBKV_FILEIO_H
#define SUBKV_FILEIO_H

#include <stddef.h>

#include "subkv.h"

/*
 * Write data[len] to path atomically: a temporary file in the same directory, fsync,
 * rename over path, fsync of the directory. A crash at any point leaves either the old
 * file or the new one, never a mix. SKV_ERR_IO with the errno text on failure (the
 * temporary file is removed).
 */
subkv_status skv_file_write_atomic(const char *path, const void *data, size_t len, skv_err *err);

/* Read a whole file (at most max_len bytes) into a malloc'd buffer; caller frees *out. */
subkv_status skv_file_read(const char *path, size_t max_len, unsigned char **out, size_t *len,
                           skv_err *err);

/* mkdir -p for one level (the directory itself; its parent must exist). */
subkv_status skv_dir_ensure(const char *dir, skv_err *err);

#endif /* SUBKV_FILEIO_H */
