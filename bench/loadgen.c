/* Load generator for the echo benchmarks: non-blocking sockets and one epoll, so that
 * it is never the bottleneck. Every mode prints one JSON line, including the
 * generator's own CPU use (fraction of one core) over the measured interval.
 *
 *   loadgen pingpong PORT CONNS SIZE SECONDS   TCP: send SIZE bytes, wait for the echo
 *   loadgen udp      PORT CLIENTS SIZE SECONDS  UDP: the same with datagrams
 *   loadgen bulk     PORT SECONDS               TCP: stream 64 KiB writes, count echo
 *   loadgen churn    PORT CONCURRENCY SECONDS   TCP: connect, 64-byte echo, close
 *   loadgen idle     PORT CONNS                 open CONNS, print, wait for stdin, exit
 *   loadgen http     PORT CONNS SECONDS FILE    HTTP/1.1 keep-alive: send the request held
 *                                               in FILE, read the whole response, again
 *   loadgen httpidle PORT CONNS FILE            as idle, each connection served one request
 *   loadgen wsecho   PORT CONNS SECONDS FILE    WebSocket: send FILE as a text message,
 *                                               wait for one message back, again
 *   loadgen wsfan    PORT CONNS SECONDS FILE    WebSocket: every connection sends FILE,
 *                                               then waits for CONNS messages (everyone's)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in server;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static int tcp_connect(int nonblocking) {
  int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0), one = 1;
  if (fd < 0) die("socket");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS)
    die("connect");
  return fd;
}

/* Ping-pong over TCP or UDP: each connection has one message in flight. */
static int pingpong(int udp, int n, int size, double seconds) {
  char *msg = malloc(size), *buf = malloc(size + 1);
  memset(msg, 'x', size);
  int *fds = calloc(n, sizeof(int));
  size_t *got = calloc(n, sizeof(size_t));
  double *sent_at = calloc(n, sizeof(double));
  size_t cap = 1 << 24, count = 0;
  float *lat = malloc(cap * sizeof(float));
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    if (udp) {
      fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
      if (connect(fds[i], (struct sockaddr *)&server, sizeof server) < 0) die("connect");
    } else {
      fds[i] = tcp_connect(0);
      fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  double start = now(), end = start + seconds, warm = start + seconds * 0.1, from = 0, cpu0 = 0;
  long trips = 0, lost = 0;
  for (int i = 0; i < n; i++) {
    sent_at[i] = now();
    if (write(fds[i], msg, size) != size) die("write");
  }
  struct epoll_event events[1024];
  while (now() < end) {
    int k = epoll_wait(ep, events, 1024, 50);
    double t = now();
    if (!from && t >= warm) { from = t; trips = 0; count = 0; cpu0 = cpu_seconds(); }
    if (k == 0 && udp) { /* a datagram was lost: resend on every idle socket */
      for (int i = 0; i < n; i++)
        if (t - sent_at[i] > 0.05) { lost++; sent_at[i] = t; if (write(fds[i], msg, size) < 0) die("write"); }
      continue;
    }
    for (int j = 0; j < k; j++) {
      int i = events[j].data.u32;
      ssize_t r = read(fds[i], buf, udp ? size + 1 : size - got[i]);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0 && !(udp && r == 0)) { fprintf(stderr, "connection closed\n"); return 1; }
      got[i] += r;
      if (got[i] < (size_t)size) continue;
      got[i] = 0;
      if (from) { trips++; if (count < cap) lat[count++] = (float)((t - sent_at[i]) * 1e6); }
      sent_at[i] = t;
      if (write(fds[i], msg, size) != size) die("write");
    }
  }
  double elapsed = now() - from;
  qsort(lat, count, sizeof(float), cmp);
  printf("{\"round_trips_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
         "\"lost\": %ld, \"generator_cpu\": %.2f}\n",
         trips / elapsed, count ? lat[count / 2] : 0.0, count ? lat[(size_t)(count * 0.99)] : 0.0,
         lost, (cpu_seconds() - cpu0) / elapsed);
  return 0;
}

/* One TCP connection: write 64 KiB chunks as fast as the server takes them while
 * reading the echo; report echoed megabytes per second. */
