import Synchronization
import TokendCore

extension PostgresVault {
    /// Runs one store operation, failing with `.storage` if the database
    /// does not answer within `settings.operationTimeout`. The operation
    /// runs in a task of its own, cancelled on timeout; the caller does not
    /// wait for it to wind down (a pool request for an unreachable database
    /// may not notice cancellation until a connection attempt ends).
    func storage<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let settings = self.settings
        let race = Race<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation)
                let timer = Task {
                    try await Task.sleep(for: settings.operationTimeout)
                    race.finish(
                        .failure(VaultError(
                            .storage, "\(settings.displayName) did not answer within \(settings.operationTimeout)")))
                }
                race.setWork(Task {
                    do {
                        race.finish(.success(try await body()))
                    } catch {
                        race.finish(.failure(Self.vaultError(error, settings: settings)))
                    }
                    timer.cancel()
                })
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }
}

/// The first of an operation's result, its timeout and its caller's
/// cancellation resumes the caller; the others are ignored, and the
/// operation is cancelled if it was not the first.
private final class Race<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var finished = false
    }
    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        let finishedEarly = state.withLock { state -> Bool in
            state.continuation = continuation
            return state.finished
        }
        if finishedEarly {
            state.withLock { $0.continuation = nil }
            continuation.resume(throwing: CancellationError())
        }
    }

    func setWork(_ work: Task<Void, Never>) {
        let cancel = state.withLock { state -> Bool in
            state.work = work
            return state.finished
        }
        if cancel { work.cancel() }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, work) = state.withLock { state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            defer { state.continuation = nil }
            return (state.continuation, state.work)
        }
        guard let continuation else { return }
        if case .failure = result { work?.cancel() }
        continuation.resume(with: result)
    }
}
