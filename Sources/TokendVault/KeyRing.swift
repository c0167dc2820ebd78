import Crypto
import Foundation
import TokendCore

/// Shared by the SQLite vault and the fleet store (TokendFleet), so both
/// seal byte-for-byte the same envelopes.
///
/// The vault's unwrapped data keys (DEKs), one per key term, and the sealing
/// of secret values under them.
///
/// A sealed value is `version(1) ‖ term(4, big-endian) ‖ nonce(12) ‖
/// ciphertext ‖ tag(16)`. The associated data binds it to its identity, its
/// column and its term, so a ciphertext copied to another identity or
/// column, or relabelled with another term, fails to open.
package struct KeyRing: Sendable {
    package static let envelopeVersion: UInt8 = 1
    package static let headerSize = 5

    package private(set) var keys: [UInt32: SymmetricKey]
    package private(set) var activeTerm: UInt32

    package init(keys: [UInt32: SymmetricKey], activeTerm: UInt32) {
        precondition(keys[activeTerm] != nil, "active term must have a key")
        self.keys = keys
        self.activeTerm = activeTerm
    }

    package mutating func add(term: UInt32, key: SymmetricKey, makeActive: Bool) {
        keys[term] = key
        if makeActive { activeTerm = term }
    }

    package mutating func removeKeys(except kept: Set<UInt32>) {
        keys = keys.filter { kept.contains($0.key) }
    }

    /// Seals `secret` under the active term.
    package func seal(_ secret: Secret, identity: IdentityName, kind: SecretKind) throws -> Data {
        let key = keys[activeTerm]!
        let box = try AES.GCM.seal(
            Data(secret.exposedValue.utf8), using: key, nonce: AES.GCM.Nonce(),
            authenticating: Self.associatedData(identity: identity, kind: kind, term: activeTerm))
        var envelope = Data(capacity: Self.headerSize + box.combined!.count)
        envelope.append(Self.envelopeVersion)
        envelope.append(contentsOf: Self.bigEndianBytes(activeTerm))
        envelope.append(box.combined!)
        return envelope
    }

    /// Opens a sealed value, or throws a ``VaultError/Code/corrupt`` error
    /// that names the identity and column (never the value).
    package func open(_ envelope: Data, identity: IdentityName, kind: SecretKind) throws -> Secret {
        func corrupt(_ why: String) -> VaultError {
            VaultError(.corrupt, "\(kind.rawValue) of identity \(identity) \(why)")
        }
        guard let term = Self.term(of: envelope) else {
            throw corrupt("is not a sealed value of this vault format")
        }
        guard let key = keys[term] else {
            throw corrupt("is sealed under key term \(term), which this vault does not have")
        }
        let plaintext: Data
        do {
            let box = try AES.GCM.SealedBox(combined: envelope.dropFirst(Self.headerSize))
            // On Linux a failed check throws a CoreCrypto error rather than
            // `.authenticationFailure`; any error here means the same thing.
            plaintext = try AES.GCM.open(
                box, using: key,
                authenticating: Self.associatedData(identity: identity, kind: kind, term: term))
        } catch {
            throw corrupt("failed to decrypt (tampered, or moved from another identity or column)")
        }
        guard let text = Self.text(plaintext) else {
            throw corrupt("decrypted to invalid UTF-8")
        }
        return Secret(text)
    }

    /// The key term a sealed value was written under, or nil if the bytes
    /// are not an envelope of this format.
    package static func term(of envelope: Data) -> UInt32? {
        // 12-byte nonce + 16-byte tag at least.
        guard envelope.count >= headerSize + 28 else { return nil }
        // Read in place: a `reduce` over the `Data` slice walks an iterator
        // per byte, once per value at load (300,000 times at 100,000
        // identities).
        return envelope.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> UInt32? in
            guard bytes[0] == envelopeVersion else { return nil }
            return UInt32(bytes[1]) << 24 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 8 | UInt32(bytes[4])
        }
    }

    /// The plaintext as a string, or nil if it is not valid UTF-8:
    /// validated over the bytes in place, not through `Data`'s generic
    /// sequence.
    static func text(_ plaintext: Data) -> String? {
        plaintext.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in String(validating: bytes, as: UTF8.self) }
    }

    /// `tokend.value.v1|<identity>|<column>|<term>`, built byte by byte
    /// into an array (`Data`'s appends cost more than the decryption they
    /// feed): at load it runs once per value, 100,000s of times.
    static func associatedData(identity: IdentityName, kind: SecretKind, term: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(48 + identity.rawValue.utf8.count)
        bytes.append(contentsOf: "tokend.value.v1|".utf8)
        bytes.append(contentsOf: identity.rawValue.utf8)
        bytes.append(UInt8(ascii: "|"))
        bytes.append(contentsOf: kind.rawValue.utf8)
        bytes.append(UInt8(ascii: "|"))
        bytes.append(contentsOf: String(term).utf8)
        return bytes
    }

    static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}

/// Derivations from the KEK: the key that wraps data keys, and the
/// key-check value stored in the vault so a wrong KEK is reported at open.
///
/// Both go through HKDF with the vault's random id as salt and distinct
/// labels, so the stored check value reveals nothing about the wrapping key,
/// and a wrapped key copied from another vault does not unwrap here.
package struct KeyWrapping: Sendable {
    package let wrappingKey: SymmetricKey
    package let checkValue: Data

    package init(kek: KeyEncryptionKey, vaultID: Data) {
        wrappingKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: kek.key, salt: vaultID, info: Data("tokend.kek.wrap.v1".utf8),
            outputByteCount: 32)
        checkValue = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: kek.key, salt: vaultID, info: Data("tokend.kek.check.v1".utf8),
            outputByteCount: 32
        ).withUnsafeBytes { Data($0) }
    }

    /// Constant-time comparison with the vault's stored check value.
    package func matches(_ stored: Data) -> Bool {
        guard stored.count == checkValue.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(stored, checkValue) { difference |= a ^ b }
        return difference == 0
    }

    package func wrap(_ dek: SymmetricKey, term: UInt32) throws -> Data {
        let bytes = dek.withUnsafeBytes { Data($0) }
        return try AES.GCM.seal(bytes, using: wrappingKey, authenticating: Self.label(term)).combined!
    }

    package func unwrap(_ wrapped: Data, term: UInt32) throws -> SymmetricKey {
        do {
            let box = try AES.GCM.SealedBox(combined: wrapped)
            return SymmetricKey(data: try AES.GCM.open(box, using: wrappingKey, authenticating: Self.label(term)))
        } catch {
            throw VaultError(
                .corrupt,
                "data key of term \(term) failed to unwrap although the key check passed; "
                    + "the vault's key table is damaged")
        }
    }

    private static func label(_ term: UInt32) -> Data {
        Data("tokend.dek.v1|\(term)".utf8)
    }
}
