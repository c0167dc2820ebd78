import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// Reads a secret (a client secret) from a private file or a systemd
/// credential, so it never appears in the config file or on a command line.
enum SecretFile {
    struct Failure: Error {
        var message: String
        static func problem(_ message: String) -> Failure { Failure(message: message) }
    }

    static func read(path: String) throws(Failure) -> Secret {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw .problem("\(path): \(String(cString: strerror(errno)))")
        }
        if let problem = PrivateFile.problem(path: path, mode: UInt32(info.st_mode)) { throw .problem(problem) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .problem("\(path) is not readable by this user")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .problem("\(path) is not UTF-8 text")
        }
        // Editors and `echo` add a final newline that is not part of the secret.
        let secret = text.trimmingCharacters(in: .newlines)
        guard !secret.isEmpty else { throw .problem("\(path) is empty") }
        return Secret(secret)
    }

    static func read(credential name: String, environment: [String: String]) throws(Failure) -> Secret {
        switch SystemdCredential.path(of: name, environment: environment) {
        case .success(let path): return try read(path: path)
        case .failure(let problem): throw .problem(problem.message)
        }
    }
}
