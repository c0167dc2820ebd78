#ifndef TOKEND_SYSTEM_H
#define TOKEND_SYSTEM_H

// Linux calls that Swift's Glibc module does not expose (prctl sits behind
// <sys/prctl.h>, which the module map leaves out; syscall() is variadic).

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/// prctl(PR_SET_DUMPABLE, value): 0 forbids core dumps and same-user ptrace.
static inline int tokend_set_dumpable(int value) {
    return prctl(PR_SET_DUMPABLE, value, 0, 0, 0);
}

/// prctl(PR_SET_NAME): the calling thread's name in /proc/<pid>/task/*/comm
/// (15 bytes at most).
static inline int tokend_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

/// prctl(PR_GET_DUMPABLE).
static inline int tokend_get_dumpable(void) {
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}

/// malloc_trim(0): hands freed heap memory back to the kernel. Loading a
/// large vault allocates (and frees) far more than the agent keeps.
static inline int tokend_release_free_memory(void) {
    return malloc_trim(0);
}

/// A pidfd for the process that connected to a Unix socket (SO_PEERPIDFD,
/// Linux 6.5 and later), or -1 with errno (ENOPROTOOPT on older kernels).
/// Unlike a pid, it can never come to name another process.
static inline int tokend_peer_pidfd(int socket) {
    int fd = -1;
    socklen_t length = sizeof(fd);
    if (getsockopt(socket, SOL_SOCKET, SO_PEERPIDFD, &fd, &length) != 0) return -1;
    return fd;
}

/// 0 while the process behind `pidfd` runs; -1 with errno ESRCH once it
/// has exited (its pid may then belong to someone else).
static inline int tokend_pidfd_alive(int pidfd) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0);
}

/// posix_spawn_file_actions_addclosefrom_np(actions, low) (glibc 2.34):
/// the child closes every descriptor from `low` up, whatever its parent
/// left open without close-on-exec. Defined in system.c, which is built
/// with _GNU_SOURCE (the Glibc module does not expose the call).
int tokend_spawn_close_from(posix_spawn_file_actions_t *actions, int low);

/// accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC): a GNU
/// extension, defined in system.c.
int tokend_accept(int listener);

/// The file descriptor an epoll event was registered with (epoll_event is
/// packed and its data a union: read it in C).
static inline int tokend_epoll_event_fd(const struct epoll_event *event) {
    return event->data.fd;
}

/// Registers (EPOLL_CTL_ADD) or changes (EPOLL_CTL_MOD) `fd` in `epoll`
/// for `events`, with the descriptor as the event's data.
static inline int tokend_epoll_watch(int epoll, int operation, int fd, unsigned int events) {
    struct epoll_event event = {0};
    event.events = events;
    event.data.fd = fd;
    return epoll_ctl(epoll, operation, fd, &event);
}

#endif
