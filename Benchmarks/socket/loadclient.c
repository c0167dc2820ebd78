// loadclient: a closed-loop load client for a line protocol on a Unix socket,
// built so that the client is not the limit: one epoll loop per thread drives
// all of that thread's connections (no thread per connection, no blocking
// call in the measured path).
//
// Modes:
//   persistent  N connections stay open; each sends one request line, waits
//               for the whole reply line, and sends the next.
//   connect     N request cycles in flight; each cycle connects (non-blocking),
//               sends one line, reads the reply line and closes: what socat,
//               shell scripts and `tokend get` do.
//   once        one connect-per-request cycle; the reply line goes to stdout
//               (the benchmark scripts capture the exact reply with it).
//
// Every reply is checked: it must start with "OK ", end with '\n', and (with
// --reply-bytes) be exactly that long, and nothing may arrive unasked. An
// "ERR" reply, a closed connection, a malformed or oversized reply, or a
// socket error stops the run with a message and exit status 1.
//
// Latency is per request, from the first byte written (connect mode: from
// connect()) to the reply's '\n', recorded in a log-linear histogram (under
// 0.8% relative error) over every request of the measured window, so p50,
// p99 and p999 are exact up to the bucket width, not sample estimates.
//
// Output, one line: label=... mode=... connections=N threads=T seconds=S
//   requests=R rps=X p50_us=... p90_us=... p99_us=... p999_us=... max_us=...
//   connect_retries=C client_cpu_s=U
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum mode { PERSISTENT, CONNECT, ONCE };
enum state { CONNECTING, RETRY_CONNECT, WRITING, READING };

// Histogram: values under 256 ns exactly, then 128 buckets per power of two.
#define EXACT 256
#define SUB 128
#define BUCKETS (EXACT + 56 * SUB)

typedef struct {
    int fd;
    enum state state;
    size_t written;   // bytes of the request sent
    size_t received;  // bytes of the reply buffered
    uint64_t started; // ns, when this request (or connect) began
    char *buffer;
} connection_t;

typedef struct {
    int count;  // this thread's share of the connections
    uint64_t *histogram;
    uint64_t requests, retries;
    uint64_t max_ns;
} worker_t;

static enum mode mode = PERSISTENT;
static struct sockaddr_un address;
static char request[4097];
static size_t request_length;
static long reply_bytes = -1;  // expected reply length, -1: any
static size_t buffer_size = 65536;
static uint64_t measure_from, measure_until;  // ns, monotonic
static atomic_int failed;
static pthread_barrier_t barrier;
static const char *label = "";

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bucket_of(uint64_t value) {
    if (value < EXACT) return (int)value;
    int msb = 63 - __builtin_clzll(value);  // >= 8
    int shift = msb - 7;                     // keeps the top 8 bits: 128..255
    int index = EXACT + (shift - 1) * SUB + (int)((value >> shift) - SUB);
    return index < BUCKETS ? index : BUCKETS - 1;
}

// The largest value a bucket holds (percentiles are reported as that bound).
static uint64_t bucket_top(int index) {
    if (index < EXACT) return (uint64_t)index;
    int shift = (index - EXACT) / SUB + 1;
    uint64_t low = (uint64_t)((index - EXACT) % SUB + SUB) << shift;
    return low + ((uint64_t)1 << shift) - 1;
}

// Stops every thread; the first message wins, the others are dropped.
static void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *format, ...) {
    if (atomic_exchange(&failed, 1)) return;
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "loadclient: %s%s", label, *label ? ": " : "");
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
}

// A reply for a message: printable ASCII, at most 200 bytes (an ERR line
// holds no secret, but a malformed reply might, so only its start is shown
// and only when it is an ERR).
static void describe(const char *bytes, size_t length, char *out, size_t out_size) {
    size_t shown = length < out_size - 1 ? length : out_size - 1;
    if (shown > 200) shown = 200;
    for (size_t i = 0; i < shown; i++) out[i] = (bytes[i] >= 32 && bytes[i] < 127) ? bytes[i] : '?';
    out[shown] = 0;
}

