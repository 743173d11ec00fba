/*
 * skv_frame.h — length-prefixed frames on a stream socket: u32 little-endian length, then
 * that many bytes (a packed Subkv__Request or Subkv__Reply). Shared by the client library
 * and the coordinator's server. Plain libc; no dependency on cache/.
 */
#ifndef SUBKV_FRAME_H
#define SUBKV_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Default limit of a frame's payload, both ways: the coordinator's --max-frame default and
 * the client's reply limit (a 4096-token prefill of 16 kv heads x d 128 in f32 is 64 MiB). */
#define SKV_FRAME_DEFAULT_MAX (256u << 20)
#define SKV_FRAME_HEADER 4u

/* Write the 4-byte header for a payload of len bytes into hdr. */
void skv_frame_header(uint8_t hdr[4], uint32_t len);
/* Payload length from a 4-byte header. */
uint32_t skv_frame_length(const uint8_t hdr[4]);

/*
 * Blocking helpers for clients: send header + payload (retrying on EINTR and short
 * writes), receive one whole frame into a malloc'd buffer (*out, *len; caller frees).
 * Return 0 on success, -1 with errno set on I/O failure (ECONNRESET / EPIPE on a closed
 * peer), -2 when the announced length exceeds max_len (nothing allocated).
 */
int skv_frame_send(int fd, const void *payload, uint32_t len);
int skv_frame_recv(int fd, uint32_t max_len, uint8_t **out, uint32_t *len);

/*
 * Open a stream socket to addr: "HOST:PORT" (TCP, e.g. 127.0.0.1:7439) or "unix:PATH".
 * Returns the fd, or -1 with a message in err[errlen].
 */
int skv_socket_connect(const char *addr, char *err, size_t errlen);

#endif /* SUBKV_FRAME_H */
