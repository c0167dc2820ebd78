/// Where systemd puts a unit's credentials (`LoadCredential=`,
/// `LoadCredentialEncrypted=`): `$CREDENTIALS_DIRECTORY/<name>`. The one
/// place that resolves a credential name, for the vault key and for
/// provider secrets alike.
package enum SystemdCredential {
    /// The file of credential `name`, or why there is none (a message for
    /// the operator; it names the credential, never its contents).
    package static func path(of name: String, environment: [String: String]) -> Result<String, Problem> {
        guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
            return .failure(Problem(
                message: "systemd credential \(name) requested but CREDENTIALS_DIRECTORY is not set; "
                    + "add LoadCredential= or LoadCredentialEncrypted= to the unit"))
        }
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            return .failure(Problem(message: "credential name \(name) must be a plain file name (no '/')"))
        }
        return .success(directory + "/" + name)
    }

    package struct Problem: Error, Sendable, Hashable {
        package let message: String
    }
}
