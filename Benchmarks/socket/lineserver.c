// lineserver: the fastest this machine can answer the same line protocol.
// A single-threaded epoll server on a Unix socket that answers every
// request line with the same reply line (a 900-byte token reply): the
// hardware baseline tokend's socket server is compared against.
//
//   lineserver <socket> <reply-bytes>
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <socket> <reply-bytes>\n", argv[0]);
        return 2;
    }
    int size = atoi(argv[2]);
    // "OK <size bytes of token> 3600 Bearer\n", like tokend's GET reply.
    char *reply = malloc(size + 32);
    memcpy(reply, "OK ", 3);
    memset(reply + 3, 'a', size);
    int length = 3 + size + sprintf(reply + 3 + size, " 3600 Bearer\n");

    unlink(argv[1]);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof(address.sun_path) - 1);
    if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(listener, 512) != 0) {
        perror("bind");
        return 1;
    }
    int epoll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
    struct epoll_event events[256];
    char buffer[65536];
    for (;;) {
        int ready = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct epoll_event add = {.events = EPOLLIN, .data.fd = client};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, client, &add);
                }
                continue;
            }
            ssize_t got = read(fd, buffer, sizeof(buffer));
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                close(fd);
                continue;
            }
            for (ssize_t j = 0; j < got; j++)  // one reply per request line
                if (buffer[j] == '\n' && write(fd, reply, length) < 0) break;
        }
    }
}