// Checks one complete reply (buffer[0..length) ends with '\n').
static int check_reply(const char *buffer, size_t length) {
    if (length >= 4 && memcmp(buffer, "ERR ", 4) == 0) {
        char text[256];
        describe(buffer, length - 1, text, sizeof(text));
        fail("server error reply: %s", text);
        return -1;
    }
    if (length < 4 || memcmp(buffer, "OK ", 3) != 0) {
        fail("malformed reply (%zu bytes, does not start with \"OK \")", length);
        return -1;
    }
    if (reply_bytes >= 0 && (long)length != reply_bytes) {
        fail("malformed reply: %zu bytes, expected %ld", length, reply_bytes);
        return -1;
    }
    return 0;
}

static int start_connect(int epoll, connection_t *c, int slot, worker_t *worker) {
    if (c->state != RETRY_CONNECT) c->started = now_ns();
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail("socket: %s", strerror(errno));
        return -1;
    }
    c->written = c->received = 0;
    if (connect(c->fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        if (errno == EAGAIN) {
            // A Unix listener's backlog is full: the kernel does not signal
            // when it drains, so retry from the loop (a blocking client
            // would sleep in connect() for this time; it counts in latency).
            close(c->fd);
            c->fd = -1;
            c->state = RETRY_CONNECT;
            worker->retries++;
            return 0;
        }
        if (errno != EINPROGRESS) {
            fail("connect %s: %s", address.sun_path, strerror(errno));
            return -1;
        }
        c->state = CONNECTING;
        struct epoll_event event = {.events = EPOLLOUT, .data.u32 = (uint32_t)slot};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &event) != 0) {
            fail("epoll_ctl: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    c->state = WRITING;
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &event) != 0) {
        fail("epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

// Writes what is left of the request; asks for EPOLLOUT only when the
// socket is full (rare: a request is one short line).
static int send_request(int epoll, connection_t *c, int slot) {
    while (c->written < request_length) {
        ssize_t sent = send(c->fd, request + c->written, request_length - c->written, MSG_NOSIGNAL);
        if (sent > 0) {
            c->written += (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && errno == EAGAIN) {
            struct epoll_event event = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)slot};
            if (epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &event) != 0) {
                fail("epoll_ctl: %s", strerror(errno));
                return -1;
            }
            c->state = WRITING;
            return 0;
        }
        fail("send: %s", sent < 0 ? strerror(errno) : "wrote nothing");
        return -1;
    }
    if (c->state == WRITING && c->written == request_length) {
        c->state = READING;
    }
    return 0;
}

// Every request that ends inside the window counts, for the rate and for
// the latencies alike.
static void record(worker_t *worker, uint64_t started, uint64_t finished) {
    if (finished < measure_from || finished >= measure_until) return;
    uint64_t elapsed = finished - started;
    worker->histogram[bucket_of(elapsed)]++;
    worker->requests++;
    if (elapsed > worker->max_ns) worker->max_ns = elapsed;
}

// One request cycle finished on slot: record it and start the next.
static int next_cycle(int epoll, connection_t *c, int slot, worker_t *worker, uint64_t finished) {
    record(worker, c->started, finished);
    if (finished >= measure_until) return 1;  // this connection is done
    if (mode == CONNECT) {
        close(c->fd);  // also leaves the epoll set
        c->fd = -1;
        c->state = CONNECTING;
        if (start_connect(epoll, c, slot, worker) != 0) return -1;
        if (c->state == WRITING) return send_request(epoll, c, slot);
        return 0;
    }
    c->started = finished;
    c->written = c->received = 0;
    c->state = WRITING;
    return send_request(epoll, c, slot);
}

