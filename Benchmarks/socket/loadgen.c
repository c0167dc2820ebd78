// loadgen: a closed-loop load client for line protocols on a Unix socket.
// Each of N connections (one thread each) sends one request line, waits for
// one reply line, and repeats for the given duration. Prints requests per
// second and latency percentiles in microseconds.
//
//   loadgen <socket> <connections> <seconds> <request line>
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *socket_path;
static char request[4096];
static size_t request_length;
static double duration;

typedef struct {
    unsigned *latencies;  // microseconds
    size_t count, capacity;
    int failed;
} worker_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *argument) {
    worker_t *worker = argument;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, socket_path, sizeof(address.sun_path) - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        worker->failed = 1;
        return NULL;
    }
    char buffer[65536];
    double end = now() + duration;
    while (now() < end) {
        double start = now();
        if (write(fd, request, request_length) != (ssize_t)request_length) { worker->failed = 1; break; }
        size_t used = 0;
        for (;;) {  // one reply line
            ssize_t got = read(fd, buffer + used, sizeof(buffer) - used);
            if (got <= 0) { worker->failed = 1; break; }
            used += got;
            if (memchr(buffer, '\n', used)) break;
        }
        if (worker->failed) break;
        if (worker->count == worker->capacity) {
            worker->capacity = worker->capacity ? worker->capacity * 2 : 65536;
            worker->latencies = realloc(worker->latencies, worker->capacity * sizeof(unsigned));
        }
        worker->latencies[worker->count++] = (unsigned)((now() - start) * 1e6);
    }
    close(fd);
    return NULL;
}

static int compare(const void *a, const void *b) {
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s <socket> <connections> <seconds> <request line>\n", argv[0]);
        return 2;
    }
    socket_path = argv[1];
    int connections = atoi(argv[2]);
    duration = atof(argv[3]);
    request_length = (size_t)snprintf(request, sizeof(request), "%s\n", argv[4]);
    pthread_t threads[connections];
    worker_t *workers = calloc(connections, sizeof(worker_t));
    double start = now();
    for (int i = 0; i < connections; i++) pthread_create(&threads[i], NULL, run, &workers[i]);
    for (int i = 0; i < connections; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - start;
    size_t total = 0;
    int failed = 0;
    for (int i = 0; i < connections; i++) { total += workers[i].count; failed |= workers[i].failed && workers[i].count == 0; }
    unsigned *all = malloc((total ? total : 1) * sizeof(unsigned));
    size_t at = 0;
    for (int i = 0; i < connections; i++) {
        memcpy(all + at, workers[i].latencies, workers[i].count * sizeof(unsigned));
        at += workers[i].count;
    }
    qsort(all, total, sizeof(unsigned), compare);
    if (total == 0 || failed) { fprintf(stderr, "loadgen: no replies (is the server up?)\n"); return 1; }
    printf("rps=%.0f p50_us=%u p99_us=%u p999_us=%u requests=%zu\n", total / elapsed, all[total / 2],
           all[(size_t)(total * 0.99)], all[(size_t)(total * 0.999)], total);
    return 0;
}
