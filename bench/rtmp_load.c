/* The live benchmark's load: one RTMP publisher replaying an FLV file at real time and
 * N RTMP players, in one process (epoll), so that a frame's send time is known where
 * it is received (docs/performance.rst, "Live media"; driven by bench/live.py).
 *
 *   rtmp_load PORT FILE.flv PLAYERS SECONDS [WARMUP (at least 5 s)]
 *
 * Plays "rtmp://127.0.0.1:PORT/live/bench". Prints one JSON line: the frames the
 * publisher sent and the players received during the measured SECONDS (after WARMUP),
 * the bytes received, players closed by the server, the latency from the publisher's
 * send to a player's receipt (p50, p99, ms; a video frame is known by a hash of its
 * bytes), and for the players: the time from play to the first video frame and that
 * frame's age (how far behind live a player starts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HANDSHAKE 1536
#define MAX_CSID 64
#define RING 4096 /* the send times kept, by frame hash */
#define BINS 20000 /* latency histogram: 0.5 ms bins up to 10 s */

typedef struct { uint8_t *data; size_t len, cap; } buf;

static void put(buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->data = realloc(b->data, b->cap);
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

typedef struct {
  uint32_t length, timestamp, delta, stream;
  uint8_t type, extended;
  buf parts;
} chunk_state;

typedef struct {
  int fd, publisher, phase; /* phase: 0 handshake, 1 connected, 2 playing/publishing */
  buf in, out;
  uint32_t in_chunk, window, received, acked;
  chunk_state cs[MAX_CSID];
  double play_sent, first_video_at, first_age;
  long frames, bytes;
  int closed;
} conn;

static double clock_of(clockid_t which) {
  struct timespec t;
  clock_gettime(which, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double now(void) { return clock_of(CLOCK_MONOTONIC); }

static uint64_t fnv(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

static uint64_t ring_hash[RING];
static double ring_time[RING];
static long ring_next;
static long histogram[BINS];
static long latencies;
static int measuring;

static void be(uint8_t *p, uint32_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = v & 0xff;
}

static uint32_t rd(const uint8_t *p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

#define OUT_CHUNK 65536 /* the chunk size we announce */

/* One message: a type 0 chunk, then type 3 ones. */
static void message(conn *c, int csid, uint8_t type, uint32_t stream, uint32_t ts,
                    const void *payload, size_t n) {
  uint8_t h[12], more = 0xc0 | csid;
  h[0] = csid;
  be(h + 1, ts, 3);
  be(h + 4, n, 3);
  h[7] = type;
  memcpy(h + 8, &stream, 4); /* (little-endian) */
  put(&c->out, h, 12);
  for (size_t at = 0; at < n; at += OUT_CHUNK) {
    if (at) put(&c->out, &more, 1);
    put(&c->out, (const uint8_t *)payload + at, n - at < OUT_CHUNK ? n - at : OUT_CHUNK);
  }
}

static void amf_string(buf *b, const char *s) {
  uint8_t h[3] = {2};
  be(h + 1, strlen(s), 2);
  put(b, h, 3);
  put(b, s, strlen(s));
}

static void amf_number(buf *b, double v) {
  uint8_t h[9] = {0};
  uint64_t bits;
  memcpy(&bits, &v, 8);
  for (int i = 0; i < 8; i++) h[1 + i] = bits >> (56 - 8 * i);
  put(b, h, 9);
}

static void amf_key(buf *b, const char *k) {
  uint8_t h[2];
  be(h, strlen(k), 2);
  put(b, h, 2);
  put(b, k, strlen(k));
}

static void command(conn *c, uint32_t stream, const char *name, double tx, const char *arg,
                    int port) {
  buf b = {0};
  amf_string(&b, name);
  amf_number(&b, tx);
  if (!strcmp(name, "connect")) {
    char url[64];
    snprintf(url, sizeof url, "rtmp://127.0.0.1:%d/live", port);
    put(&b, "\x03", 1);
    amf_key(&b, "app");
    amf_string(&b, "live");
    amf_key(&b, "tcUrl");
    amf_string(&b, url);
    amf_key(&b, "flashVer");
    amf_string(&b, "LNX 9,0,124,2");
    put(&b, "\x00\x00\x09", 3);
  } else {
    put(&b, "\x05", 1);
  }
  if (arg) amf_string(&b, arg);
  if (arg && c->publisher) amf_string(&b, "live");
  message(c, 3, 20, stream, 0, b.data, b.len);
  free(b.data);
}

static int port_arg;

static void flush_out(conn *c) {
  while (c->out.len) {
    ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
    if (n <= 0) return; /* (EAGAIN: the rest later; the players' commands are small) */
    memmove(c->out.data, c->out.data + n, c->out.len - n);
    c->out.len -= n;
  }
}

/* A whole message arrived on a connection. */
static void arrived(conn *c, chunk_state *s, double t) {
  uint8_t *p = s->parts.data;
  uint32_t n = s->parts.len;
  if (s->type == 1 && n >= 4) c->in_chunk = rd(p, 4) & 0x7fffffff;
  else if (s->type == 5 && n >= 4) c->window = rd(p, 4);
  else if (s->type == 20 && n > 10 && p[0] == 2 && rd(p + 1, 2) == 7 &&
           !memcmp(p + 3, "_result", 7) && c->phase == 1) {
    /* _result of createStream (transaction 2): then play or publish on its stream */
    double tx, id;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | p[11 + i];
    memcpy(&tx, &bits, 8);
    if (tx == 2.0 && n >= 29 && p[19] == 5 && p[20] == 0) {
      bits = 0;
      for (int i = 0; i < 8; i++) bits = bits << 8 | p[21 + i];
      memcpy(&id, &bits, 8);
      c->phase = 2;
      c->play_sent = t;
      command(c, (uint32_t)id, c->publisher ? "publish" : "play", 0, "bench", port_arg);
      flush_out(c);
    }
  } else if (s->type == 9 && !c->publisher && n > 5) {
    if (p[1] != 0) { /* (not the AVC sequence header) */
      uint64_t h = fnv(p, n);
      double sent = -1;
      for (long i = ring_next - 1; i >= 0 && i >= ring_next - RING; i--) {
        if (ring_hash[i % RING] == h) { sent = ring_time[i % RING]; break; }
      }
      if (c->first_video_at == 0) {
        c->first_video_at = t;
        c->first_age = sent >= 0 ? t - sent : -1;
      }
      if (measuring) {
        c->frames++;
        if (sent >= 0) {
          long bin = (long)((t - sent) * 2000);
          histogram[bin < BINS ? bin : BINS - 1]++;
          latencies++;
        }
      }
    }
  }
}

/* Parse what a connection received. */
static void receive(conn *c, double t) {
  uint8_t *p = c->in.data;
  size_t at = 0, len = c->in.len;
  while (at < len) {
    size_t start = at;
    int fmt = p[at] >> 6, csid = p[at] & 0x3f;
    at++;
    if (csid < 2 || csid >= MAX_CSID) { fprintf(stderr, "csid %d\n", csid); exit(1); }
    chunk_state *s = &c->cs[csid];
    static const int sizes[4] = {11, 7, 3, 0};
    if (len - at < (size_t)sizes[fmt]) { at = start; break; }
    uint32_t ts = fmt < 3 ? rd(p + at, 3) : 0;
    if (fmt <= 1) { s->length = rd(p + at + 3, 3); s->type = p[at + 6]; }
    if (fmt == 0) memcpy(&s->stream, p + at + 7, 4);
    at += sizes[fmt];
    if (fmt < 3) s->extended = ts == 0xffffff;
    if (s->extended) {
      if (len - at < 4) { at = start; break; }
      ts = rd(p + at, 4);
      at += 4;
    }
    uint32_t want = s->length - s->parts.len;
    if (want > c->in_chunk) want = c->in_chunk;
    if (len - at < want) { at = start; break; }
    if (s->parts.len == 0) {
      if (fmt == 0) s->timestamp = ts;
      else if (fmt < 3) { s->delta = ts; s->timestamp += ts; }
      else s->timestamp += s->delta;
    }
    put(&s->parts, p + at, want);
    at += want;
    if (s->parts.len == s->length) {
      arrived(c, s, t);
      s->parts.len = 0;
    }
  }
  memmove(c->in.data, c->in.data + at, len - at);
  c->in.len = len - at;
}

static int open_conn(conn *c, int port, int epfd) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(0x7f000001)};
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a)) return -1;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint8_t c01[1 + HANDSHAKE] = {3};
  for (int i = 9; i < 1 + HANDSHAKE; i++) c01[i] = rand();
  if (send(c->fd, c01, sizeof c01, 0) != sizeof c01) return -1;
  c->in_chunk = 128;
  fcntl(c->fd, F_SETFL, O_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
  return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e);
}

/* After the handshake: our chunk size, connect, createStream. */
static void start_session(conn *c) {
  uint8_t size[4];
  be(size, OUT_CHUNK, 4);
  message(c, 2, 1, 0, 0, size, 4);
  command(c, 0, "connect", 1, NULL, port_arg);
  command(c, 0, "createStream", 2, NULL, port_arg);
  c->phase = 1;
  flush_out(c);
}

static int readable(conn *c, double t) {
  uint8_t tmp[65536];
  for (;;) {
    ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    c->received += n;
    if (measuring) c->bytes += n;
    if (c->phase == 0) {
      put(&c->in, tmp, n);
      if (c->in.len < 1 + 2 * HANDSHAKE) continue;
      send(c->fd, c->in.data + 1, HANDSHAKE, MSG_NOSIGNAL); /* C2: S1 echoed */
      memmove(c->in.data, c->in.data + 1 + 2 * HANDSHAKE, c->in.len - 1 - 2 * HANDSHAKE);
      c->in.len -= 1 + 2 * HANDSHAKE;
      start_session(c);
      receive(c, t);
      continue;
    }
    put(&c->in, tmp, n);
    receive(c, t);
    if (c->window && c->received - c->acked >= c->window / 2) {
      uint8_t ack[4];
      be(ack, c->received, 4);
      message(c, 2, 3, 0, 0, ack, 4);
      c->acked = c->received;
      flush_out(c);
    }
  }
}

typedef struct { uint8_t type; uint32_t ts; uint8_t *body; uint32_t len; } tag;

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "rtmp_load PORT FILE PLAYERS SECONDS [WARMUP]\n"); return 2; }
  port_arg = atoi(argv[1]);
  int players = atoi(argv[3]);
  double seconds = atof(argv[4]), warmup = argc > 5 ? atof(argv[5]) : 5;
  FILE *f = fopen(argv[2], "rb");
  if (!f) { perror(argv[2]); return 2; }
  buf file = {0};
  uint8_t block[65536];
  size_t n;
  while ((n = fread(block, 1, sizeof block, f)) > 0) put(&file, block, n);
  fclose(f);
  tag *tags = calloc(file.len / 15 + 1, sizeof(tag));
  long ntags = 0;
  for (size_t at = rd(file.data + 5, 4) + 4; at + 11 <= file.len;) {
    uint32_t len = rd(file.data + at + 1, 3);
    if (at + 11 + len > file.len) break;
    tag *g = &tags[ntags++];
    g->type = file.data[at];
    g->ts = rd(file.data + at + 4, 3) | (uint32_t)file.data[at + 7] << 24;
    g->body = file.data + at + 11;
    g->len = len;
    at += 11 + len + 4;
  }
  double span = tags[ntags - 1].ts / 1000.0 + 0.04; /* (the file loops) */

  int epfd = epoll_create1(0);
  conn *conns = calloc(players + 1, sizeof(conn));
  conn *pub = &conns[0];
  pub->publisher = 1;
  if (open_conn(pub, port_arg, epfd)) { perror("publisher"); return 1; }
  double t0 = now(), published_at = 0;
  while (pub->phase < 2 && now() - t0 < 5) {
    struct epoll_event ev[8];
    int k = epoll_wait(epfd, ev, 8, 50);
    for (int i = 0; i < k; i++) readable(ev[i].data.ptr, now());
  }
  if (pub->phase < 2) { fprintf(stderr, "the publisher could not start\n"); return 1; }
  published_at = now() + 0.3; /* (publish answered: frames from now on) */
  /* Players join spread over one GOP (2 s) from 0.5 s on, so that they come at every
   * point of it (the start with and without a GOP cache differs there). */
  int joined = 0;
  long next = 0, loops = 0, sent_frames = 0;
  double end = published_at + warmup + seconds, measure_from = published_at + warmup;
  double cpu_mark = 0;
  while (now() < end) {
    double t = now();
    while (joined < players && t >= published_at + 0.5 + 2.0 * joined / players) {
      if (open_conn(&conns[++joined], port_arg, epfd)) { perror("player"); return 1; }
    }
    if (!measuring && t >= measure_from) {
      measuring = 1;
      cpu_mark = clock_of(CLOCK_PROCESS_CPUTIME_ID);
      printf("{\"measuring\": true}\n");
      fflush(stdout);
    }
    /* The publisher: every tag whose time has come. */
    while (t >= published_at + loops * span + tags[next].ts / 1000.0) {
      tag *g = &tags[next];
      if (g->type == 8 || g->type == 9) {
        uint32_t ts = (uint32_t)((loops * span) * 1000) + g->ts;
        message(pub, g->type == 9 ? 6 : 4, g->type, 1, ts, g->body, g->len);
        if (g->type == 9 && g->len > 1 && g->body[1] != 0) {
          ring_hash[ring_next % RING] = fnv(g->body, g->len);
          ring_time[ring_next % RING] = t;
          ring_next++;
          if (measuring) sent_frames++;
        }
      }
      if (++next == ntags) { next = 0; loops++; }
    }
    while (pub->out.len) {
      ssize_t w = send(pub->fd, pub->out.data, pub->out.len, MSG_NOSIGNAL);
      if (w <= 0) break;
      memmove(pub->out.data, pub->out.data + w, pub->out.len - w);
      pub->out.len -= w;
    }
    double wait = published_at + loops * span + tags[next].ts / 1000.0 - now();
    int ms = wait > 0 ? (int)(wait * 1000) : 0;
    if (ms > 2) ms = 2;
    struct epoll_event ev[256];
    int k = epoll_wait(epfd, ev, 256, ms);
    double r = now();
    for (int i = 0; i < k; i++) {
      conn *c = ev[i].data.ptr;
      if (!c->closed && readable(c, r) < 0) {
        c->closed = 1;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
      }
    }
  }
  double load_cpu = (clock_of(CLOCK_PROCESS_CPUTIME_ID) - cpu_mark) / seconds;
  long frames = 0, bytes = 0, closed = 0, started = 0;
  double join[players + 1], age[players + 1];
  for (int i = 1; i <= players; i++) {
    conn *c = &conns[i];
    frames += c->frames;
    bytes += c->bytes;
    closed += c->closed;
    if (c->first_video_at > 0) {
      join[started] = c->first_video_at - c->play_sent;
      age[started++] = c->first_age;
    }
  }
  double p50 = -1, p99 = -1;
  long seen = 0;
  for (int b = 0; b < BINS; b++) {
    seen += histogram[b];
    if (p50 < 0 && seen * 2 >= latencies) p50 = b / 2.0;
    if (p99 < 0 && seen * 100 >= latencies * 99) p99 = b / 2.0;
  }
  double join_sum = 0, age_sum = 0;
  for (int i = 0; i < started; i++) { join_sum += join[i]; age_sum += age[i]; }
  printf("{\"players\": %d, \"seconds\": %.3f, \"sent_frames\": %ld, \"frames\": %ld, "
         "\"bytes\": %ld, \"closed\": %ld, \"started\": %ld, \"latency_p50_ms\": %.1f, "
         "\"latency_p99_ms\": %.1f, \"join_ms\": %.1f, \"first_frame_age_ms\": %.1f, "
         "\"load_cpu\": %.3f}\n",
         players, seconds, sent_frames, frames, bytes, closed, started, p50, p99,
         started ? join_sum / started * 1000 : -1, started ? age_sum / started * 1000 : -1,
         load_cpu);
  fflush(stdout);
  return 0;
}