// Reads what is there; returns 1 when the reply line is complete.
static int receive(connection_t *c, uint64_t *finished) {
    for (;;) {
        ssize_t got = recv(c->fd, c->buffer + c->received, buffer_size - c->received, 0);
        if (got > 0) {
            size_t before = c->received;
            c->received += (size_t)got;
            char *newline = memchr(c->buffer + before, '\n', (size_t)got);
            if (newline) {
                *finished = now_ns();
                size_t length = (size_t)(newline - c->buffer) + 1;
                if (check_reply(c->buffer, length) != 0) return -1;
                if (length != c->received) {
                    fail("%zu unexpected bytes after a reply line", c->received - length);
                    return -1;
                }
                return 1;
            }
            if (c->received == buffer_size) {
                fail("reply line longer than %zu bytes", buffer_size);
                return -1;
            }
            continue;  // a reply split across reads: read on until EAGAIN
        }
        if (got == 0) {
            fail("server closed the connection %s", c->received ? "in the middle of a reply" : "before replying");
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 0;
        fail("recv: %s", strerror(errno));
        return -1;
    }
}

static void *run(void *argument) {
    worker_t *worker = argument;
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    connection_t *connections = calloc((size_t)worker->count, sizeof(connection_t));
    struct epoll_event *events = calloc((size_t)worker->count + 1, sizeof(struct epoll_event));
    if (epoll < 0 || !connections || !events) {
        fail("out of memory or epoll_create1: %s", strerror(errno));
        pthread_barrier_wait(&barrier);
        pthread_barrier_wait(&barrier);
        return NULL;
    }
    for (int i = 0; i < worker->count; i++) {
        connections[i].fd = -1;
        connections[i].buffer = malloc(buffer_size);
        if (!connections[i].buffer) fail("out of memory");
    }
    int active = worker->count;
    char *done = calloc((size_t)worker->count, 1);
    // Persistent: every connection is open before the clock starts.
    if (mode == PERSISTENT && !atomic_load(&failed)) {
        for (int i = 0; i < worker->count && !atomic_load(&failed); i++) {
            connection_t *c = &connections[i];
            c->state = RETRY_CONNECT;
            while (c->state == RETRY_CONNECT && !atomic_load(&failed)) {
                if (start_connect(epoll, c, i, worker) != 0) break;
                if (c->state == RETRY_CONNECT) usleep(100);
            }
            if (c->state == CONNECTING) {  // not on Linux for AF_UNIX, but allowed by POSIX
                struct epoll_event event;
                if (epoll_wait(epoll, &event, 1, 5000) != 1) fail("connect %s: timed out", address.sun_path);
                int error = 0;
                socklen_t size = sizeof(error);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
                if (error) fail("connect %s: %s", address.sun_path, strerror(error));
                struct epoll_event in = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &in);
                c->state = WRITING;
            }
        }
        worker->retries = 0;  // set-up retries are not part of the run
    }
    pthread_barrier_wait(&barrier);  // set-up done
    pthread_barrier_wait(&barrier);  // the window is set
    for (int i = 0; i < worker->count && !atomic_load(&failed); i++) {
        connection_t *c = &connections[i];
        if (mode == PERSISTENT) {
            c->started = now_ns();
            c->state = WRITING;
            if (send_request(epoll, c, i) != 0) break;
        } else {
            c->state = CONNECTING;
            if (start_connect(epoll, c, i, worker) != 0) break;
            if (c->state == WRITING && send_request(epoll, c, i) != 0) break;
        }
    }

    while (active > 0 && !atomic_load(&failed)) {
        uint64_t now = now_ns();
        if (now >= measure_until + 2000000000u) {
            fail("%d replies still missing 2 s after the end of the run", active);
            break;
        }
        int retrying = 0;
        for (int i = 0; i < worker->count; i++) {
            connection_t *c = &connections[i];
            if (done[i] || c->state != RETRY_CONNECT) continue;
            if (now >= measure_until) {  // no new cycle after the end
                done[i] = 1;
                active--;
                continue;
            }
            if (start_connect(epoll, c, i, worker) != 0) goto out;
            if (c->state == WRITING && send_request(epoll, c, i) != 0) goto out;
            if (c->state == RETRY_CONNECT) retrying = 1;
        }
        // Retries wait 1 ms rather than spin: the client must not take the
        // server's core (with a 512 backlog and at most a few hundred
        // cycles in flight, connect_retries stays 0 anyway).
        int ready = epoll_wait(epoll, events, worker->count + 1, retrying ? 1 : 100);
        if (ready < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int e = 0; e < ready; e++) {
            int slot = (int)events[e].data.u32;
            connection_t *c = &connections[slot];
            if (done[slot] || c->fd < 0) continue;
            if (c->state == CONNECTING) {
                int error = 0;
                socklen_t size = sizeof(error);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
                if (error) {
                    fail("connect %s: %s", address.sun_path, strerror(error));
                    goto out;
                }
                struct epoll_event in = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &in);
                c->state = WRITING;
                if (send_request(epoll, c, slot) != 0) goto out;
                continue;
            }
            if (c->state == WRITING && (events[e].events & EPOLLOUT)) {
                if (send_request(epoll, c, slot) != 0) goto out;
                if (c->state == READING) {
                    struct epoll_event in = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                    epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &in);
                }
            }
            if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (c->state == WRITING && c->written < request_length && !(events[e].events & EPOLLIN)) {
                    fail("connection closed while sending a request");
                    goto out;
                }
                uint64_t finished = 0;
                int complete = receive(c, &finished);
                if (complete < 0) goto out;
                if (complete == 0) continue;
                if (c->written < request_length) {
                    fail("a reply arrived before the request was sent");
                    goto out;
                }
                int next = next_cycle(epoll, c, slot, worker, finished);
                if (next < 0) goto out;
                if (next == 1) {
                    done[slot] = 1;
                    active--;
                }
            }
        }
    }
