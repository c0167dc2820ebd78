import Dispatch
import Foundation
import TokendCore

/// An identity read from the vault whose secret values are still sealed.
struct SealedIdentity: Sendable {
    /// Rows read before their values are opened together: large enough
    /// to keep every core busy, small enough that the sealed copies held
    /// at once stay a few megabytes.
    static let batchSize = 2048

    let record: IdentityRecord
    /// One per `SecretKind.allCases`, in that order.
    let envelopes: [Data?]
}

extension KeyRing {
    /// Opens every value of `batch`, spread over the machine's cores; the
    /// answers are in the order of `batch`. An identity whose values do not
    /// all open gets the first failure (``open(_:identity:kind:)``'s error).
    func open(_ batch: [SealedIdentity]) -> [Result<IdentitySecrets, VaultError>] {
        let workers = min(ProcessInfo.processInfo.activeProcessorCount, max(1, batch.count / 64))
        var answers = [Result<IdentitySecrets, VaultError>](repeating: .success(IdentitySecrets()), count: batch.count)
        answers.withUnsafeMutableBufferPointer { buffer in
            // Each worker writes its own range of the buffer, and
            // concurrentPerform returns only once all have finished.
            nonisolated(unsafe) let answers = buffer
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let range = (batch.count * worker / workers)..<(batch.count * (worker + 1) / workers)
                for index in range { answers[index] = openAll(batch[index]) }
            }
        }
        return answers
    }

    private func openAll(_ sealed: SealedIdentity) -> Result<IdentitySecrets, VaultError> {
        var secrets = IdentitySecrets()
        for (kind, envelope) in zip(SecretKind.allCases, sealed.envelopes) {
            guard let envelope else { continue }
            do {
                secrets[kind] = try open(envelope, identity: sealed.record.name, kind: kind)
            } catch let error as VaultError {
                return .failure(error)
            } catch {
                return .failure(VaultError(.corrupt, "\(kind.rawValue) of identity \(sealed.record.name) failed to open"))
            }
        }
        return .success(secrets)
    }
}

/// A batch whose values are being opened on other threads
/// (``KeyRing/open(_:)``) while the vault reads the next one.
final class OpeningBatch: @unchecked Sendable {
    // @unchecked: `answers` is written by the one opening task before it
    // leaves `done`, and read only after waiting for `done`.
    let batch: [SealedIdentity]
    private var answers: [Result<IdentitySecrets, VaultError>] = []
    private let done = DispatchGroup()

    init(_ batch: [SealedIdentity], ring: KeyRing) {
        self.batch = batch
        done.enter()
        DispatchQueue.global().async { [self] in
            answers = ring.open(batch)
            done.leave()
        }
    }

    /// Waits until every value is opened; the answers in batch order.
    func finished() -> (batch: [SealedIdentity], answers: [Result<IdentitySecrets, VaultError>]) {
        done.wait()
        return (batch, answers)
    }
}
