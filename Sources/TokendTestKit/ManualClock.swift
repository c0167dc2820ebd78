import Foundation
import Synchronization

/// A clock that moves only when a test says so, with a matching wall clock.
///
/// Sleepers wake when ``advance(by:)`` moves time past their deadline, so a
/// scheduler test can step through hours of refreshes in milliseconds.
package final class ManualClock: Clock, Sendable {
    package struct Instant: InstantProtocol, Hashable {
        package var offset: Duration

        package func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        package func duration(to other: Instant) -> Duration { other.offset - offset }
        package static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [UInt64: Sleeper] = [:]
        var nextID: UInt64 = 0
        /// The wall clock may be moved on its own, to simulate jumps.
        var wallOffset: TimeInterval = 0
    }

    private let state = Mutex(State())
    /// Wall-clock time at `Instant(offset: .zero)`.
    package let wallStart: Date

    package init(wallStart: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        self.wallStart = wallStart
    }

    package var now: Instant { state.withLock { $0.now } }
    package var minimumResolution: Duration { .zero }

    /// Wall-clock time that advances with the clock.
    package var wallClock: @Sendable () -> Date {
        { [self] in
            let (now, jump) = self.state.withLock { ($0.now, $0.wallOffset) }
            return self.wallStart.addingTimeInterval(
                Double(now.offset.components.seconds) + Double(now.offset.components.attoseconds) / 1e18 + jump)
        }
    }

    package func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { state -> Bool in
                    if deadline <= state.now || Task.isCancelled { return true }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return false
                }
                if resumeNow {
                    if Task.isCancelled { continuation.resume(throwing: CancellationError()) } else { continuation.resume() }
                }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline passed.
    package func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for key in due.keys { state.sleepers[key] = nil }
            return Array(due.values)
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Whether advancing by `duration` would wake a sleeper.
    package func wakesSleeper(advancingBy duration: Duration) -> Bool {
        state.withLock { state in
            let then = state.now.advanced(by: duration)
            return state.sleepers.values.contains { $0.deadline <= then }
        }
    }

    /// Moves only the wall clock (an NTP step, a suspend, `date -s`).
    package func jumpWallClock(by seconds: TimeInterval) {
        state.withLock { $0.wallOffset += seconds }
    }
}

/// Waits (in real time, up to `timeout`) until `condition` holds: for
/// effects that happen on other tasks after a test's action.
package func eventually(
    timeout: Duration = .seconds(30), _ condition: @Sendable () async -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return await condition()
}
