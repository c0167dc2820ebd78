import Foundation
import TokendCache
import TokendCore
import TokendProtocol

/// `GET` replies of recently read identities, prepared once per snapshot
/// rather than once per request: the reply's bytes up to `expires_in`
/// (`OK <token> `), its token already checked to be one printable word,
/// and its allow rules already parsed. What depends on the time (whether
/// the token is still valid, `expires_in`, `stale=1`) is still worked out
/// for every request, from the snapshot's ``TokenSnapshot/Serving`` kept
/// with them.
///
/// Owned by one thread (the socket's front loop), so it takes no lock.
/// It is current while the cache's ``TokenCache/version`` has not moved;
/// any change to the cache empties it (a few dozen times a second at most,
/// at 100,000 identities refreshed hourly), and it holds at most
/// ``capacity`` identities.
///
/// These bytes hold a token, as the snapshot does and as every reply
/// buffer does. An identity is prepared only for a peer that may read it
/// (a peer probing names it may not read leaves no token here), and its
/// bytes are dropped at the first request after any change to the cache
/// (not at the change itself: the table belongs to the front loop's
/// thread).
final class PreparedReplies {
    static let capacity = 1024

    final class Entry {
        let token: Secret
        /// Not the snapshot itself: reading one field of a struct kept in a
        /// class copies the whole struct, a dozen retains and releases per
        /// request.
        let serving: TokenSnapshot.Serving
        let rules: [AccessRule]
        /// `OK <token> `
        let head: [UInt8]
        /// ` <token type>`
        let type: [UInt8]

        /// Nil when the snapshot has no token that can go in a reply as it
        /// is (none, or one that is not a printable word): such a `GET`
        /// takes the general path, which says why.
        init?(_ snapshot: TokenSnapshot) {
            guard let secret = snapshot.accessToken, case let token = secret.exposedValue, Reply.isWord(token),
                Reply.isWord(snapshot.tokenType)
            else { return nil }
            self.token = secret
            serving = snapshot.serving
            rules = snapshot.allowRules.compactMap(AccessRule.init)
            var head: [UInt8] = []
            head.reserveCapacity(token.utf8.count + 4)
            head.append(contentsOf: "OK ".utf8)
            head.append(contentsOf: token.utf8)
            head.append(UInt8(ascii: " "))
            self.head = head
            type = Array(" \(snapshot.tokenType)".utf8)
        }
    }

    private var version: UInt64 = .max
    /// The cache the entries came from (versions of two caches say nothing
    /// about each other).
    private var source: ObjectIdentifier?
    private var entries: [IdentityName: Entry] = [:]

    /// Identities prepared now (at most ``capacity``).
    var count: Int { entries.count }

    /// The identity's prepared reply, if it has a token that can be served
    /// as it is. One not yet prepared is kept only if `admits` it (the
    /// asking peer may read it); the caller checks the peer against the
    /// entry's rules on every request all the same.
    func entry(_ name: IdentityName, in cache: TokenCache, admits: (Entry) -> Bool) -> Entry? {
        // Read before the snapshot: a change after this read moves the
        // version, and the next request starts again.
        let current = cache.version
        let cacheID = ObjectIdentifier(cache)
        if current != version || cacheID != source {
            entries.removeAll(keepingCapacity: true)
            version = current
            source = cacheID
        } else if let entry = entries[name] {
            return entry
        }
        guard let snapshot = cache.snapshot(name), let entry = Entry(snapshot), admits(entry) else { return nil }
        if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
        entries[name] = entry
        return entry
    }
}

extension [UInt8] {
    /// Appends `value` in decimal (no string made on the way).
    mutating func appendDecimal(_ value: Int) {
        guard value != 0 else {
            append(UInt8(ascii: "0"))
            return
        }
        if value < 0 { append(UInt8(ascii: "-")) }
        let start = count
        var rest = value.magnitude
        while rest > 0 {
            append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        }
        self[start...].reverse()
    }
}