static int bulk(double seconds) {
  int fd = tcp_connect(0);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  static char out[65536], in[262144];
  memset(out, 'b', sizeof out);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  long long written = 0, echoed = 0, counted = 0;
  double start = now(), end = start + seconds, warm = start + seconds * 0.1, from = 0, cpu0 = 0;
  while (now() < end) {
    struct epoll_event got[4];
    int k = epoll_wait(ep, got, 4, 50);
    double t = now();
    if (!from && t >= warm) { from = t; counted = 0; cpu0 = cpu_seconds(); }
    for (int j = 0; j < k; j++) {
      if (got[j].events & EPOLLIN) {
        ssize_t r;
        while ((r = read(fd, in, sizeof in)) > 0) { echoed += r; if (from) counted += r; }
        if (r == 0) { fprintf(stderr, "connection closed\n"); return 1; }
      }
      /* keep at most 4 MiB in flight so the server's flow control is not the story */
      if ((got[j].events & EPOLLOUT) && written - echoed < (4 << 20)) {
        ssize_t w = write(fd, out, sizeof out);
        if (w > 0) written += w;
      }
    }
  }
  double elapsed = now() - from;
  printf("{\"mb_per_s\": %.1f, \"generator_cpu\": %.2f}\n", counted / elapsed / 1e6,
         (cpu_seconds() - cpu0) / elapsed);
  return 0;
}

/* CONCURRENCY slots, each: connect, send 64 bytes, read the echo, close, again. */
static int churn(int slots, double seconds) {
  int ep = epoll_create1(0), *fds = calloc(slots, sizeof(int)), *state = calloc(slots, sizeof(int));
  char msg[64], buf[64];
  memset(msg, 'c', sizeof msg);
  long done = 0;
  double start = now(), end = start + seconds, warm = start + seconds * 0.1, from = 0, cpu0 = 0;
  for (int i = 0; i < slots; i++) {
    fds[i] = tcp_connect(1);
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  struct epoll_event events[256];
  while (now() < end) {
    int k = epoll_wait(ep, events, 256, 50);
    double t = now();
    if (!from && t >= warm) { from = t; done = 0; cpu0 = cpu_seconds(); }
    for (int j = 0; j < k; j++) {
      int i = events[j].data.u32, fd = fds[i];
      if (state[i] == 0) { /* connected: send */
        int err = 0; socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { fprintf(stderr, "connect: %s\n", strerror(err)); return 1; }
        if (write(fd, msg, sizeof msg) != sizeof msg) die("write");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        state[i] = 1;
      } else { /* echo back: close and start again */
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) { fprintf(stderr, "connection closed early\n"); return 1; }
        close(fd);
        done++;
        fds[i] = tcp_connect(1);
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        state[i] = 0;
      }
    }
  }
  double elapsed = now() - from;
  printf("{\"connections_per_s\": %.0f, \"generator_cpu\": %.2f}\n", done / elapsed,
         (cpu_seconds() - cpu0) / elapsed);
  return 0;
}

/* Open CONNS connections, make sure each is served (one echo), then hold them. */
static int idle(int n) {
  int *fds = calloc(n, sizeof(int));
  char buf[1];
  for (int i = 0; i < n; i++) {
    fds[i] = tcp_connect(0);
    if (write(fds[i], "i", 1) != 1 || read(fds[i], buf, 1) != 1) die("echo");
  }
  printf("{\"open\": %d}\n", n);
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof line, stdin)) { /* stdin closed: exit */ }
  return 0;
}

static char *read_request(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) die("request file");
  static char request[65536];
  *size = fread(request, 1, sizeof request, f);
  fclose(f);
  return request;
}

/* Where a response held in buf (len bytes so far) ends, or 0 when it is not whole yet:
 * its head, then Content-Length bytes (none for 204 and 304). */
static size_t response_end(const char *buf, size_t len) {
  const char *head_end = memmem(buf, len, "\r\n\r\n", 4);
  if (!head_end) return 0;
  size_t head = (size_t)(head_end - buf) + 4, body = 0;
  for (const char *p = buf; p < head_end; p++) {
    if ((p == buf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15)) {
      body = strtoul(p + 15, NULL, 10);
      break;
    }
  }
  return len >= head + body ? head + body : 0;
}

/* The keep-alive exchanges of the HTTP and WebSocket modes: each of n connections sends
 * `message`, waits until `complete` says `expect` units (responses, messages) arrived,
 * sends again; `complete` consumes them from the connection's buffer and returns how
 * many, or -1 on a protocol error. Reports units per second under `metric`. */
