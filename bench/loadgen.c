/* Echo ping-pong load generator: N connections, each sends a SIZE-byte message and
 * waits for it to come back, for SECONDS. Prints one JSON line: round trips/s,
 * p50/p99 latency (microseconds) and the generator's own CPU use.
 * Non-blocking sockets and one epoll: it must never be the bottleneck. */
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

typedef struct { int fd; size_t got; double sent_at; } conn_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: loadgen PORT CONNS SIZE SECONDS\n"); return 2; }
  int port = atoi(argv[1]), n = atoi(argv[2]), size = atoi(argv[3]);
  double seconds = atof(argv[4]);
  char *msg = malloc(size), *buf = malloc(size);
  memset(msg, 'x', size);
  conn_t *conns = calloc(n, sizeof(conn_t));
  size_t cap = 1 << 24, count = 0;
  float *lat = malloc(cap * sizeof(float));
  int ep = epoll_create1(0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  double start = now(), end = start + seconds, warm = start + seconds * 0.1;
  for (int i = 0; i < n; i++) { conns[i].sent_at = now(); if (write(conns[i].fd, msg, size) != size) return 1; }
  struct epoll_event events[1024];
  long trips = 0;
  double measured_from = 0;
  while (now() < end) {
    int k = epoll_wait(ep, events, 1024, 100);
    double t = now();
    if (measured_from == 0 && t >= warm) { measured_from = t; trips = 0; count = 0; }
    for (int j = 0; j < k; j++) {
      conn_t *c = &conns[events[j].data.u32];
      ssize_t r = read(c->fd, buf, size - c->got);
      if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; fprintf(stderr, "connection closed\n"); return 1; }
      c->got += r;
      if (c->got < (size_t)size) continue;
      c->got = 0;
      if (measured_from) { trips++; if (count < cap) lat[count++] = (float)((t - c->sent_at) * 1e6); }
      c->sent_at = t;
      if (write(c->fd, msg, size) != size) { perror("write"); return 1; }
    }
  }
  double elapsed = now() - measured_from;
  qsort(lat, count, sizeof(float), cmp);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  printf("{\"round_trips_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"generator_cpu\": %.2f}\n",
         trips / elapsed, count ? lat[count / 2] : 0.0, count ? lat[(size_t)(count * 0.99)] : 0.0,
         cpu / (now() - start));
  return 0;
}