out:
    for (int i = 0; i < worker->count; i++) {
        if (connections[i].fd >= 0) close(connections[i].fd);
        free(connections[i].buffer);
    }
    free(connections);
    free(events);
    free(done);
    close(epoll);
    return NULL;
}

// One cycle, the reply to stdout: for capturing the exact reply bytes.
static int run_once(void) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        fail("connect %s: %s", address.sun_path, strerror(errno));
        return 1;
    }
    for (size_t written = 0; written < request_length;) {
        ssize_t sent = send(fd, request + written, request_length - written, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) {
            fail("send: %s", strerror(errno));
            return 1;
        }
        written += (size_t)sent;
    }
    char *buffer = malloc(buffer_size);
    size_t received = 0;
    for (;;) {
        ssize_t got = recv(fd, buffer + received, buffer_size - received, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            fail("recv: %s", strerror(errno));
            return 1;
        }
        if (got == 0) {
            fail("server closed the connection %s", received ? "in the middle of a reply" : "before replying");
            return 1;
        }
        char *newline = memchr(buffer + received, '\n', (size_t)got);
        received += (size_t)got;
        if (newline) {
            size_t length = (size_t)(newline - buffer) + 1;
            if (check_reply(buffer, length) != 0) return 1;
            fwrite(buffer, 1, length, stdout);
            return fflush(stdout) == 0 ? 0 : 1;
        }
        if (received == buffer_size) {
            fail("reply line longer than %zu bytes", buffer_size);
            return 1;
        }
    }
}

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s --socket PATH --request LINE [--mode persistent|connect|once]\n"
            "          [--connections N] [--threads T] [--seconds S] [--warmup W]\n"
            "          [--reply-bytes B] [--label TEXT]\n",
            program);
}