typedef int (*Complete)(unsigned char *buf, size_t *got);

static int exchange(int n, double seconds, const char *message, size_t size, int *fds,
                    Complete complete, int expect, const char *metric) {
  int ep = epoll_create1(0), *waiting = calloc(n, sizeof(int));
  size_t *got = calloc(n, sizeof(size_t)), cap = 1 << 24, count = 0;
  unsigned char **bufs = calloc(n, sizeof(char *));
  double *sent_at = calloc(n, sizeof(double));
  float *lat = malloc(cap * sizeof(float));
  for (int i = 0; i < n; i++) {
    fcntl(fds[i], F_SETFL, O_NONBLOCK);
    bufs[i] = malloc(1 << 20);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  double start = now(), end = start + seconds, warm = start + seconds * 0.1, from = 0, cpu0 = 0;
  long done = 0;
  for (int i = 0; i < n; i++) {
    sent_at[i] = now();
    waiting[i] = expect;
    if (write(fds[i], message, size) != (ssize_t)size) die("write");
  }
  struct epoll_event events[1024];
  while (now() < end) {
    int k = epoll_wait(ep, events, 1024, 50);
    double t = now();
    if (!from && t >= warm) { from = t; done = 0; count = 0; cpu0 = cpu_seconds(); }
    for (int j = 0; j < k; j++) {
      int i = events[j].data.u32;
      ssize_t r = read(fds[i], bufs[i] + got[i], (1 << 20) - got[i]);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) { fprintf(stderr, "connection closed\n"); return 1; }
      got[i] += r;
      int units = complete(bufs[i], &got[i]);
      if (units < 0) return 1;
      if (!units && got[i] == 1 << 20) { fprintf(stderr, "answer too large\n"); return 1; }
      if (from) done += units;
      waiting[i] -= units;
      if (waiting[i] > 0) continue;
      if (from && count < cap) lat[count++] = (float)((t - sent_at[i]) * 1e6);
      sent_at[i] = t;
      waiting[i] += expect;
      if (write(fds[i], message, size) != (ssize_t)size) die("write");
    }
  }
  double elapsed = now() - from;
  qsort(lat, count, sizeof(float), cmp);
  printf("{\"%s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"generator_cpu\": %.2f}\n",
         metric, done / elapsed, count ? lat[count / 2] : 0.0,
         count ? lat[(size_t)(count * 0.99)] : 0.0, (cpu_seconds() - cpu0) / elapsed);
  return 0;
}

/* HTTP: a whole 200 response in the buffer is one unit. */
static int http_complete(unsigned char *buf, size_t *got) {
  size_t whole = response_end((const char *)buf, *got);
  if (!whole) return 0;
  if (strncmp((const char *)buf, "HTTP/1.1 200", 12)) {
    fprintf(stderr, "unexpected response: %.40s\n", buf);
    return -1;
  }
  memmove(buf, buf + whole, *got - whole);
  *got -= whole;
  return 1;
}

/* CONNS keep-alive connections, each with one request in flight. */
static int http(int n, double seconds, const char *path) {
  size_t size;
  const char *request = read_request(path, &size);
  int *fds = calloc(n, sizeof(int));
  for (int i = 0; i < n; i++) fds[i] = tcp_connect(0);
  return exchange(n, seconds, request, size, fds, http_complete, 1, "requests_per_s");
}

/* Open CONNS keep-alive connections, each served one request, then hold them. */
static int http_idle(int n, const char *path) {
  size_t size;
  const char *request = read_request(path, &size);
  int *fds = calloc(n, sizeof(int));
  static char buf[1 << 16];
  for (int i = 0; i < n; i++) {
    fds[i] = tcp_connect(0);
    if (write(fds[i], request, size) != (ssize_t)size) die("write");
    size_t got = 0;
    while (!response_end(buf, got)) {
      ssize_t r = read(fds[i], buf + got, sizeof buf - got);
      if (r <= 0) die("response");
      got += r;
    }
  }
  printf("{\"open\": %d}\n", n);
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof line, stdin)) { /* stdin closed: exit */ }
  return 0;
}

/* WebSocket (RFC 6455), just enough for the benchmarks: the upgrade with a fixed key
 * (no extensions), masked text frames out, unmasked frames in. */
