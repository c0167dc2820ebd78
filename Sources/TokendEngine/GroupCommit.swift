/// Batches concurrent writes into one transaction each: group commit.
///
/// Why: every vault transaction is synced to disk (`synchronous=FULL`), and
/// a sync costs the same for one row as for a hundred. A caller that finds
/// no write in progress writes its item together with everything queued;
/// callers arriving meanwhile queue up, and when the write ends the first of
/// them leads the next one. Nobody waits for a timer, and no task runs
/// outside the callers' own.
actor GroupCommit<Item: Sendable, Result: Sendable> {
    private enum Turn {
        case done(Result)
        case lead
    }

    private let write: @Sendable ([Item]) async throws -> [Result]
    private let maximumBatch: Int
    private var queue: [(item: Item, continuation: CheckedContinuation<Turn, any Error>)] = []
    private var writing = false

    init(maximumBatch: Int = 256, write: @escaping @Sendable ([Item]) async throws -> [Result]) {
        self.maximumBatch = max(1, maximumBatch)
        self.write = write
    }

    /// Writes `item` (with whatever else is waiting) and returns its result
    /// once the transaction holding it has committed.
    func submit(_ item: Item) async throws -> Result {
        if writing {
            let turn = try await withCheckedThrowingContinuation { queue.append((item, $0)) }
            if case .done(let result) = turn { return result }
        }
        writing = true
        let others = Array(queue.prefix(maximumBatch - 1))
        queue.removeFirst(others.count)
        defer { handOff() }
        do {
            let results = try await write([item] + others.map(\.item))
            for (waiter, result) in zip(others, results.dropFirst()) { waiter.continuation.resume(returning: .done(result)) }
            return results[0]
        } catch {
            for waiter in others { waiter.continuation.resume(throwing: error) }
            throw error
        }
    }

    private func handOff() {
        if queue.isEmpty {
            writing = false
        } else {
            queue.removeFirst().continuation.resume(returning: .lead)
        }
    }
}