static long parse_number(const char *name, const char *text, long low, long high) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < low || value > high) {
        fprintf(stderr, "loadclient: --%s must be a whole number from %ld to %ld\n", name, low, high);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv) {
    const char *path = NULL, *line = NULL;
    long connections = 1, threads = 1;
    double seconds = 5, warmup = 1;
    static struct option options[] = {
        {"socket", required_argument, 0, 's'},      {"request", required_argument, 0, 'r'},
        {"mode", required_argument, 0, 'm'},        {"connections", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'},     {"seconds", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},      {"reply-bytes", required_argument, 0, 'b'},
        {"label", required_argument, 0, 'l'},       {0, 0, 0, 0},
    };
    for (int option; (option = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (option) {
        case 's': path = optarg; break;
        case 'r': line = optarg; break;
        case 'm':
            if (strcmp(optarg, "persistent") == 0) mode = PERSISTENT;
            else if (strcmp(optarg, "connect") == 0) mode = CONNECT;
            else if (strcmp(optarg, "once") == 0) mode = ONCE;
            else { fprintf(stderr, "loadclient: --mode must be persistent, connect or once\n"); return 2; }
            break;
        case 'c': connections = parse_number("connections", optarg, 1, 100000); break;
        case 't': threads = parse_number("threads", optarg, 1, 64); break;
        case 'd': seconds = (double)parse_number("seconds", optarg, 1, 3600); break;
        case 'w': warmup = (double)parse_number("warmup", optarg, 0, 3600); break;
        case 'b': reply_bytes = parse_number("reply-bytes", optarg, 4, 1 << 20); break;
        case 'l': label = optarg; break;
        default: usage(argv[0]); return 2;
        }
    }
    if (!path || !line || optind != argc) {
        usage(argv[0]);
        return 2;
    }
    if (strlen(path) >= sizeof(address.sun_path)) {
        fprintf(stderr, "loadclient: socket path longer than %zu bytes\n", sizeof(address.sun_path) - 1);
        return 2;
    }
    if (strlen(line) == 0 || strlen(line) > 4095 || strchr(line, '\n')) {
        fprintf(stderr, "loadclient: --request must be one non-empty line of at most 4095 bytes\n");
        return 2;
    }
    if (threads > connections) threads = connections;
    if (reply_bytes > 0 && (size_t)reply_bytes + 1 > buffer_size) buffer_size = (size_t)reply_bytes + 1;
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, path);
    request_length = (size_t)snprintf(request, sizeof(request), "%s\n", line);
    if (mode == ONCE) return run_once();

    worker_t *workers = calloc((size_t)threads, sizeof(worker_t));
    pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
    pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
    // The window is set before the threads start; persistent set-up happens
    // before the barrier, so the start is pushed back after it (below).
    measure_from = UINT64_MAX;
    measure_until = UINT64_MAX;
    for (long t = 0; t < threads; t++) {
        long share = connections / threads + (t < connections % threads ? 1 : 0);
        workers[t] = (worker_t){.count = (int)share};
        workers[t].histogram = calloc(BUCKETS, sizeof(uint64_t));
        if (pthread_create(&ids[t], NULL, run, &workers[t]) != 0) {
            fprintf(stderr, "loadclient: pthread_create failed\n");
            return 1;
        }
    }
    struct rusage before, after;
    pthread_barrier_wait(&barrier);  // persistent connections are all open
    // The window starts after the set-up; the second barrier publishes it.
    measure_from = now_ns() + (uint64_t)(warmup * 1e9);
    measure_until = measure_from + (uint64_t)(seconds * 1e9);
    getrusage(RUSAGE_SELF, &before);
    pthread_barrier_wait(&barrier);
    for (long t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    getrusage(RUSAGE_SELF, &after);
    if (atomic_load(&failed)) return 1;

    uint64_t *histogram = calloc(BUCKETS, sizeof(uint64_t));
    uint64_t requests = 0, retries = 0, max_ns = 0;
    for (long t = 0; t < threads; t++) {
        for (int b = 0; b < BUCKETS; b++) histogram[b] += workers[t].histogram[b];
        requests += workers[t].requests;
        retries += workers[t].retries;
        if (workers[t].max_ns > max_ns) max_ns = workers[t].max_ns;
    }
    if (requests == 0) {
        fprintf(stderr, "loadclient: %s%sno request completed in the measured window\n", label, *label ? ": " : "");
        return 1;
    }
    double percentiles[] = {0.50, 0.90, 0.99, 0.999};
    double values[4];
    for (int p = 0; p < 4; p++) {
        uint64_t rank = (uint64_t)(percentiles[p] * (double)requests);
        if (rank >= requests) rank = requests - 1;
        uint64_t seen = 0;
        int b = 0;
        for (; b < BUCKETS; b++) {
            seen += histogram[b];
            if (seen > rank) break;
        }
        values[p] = (double)bucket_top(b) / 1000.0;
    }
    double cpu = (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec - before.ru_stime.tv_sec) +
                 (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6;
    printf("label=%s mode=%s connections=%ld threads=%ld seconds=%.0f requests=%llu rps=%.0f p50_us=%.1f p90_us=%.1f "
           "p99_us=%.1f p999_us=%.1f max_us=%.1f connect_retries=%llu client_cpu_s=%.2f\n",
           *label ? label : "-", mode == PERSISTENT ? "persistent" : "connect", connections, threads, seconds,
           (unsigned long long)requests, (double)requests / seconds, values[0], values[1], values[2], values[3],
           (double)max_ns / 1000.0, (unsigned long long)retries, cpu);
    return 0;
}