static int ws_open(const char *path) {
  int fd = tcp_connect(0);
  char request[512], buf[4096];
  int n = snprintf(request, sizeof request,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n", path);
  if (write(fd, request, n) != n) die("write");
  size_t got = 0;
  while (!memmem(buf, got, "\r\n\r\n", 4)) {
    ssize_t r = read(fd, buf + got, sizeof buf - got);
    if (r <= 0) die("upgrade");
    got += r;
  }
  if (strncmp(buf, "HTTP/1.1 101", 12)) { fprintf(stderr, "upgrade refused: %.40s\n", buf); exit(1); }
  return fd;
}

/* A masked text frame holding payload (size bytes) into out; its length. */
static size_t ws_frame(char *out, const char *payload, size_t size) {
  size_t at = 0;
  out[at++] = (char)0x81;
  if (size < 126) out[at++] = (char)(0x80 | size);
  else { out[at++] = (char)(0x80 | 126); out[at++] = (char)(size >> 8); out[at++] = (char)size; }
  const unsigned char mask[4] = {1, 2, 3, 4};
  memcpy(out + at, mask, 4);
  at += 4;
  for (size_t i = 0; i < size; i++) out[at + i] = payload[i] ^ mask[i % 4];
  return at + size;
}

/* How many whole frames buf (len bytes) holds; *used: the bytes they take. */
static int ws_frames(const unsigned char *buf, size_t len, size_t *used) {
  int count = 0;
  size_t at = 0;
  while (len - at >= 2) {
    size_t size = buf[at + 1] & 0x7f, head = 2;
    if (size == 126) { if (len - at < 4) break; size = (buf[at + 2] << 8) | buf[at + 3]; head = 4; }
    else if (size == 127) { fprintf(stderr, "frame too large\n"); exit(1); }
    if (len - at < head + size) break;
    if ((buf[at] & 0x0f) == 0x8) { fprintf(stderr, "closed by the server\n"); exit(1); }
    if ((buf[at] & 0x0f) == 0x1 || (buf[at] & 0x0f) == 0x2) count++;
    at += head + size;
  }
  *used = at;
  return count;
}

/* WebSocket: each whole data frame in the buffer is one unit (a close fails the run). */
static int ws_complete(unsigned char *buf, size_t *got) {
  size_t used;
  int frames = ws_frames(buf, *got, &used);
  memmove(buf, buf + used, *got - used);
  *got -= used;
  return frames;
}

/* echo: one message in flight per connection; fan: each sends one, then waits for n. */
static int ws_run(int fan, int n, double seconds, const char *path) {
  size_t size;
  const char *payload = read_request(path, &size);
  static char frame[70000];
  size_t frame_size = ws_frame(frame, payload, size);
  int *fds = calloc(n, sizeof(int));
  for (int i = 0; i < n; i++) fds[i] = ws_open("/");
  return exchange(n, seconds, frame, frame_size, fds, ws_complete, fan ? n : 1,
                  fan ? "deliveries_per_s" : "messages_per_s");
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: see loadgen.c\n"); return 2; }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  server.sin_family = AF_INET;
  server.sin_port = htons(atoi(argv[2]));
  inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
  const char *mode = argv[1];
  if (!strcmp(mode, "pingpong") && argc == 6) return pingpong(0, atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
  if (!strcmp(mode, "udp") && argc == 6) return pingpong(1, atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
  if (!strcmp(mode, "bulk") && argc == 4) return bulk(atof(argv[3]));
  if (!strcmp(mode, "churn") && argc == 5) return churn(atoi(argv[3]), atof(argv[4]));
  if (!strcmp(mode, "idle") && argc == 4) return idle(atoi(argv[3]));
  if (!strcmp(mode, "http") && argc == 6) return http(atoi(argv[3]), atof(argv[4]), argv[5]);
  if (!strcmp(mode, "httpidle") && argc == 5) return http_idle(atoi(argv[3]), argv[4]);
  if (!strcmp(mode, "wsecho") && argc == 6) return ws_run(0, atoi(argv[3]), atof(argv[4]), argv[5]);
  if (!strcmp(mode, "wsfan") && argc == 6) return ws_run(1, atoi(argv[3]), atof(argv[4]), argv[5]);
  fprintf(stderr, "usage: see loadgen.c\n");
  return 2;
}
