// _GNU_SOURCE before any header: posix_spawn_file_actions_addclosefrom_np
// is a GNU extension.
#define _GNU_SOURCE 1
#include <spawn.h>
#include <sys/socket.h>

#include "tokend_system.h"

int tokend_spawn_close_from(posix_spawn_file_actions_t *actions, int low) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}

int tokend_accept(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
