import Foundation
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT that arrive before the service group traps them.
///
/// Why: the socket is bound (and answers) a moment before the group runs
/// and installs its signal handling; a SIGTERM in that moment took the
/// default action and killed the agent mid-start (exit by signal), where a
/// graceful stop was asked for. Until the group's handlers replace it, a
/// handler here only notes the request; the group's first service then
/// turns it into a graceful shutdown.
enum EarlyStop {
    static let requested = Atomic<Bool>(false)

    /// Installs the noting handler; call first thing in the agent.
    static func trap() {
        for signo in [SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in EarlyStop.requested.store(true, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            sigaction(signo, &action, nil)
        }
    }
}

/// The group's first service: runs after the group trapped its signals, and
/// asks it to stop gracefully if a signal came before that.
final class EarlyStopService: Service {
    private let group = Mutex<ServiceGroup?>(nil)

    func attach(_ group: ServiceGroup) { self.group.withLock { $0 = group } }

    func run() async throws {
        if EarlyStop.requested.load(ordering: .relaxed), let group = group.withLock({ $0 }) {
            await group.triggerGracefulShutdown()
        }
        // Returning would end the group: wait for its end instead.
        try? await gracefulShutdown()
    }
}
