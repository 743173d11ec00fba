/* fileio.c — see fileio.h. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skv_check.h"

static int write_all(int fd, const unsigned char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

subkv_status skv_file_write_atomic(const char *path, const void *data, size_t len, skv_err *err) {
    char tmp[4096], dir[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "path too long: %s", path);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return skv_set_error(err, SKV_ERR_IO, "open %s: %s", tmp, strerror(errno));
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return skv_set_error(err, SKV_ERR_IO, "write %s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return skv_set_error(err, SKV_ERR_IO, "close %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return skv_set_error(err, SKV_ERR_IO, "rename %s -> %s: %s", tmp, path, strerror(e));
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) { /* make the rename itself durable */
        (void)fsync(dfd);
        close(dfd);
    }
    return SKV_OK;
}

subkv_status skv_file_read(const char *path, size_t max_len, unsigned char **out, size_t *len,
                           skv_err *err) {
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return skv_set_error(err, SKV_ERR_IO, "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (size_t)st.st_size > max_len) {
        close(fd);
        return skv_set_error(err, SKV_ERR_IO, "%s: unreadable or larger than %zu bytes", path,
                             max_len);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %zu bytes of %s", n, path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return skv_set_error(err, SKV_ERR_IO, "read %s: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return SKV_OK;
}

subkv_status skv_dir_ensure(const char *dir, skv_err *err) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return SKV_OK;
        return skv_set_error(err, SKV_ERR_IO, "%s exists and is not a directory", dir);
    }
    return skv_set_error(err, SKV_ERR_IO, "mkdir %s: %s", dir, strerror(errno));
}
