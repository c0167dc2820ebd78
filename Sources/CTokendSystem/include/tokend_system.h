#ifndef TOKEND_SYSTEM_H
#define TOKEND_SYSTEM_H

// Linux calls that Swift's Glibc module does not expose (prctl sits behind
// <sys/prctl.h>, which the module map leaves out).

#include <malloc.h>
#include <sys/prctl.h>

/// prctl(PR_SET_DUMPABLE, value): 0 forbids core dumps and same-user ptrace.
static inline int tokend_set_dumpable(int value) {
    return prctl(PR_SET_DUMPABLE, value, 0, 0, 0);
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

#endif
