import TokendCache
import TokendCore

/// Identities of one provider waiting for a refresh slot: urgent ones
/// (a client is waiting, or crash recovery) before scheduled ones.
struct ReadyQueue {
    private var urgent: [IdentityName] = []
    private var urgentHead = 0
    private var scheduled: [IdentityName] = []
    private var scheduledHead = 0

    var count: Int { urgent.count - urgentHead + scheduled.count - scheduledHead }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ name: IdentityName, urgent isUrgent: Bool) {
        if isUrgent { urgent.append(name) } else { scheduled.append(name) }
    }

    /// Puts `name` back at the very front (it was popped but could not start).
    mutating func pushFront(_ name: IdentityName) {
        if urgentHead > 0 {
            urgentHead -= 1
            urgent[urgentHead] = name
        } else {
            urgent.insert(name, at: 0)
        }
    }

    mutating func popFirst() -> IdentityName? {
        if urgentHead < urgent.count {
            defer { urgentHead += 1; compact() }
            return urgent[urgentHead]
        }
        if scheduledHead < scheduled.count {
            defer { scheduledHead += 1; compact() }
            return scheduled[scheduledHead]
        }
        return nil
    }

    mutating func removeAll() -> [IdentityName] {
        defer { self = ReadyQueue() }
        return Array(urgent[urgentHead...]) + Array(scheduled[scheduledHead...])
    }

    /// Drops consumed slots now and then, so popping stays O(1) amortized
    /// without the array growing forever.
    private mutating func compact() {
        if urgentHead > 1024 && urgentHead * 2 > urgent.count {
            urgent.removeFirst(urgentHead)
            urgentHead = 0
        }
        if scheduledHead > 1024 && scheduledHead * 2 > scheduled.count {
            scheduled.removeFirst(scheduledHead)
            scheduledHead = 0
        }
    }
}
