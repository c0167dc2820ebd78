#if canImport(Glibc)
import Glibc
#endif

/// Duties of a container's PID 1 that an ordinary process does not have.
enum OrphanReaping {
    /// When the agent is PID 1 (a container's entry point), processes that
    /// lose their parent inside the container (say, children left behind by
    /// a `kubectl exec` shell) are re-parented to it, and their exit status
    /// waits for it. `tokend serve` starts no children of its own, so it
    /// asks the kernel to reap them all (`SA_NOCLDWAIT`): no zombies pile up,
    /// and no status it would need is lost. Returns whether it did so.
    @discardableResult
    static func enableIfInit() -> Bool {
        guard getpid() == 1 else { return false }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = SIG_DFL
        action.sa_flags = SA_NOCLDWAIT
        sigemptyset(&action.sa_mask)
        return sigaction(SIGCHLD, &action, nil) == 0
    }
}
