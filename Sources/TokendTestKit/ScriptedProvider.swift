import Foundation
import Synchronization
import TokendCore

/// An in-process provider for engine tests: answers from a script (or mints
/// tokens), counts calls, and can hold calls open to keep a refresh in flight.
package final class ScriptedProvider: TokenProvider, Sendable {
    package enum Step: Sendable {
        case succeed(lifetime: TimeInterval, rotate: Bool = true, sessionID: String? = nil)
        case fail(ProviderError)
        /// Exactly this token set, however broken (for the provider gate).
        case grant(accessToken: String, lifetime: TimeInterval, tokenType: String = "Bearer", refreshToken: String? = nil)
    }

    private struct State {
        var script: [Step] = []
        var requests: [GrantRequest] = []
        var counter = 0
        var delay: Duration = .zero
        var defaultLifetime: TimeInterval = 300
        var running = 0
        var maximumRunning = 0
        /// While set, calls wait here until ``release()``.
        var held = false
        var holders: [CheckedContinuation<Void, Never>] = []
    }

    package let name: String
    package let supportsSessionAuthentication: Bool
    private let state = Mutex(State())
    /// The time source for `receivedAt` (the engine's wall clock in tests).
    private let now: @Sendable () -> Date

    package init(name: String = "scripted", supportsSessions: Bool = false, now: @escaping @Sendable () -> Date = { Date() }) {
        self.name = name
        self.supportsSessionAuthentication = supportsSessions
        self.now = now
    }

    /// Steps answered in order; once they run out, calls succeed with the
    /// default lifetime and a rotated refresh token.
    package func enqueue(_ steps: Step...) {
        state.withLock { $0.script.append(contentsOf: steps) }
    }

    package func setDelay(_ delay: Duration) { state.withLock { $0.delay = delay } }

    /// Makes the next calls wait (after being counted) until ``release()``:
    /// a refresh stays in flight exactly as long as a test needs it to.
    package func hold() { state.withLock { $0.held = true } }

    package func release() {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.held = false
            defer { state.holders = [] }
            return state.holders
        }
        for waiter in waiting { waiter.resume() }
    }
    package func setDefaultLifetime(_ seconds: TimeInterval) { state.withLock { $0.defaultLifetime = seconds } }

    package var callCount: Int { state.withLock { $0.requests.count } }
    /// The most calls that were ever in progress at once.
    package var maximumConcurrentCalls: Int { state.withLock { $0.maximumRunning } }
    package var requests: [GrantRequest] { state.withLock { $0.requests } }

    package func obtain(_ request: GrantRequest) async throws -> TokenGrant {
        let (step, delay, number, lifetime) = state.withLock { state in
            state.requests.append(request)
            state.counter += 1
            state.running += 1
            state.maximumRunning = max(state.maximumRunning, state.running)
            let step = state.script.isEmpty ? nil : state.script.removeFirst()
            return (step, state.delay, state.counter, state.defaultLifetime)
        }
        defer { state.withLock { $0.running -= 1 } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { state -> Bool in
                guard state.held else { return false }
                state.holders.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
        if delay > .zero { try await Task.sleep(for: delay) }
        switch step ?? .succeed(lifetime: lifetime) {
        case .fail(let error):
            throw error
        case .grant(let accessToken, let lifetime, let tokenType, let refreshToken):
            return TokenGrant(
                accessToken: Secret(accessToken), tokenType: tokenType, receivedAt: now(), lifetime: lifetime,
                refreshToken: refreshToken.map(Secret.init))
        case .succeed(let lifetime, let rotate, let sessionID):
            return TokenGrant(
                accessToken: Secret("at-\(name)-\(number)"), receivedAt: now(), lifetime: lifetime,
                refreshToken: rotate ? Secret("rt-\(name)-\(number)") : nil, sessionID: sessionID.map(Secret.init))
        }
    }

    package func endSession(_ sessionID: Secret) async throws {}
}
