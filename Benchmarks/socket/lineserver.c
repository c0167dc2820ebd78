// lineserver: the fastest this machine answers the same line protocol.
// A single-threaded epoll server on a Unix socket that answers every
// request line with the same reply line: the baseline tokend's socket server
// is compared against. The reply is read from a file (the benchmark script
// captures tokend's own reply to `GET bench` there), so both servers send
// the same number of bytes.
//
// It serves persistent connections (any number of lines each) and
// connect-per-request clients (one line, then the client closes or shuts
// down its write side: the reply is still sent). Partial reads and writes
// are handled: a line split across reads is answered once, and a reply the
// socket cannot take at once is kept and finished on EPOLLOUT.
//
//   lineserver <socket> <reply-file>
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
    size_t pending;  // reply bytes still to send (whole replies owed, as bytes)
    size_t offset;   // how much of the current reply is sent
    int closing;     // the client shut its write side: close once all is sent
    uint32_t interest;  // the epoll events asked for
} client_t;

static char *reply;
static size_t reply_length;

// Sends what is owed; returns -1 when the connection must be closed.
static int flush(int fd, client_t *client) {
    while (client->pending > 0) {
        size_t chunk = reply_length - client->offset;
        ssize_t sent = send(fd, reply + client->offset, chunk, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && errno == EAGAIN) return 0;
        if (sent <= 0) return -1;
        client->offset += (size_t)sent;
        client->pending -= (size_t)sent;
        if (client->offset == reply_length) client->offset = 0;
    }
    return client->closing ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <socket> <reply-file>\n", argv[0]);
        return 2;
    }
    if (strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "lineserver: socket path too long\n");
        return 2;
    }
    int file = open(argv[2], O_RDONLY | O_CLOEXEC);
    struct stat info;
    if (file < 0 || fstat(file, &info) != 0) {
        fprintf(stderr, "lineserver: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    if (info.st_size < 2 || info.st_size > 1 << 20) {
        fprintf(stderr, "lineserver: %s must hold one reply line (2 bytes to 1 MiB)\n", argv[2]);
        return 1;
    }
    reply_length = (size_t)info.st_size;
    reply = malloc(reply_length);
    if (!reply || read(file, reply, reply_length) != (ssize_t)reply_length) {
        fprintf(stderr, "lineserver: cannot read %s\n", argv[2]);
        return 1;
    }
    close(file);
    if (reply[reply_length - 1] != '\n' || memchr(reply, '\n', reply_length - 1)) {
        fprintf(stderr, "lineserver: %s must hold exactly one line ending in a newline\n", argv[2]);
        return 1;
    }

    unlink(argv[1]);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strcpy(address.sun_path, argv[1]);
    // The backlog tokend uses (SocketServer.swift), so connect-per-request
    // compares the same queue.
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(listener, 512) != 0) {
        fprintf(stderr, "lineserver: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);

    size_t capacity = 1024;
    client_t *clients = calloc(capacity, sizeof(client_t));
    struct epoll_event events[256];
    char buffer[65536];
    for (;;) {
        int ready = epoll_wait(epoll, events, 256, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            perror("lineserver: epoll_wait");
            return 1;
        }
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int accepted;
                while ((accepted = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if ((size_t)accepted >= capacity) {
                        size_t grown = capacity;
                        while ((size_t)accepted >= grown) grown *= 2;
                        clients = realloc(clients, grown * sizeof(client_t));
                        memset(clients + capacity, 0, (grown - capacity) * sizeof(client_t));
                        capacity = grown;
                    }
                    clients[accepted] = (client_t){.interest = EPOLLIN};
                    struct epoll_event add = {.events = EPOLLIN, .data.fd = accepted};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, accepted, &add);
                }
                continue;
            }
            client_t *client = &clients[fd];
            int close_it = 0;
            if (!client->closing && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
                if (got > 0) {
                    for (ssize_t j = 0; j < got; j++)  // one reply per request line
                        if (buffer[j] == '\n') client->pending += reply_length;
                } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                    client->closing = 1;  // still owes what was asked before
                }
            }
            close_it = flush(fd, client) < 0;
            if (!close_it) {
                // Level-triggered: wait for room only while a reply is owed,
                // and stop watching input once the client is done sending.
                uint32_t wanted = (client->closing ? 0 : EPOLLIN) | (client->pending ? EPOLLOUT : 0);
                if (wanted != client->interest) {
                    struct epoll_event change = {.events = wanted, .data.fd = fd};
                    epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &change);
                    client->interest = wanted;
                }
            }
            if (close_it) close(fd);
        }
    }
}
