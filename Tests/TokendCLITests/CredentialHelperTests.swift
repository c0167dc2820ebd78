import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The credential helpers, run by the real tools that call them (kubectl,
/// git) or fed the protocols' documented shapes (Docker, Bazel), against a
/// real agent.
@Suite("Credential helpers: kubectl, git, Docker, Bazel", .serialized)
struct CredentialHelperTests {
    static func tokend() -> String { CommandRunner.tokendPath }

    /// Links named as the tools look for them, in a fresh folder.
    static func links(in directory: String) throws -> String {
        let bin = directory + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for name in ["docker-credential-tokend", "git-credential-tokend", "bazel-credential-tokend"] {
            try FileManager.default.createSymbolicLink(atPath: bin + "/" + name, withDestinationPath: tokend())
        }
        return bin
    }

    static func kubeconfig(port: Int, caFile: String, apiVersion: String, socket: String) throws -> String {
        let ca = try Data(contentsOf: URL(fileURLWithPath: caFile)).base64EncodedString()
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - name: fake
              cluster:
                server: https://127.0.0.1:\(port)
                certificate-authority-data: \(ca)
            users:
            - name: tokend
              user:
                exec:
                  apiVersion: \(apiVersion)
                  command: \(tokend())
                  args: ["kube-credential", "\(ToolsAgent.identity)", "--socket", "\(socket)"]
                  interactiveMode: Never
            contexts:
            - name: fake
              context: {cluster: fake, user: tokend}
            current-context: fake

            """
    }

    @Test(arguments: ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"])
    func kubectlSendsTheAgentsTokenToTheAPIServer(apiVersion: String) async throws {
        let agent = try await ToolsAgent()
        let directory = agent.directory
        let made = try await ToolsAgent.shell("""
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
              -addext subjectAltName=IP:127.0.0.1 -keyout \(directory)/key.pem -out \(directory)/cert.pem 2>&1
            """)
        #expect(made.status == 0, "\(made.stdout)")
        let record = directory + "/bearer.log"
        let (server, port) = try await ToolsAgent.startServer(
            "kube-apiserver.py", ["--cert", directory + "/cert.pem", "--key", directory + "/key.pem", "--record", record], in: directory)
        let kubeconfig = directory + "/kubeconfig"
        try Self.kubeconfig(port: port, caFile: directory + "/cert.pem", apiVersion: apiVersion, socket: agent.socketPath)
            .write(toFile: kubeconfig, atomically: true, encoding: .utf8)

        let result = try await CommandRunner.run(
            "/usr/bin/env", ["HOME=\(directory)", "kubectl", "--kubeconfig", kubeconfig, "get", "--raw", "/api/v1/namespaces/default/pods"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\"Success\""))
        let token = try await agent.token()
        // kubectl may send more than one request; each carries the token.
        let received = ToolsAgent.lines(record)
        #expect(!received.isEmpty && received.allSatisfy { $0 == token }, "the API server received the agent's token: \(received.count) requests")
        await server.kill()
        await agent.stop()
    }

    @Test func kubeCredentialAnswersInTheRequestedVersionWithAnExpiry() async throws {
        let agent = try await ToolsAgent()
        for version in ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"] {
            let info = #"{"apiVersion":"\#(version)","kind":"ExecCredential","spec":{"interactive":false}}"#
            let result = try await CommandRunner.run(
                "/usr/bin/env", ["KUBERNETES_EXEC_INFO=\(info)", Self.tokend(), "kube-credential", ToolsAgent.identity, "--socket", agent.socketPath])
            #expect(result.status == 0, "\(result.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            #expect(object?["apiVersion"] as? String == version)
            #expect(object?["kind"] as? String == "ExecCredential")
            let status = object?["status"] as? [String: Any]
            #expect(status?["token"] as? String == (try await agent.token()))
            let expiry = (status?["expirationTimestamp"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }
            #expect(expiry.map { $0 > Date() } == true, "an RFC 3339 time in the future")
        }
        await agent.stop()
    }

    @Test func kubeCredentialRefusesABrokenExecInfo() async throws {
        let agent = try await ToolsAgent()
        let token = try await agent.token()
        let broken = [
            "", "not json", "[]", #"{"apiVersion": 5}"#, #"{"kind":"ExecCredential"}"#,
            #"{"apiVersion":"client.authentication.k8s.io/v2"}"#, "{\"apiVersion\":\"\u{1}\u{7f}\"}",
            "{\"apiVersion\":\"" + String(repeating: "x", count: 100_000) + "\"}",
        ]
        for value in broken {
            let result = try await CommandRunner.run(
                "/usr/bin/env", ["KUBERNETES_EXEC_INFO=\(value)", Self.tokend(), "kube-credential", ToolsAgent.identity, "--socket", agent.socketPath])
            #expect(result.status == 2, "\(value.prefix(40)): \(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(!result.stderr.contains(token))
            #expect(result.stderr.utf8.count < 1000, "the message does not echo a huge value")
        }
        let badName = try await CommandRunner.tokend(["kube-credential", "bad name", "--socket", agent.socketPath])
        #expect(badName.status == 64)
        let unknown = try await CommandRunner.tokend(["kube-credential", "nobody-here", "--socket", agent.socketPath])
        #expect(unknown.status == 15, "the agent's answer decides: not_found to an admin")
        let noAgent = try await CommandRunner.tokend(["kube-credential", ToolsAgent.identity, "--socket", agent.directory + "/none.sock"])
        #expect(noAgent.status == 14)
        await agent.stop()
    }

    @Test func gitCredentialFillAndLsRemoteOverHTTPUseTheToken() async throws {
        let agent = try await ToolsAgent()
        let directory = agent.directory
        let token = try await agent.token()
        // A bare repository with one commit, served as plain files.
        let repo = try await ToolsAgent.shell("""
            set -e; export HOME=\(directory) GIT_CONFIG_NOSYSTEM=1
            git init -q \(directory)/work && cd \(directory)/work
            git -c user.name=t -c user.email=t@example.com commit -q --allow-empty -m first
            git clone -q --bare \(directory)/work \(directory)/www/repo.git
            git -C \(directory)/www/repo.git update-server-info
            git rev-parse HEAD
            """)
        #expect(repo.status == 0, "\(repo.stderr)")
        let expectedFile = directory + "/expected-token"
        try token.write(toFile: expectedFile, atomically: true, encoding: .utf8)
        let record = directory + "/git-auth.log"
        let (server, port) = try await ToolsAgent.startServer(
            "git-http-server.py",
            ["--root", directory + "/www", "--user", "x-access-token", "--token-file", expectedFile, "--record", record], in: directory)
        let helper = "\(Self.tokend()) git-credential --socket \(agent.socketPath) --identity \(ToolsAgent.identity) --username x-access-token"
        let environment = ["HOME=\(directory)", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"]

        let fill = try await CommandRunner.run(
            "/usr/bin/env", environment + ["git", "-c", "credential.helper=\(helper)", "credential", "fill"],
            stdin: Data("protocol=http\nhost=127.0.0.1:\(port)\n\n".utf8))
        #expect(fill.status == 0, "\(fill.stderr)")
        #expect(fill.stdout.contains("username=x-access-token\npassword=\(token)\n"))

        let lsRemote = try await CommandRunner.run(
            "/usr/bin/env", environment + ["git", "-c", "credential.helper=\(helper)", "ls-remote", "http://127.0.0.1:\(port)/repo.git"])
        #expect(lsRemote.status == 0, "\(lsRemote.stderr)")
        #expect(lsRemote.stdout.contains(repo.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(ToolsAgent.lines(record).contains("ok"))

        // Without the helper the server refuses: it really demands the token.
        let refused = try await CommandRunner.run(
            "/usr/bin/env", environment + ["git", "ls-remote", "http://127.0.0.1:\(port)/repo.git"])
        #expect(refused.status != 0)

        // The link name and the [hosts] table: `helper = tokend` finds
        // git-credential-tokend on PATH; the host picks the identity.
        let bin = try Self.links(in: directory)
        try (try String(contentsOfFile: agent.configPath, encoding: .utf8)
            + "\n[hosts.\"127.0.0.1:\(port)\"]\nidentity = \"\(ToolsAgent.identity)\"\nusername = \"x-access-token\"\n")
            .write(toFile: agent.configPath, atomically: true, encoding: .utf8)
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let viaLink = try await CommandRunner.run(
            "/usr/bin/env",
            environment + ["PATH=\(path)", "TOKEND_CONFIG=\(agent.configPath)", "git", "-c", "credential.helper=tokend", "ls-remote",
                "http://127.0.0.1:\(port)/repo.git"])
        #expect(viaLink.status == 0, "\(viaLink.stderr)")
        await server.kill()
        await agent.stop()
    }

    @Test func gitCredentialStoreEraseAndBrokenInput() async throws {
        let agent = try await ToolsAgent()
        let token = try await agent.token()
        let base = ["git-credential", "--socket", agent.socketPath, "--identity", ToolsAgent.identity]
        for operation in ["store", "erase"] {
            let result = try await CommandRunner.tokend(
                base + [operation], stdin: Data("protocol=https\nhost=example.com\nusername=u\npassword=p\n\n".utf8))
            #expect(result.status == 0)
            #expect(result.stdout.isEmpty)
        }
        let inputs: [Data] = [
            Data("no equals sign\n".utf8), Data([0x68, 0x6f, 0x73, 0x74, 0x3d, 0x00, 0x0a]), Data([0xff, 0xfe, 0x0a]),
            Data(repeating: 0x61, count: 200_000),
        ]
        for input in inputs {
            let result = try await CommandRunner.tokend(base + ["get"], stdin: input)
            #expect(result.status == 2, "\(result.stderr)")
            #expect(!result.stdout.contains(token))
        }
        // No --identity and no [hosts] entry for the host: no answer, so git moves on.
        let unmapped = try await CommandRunner.tokend(
            ["git-credential", "--socket", agent.socketPath, "--config", agent.configPath, "get"],
            stdin: Data("protocol=https\nhost=unknown.example.com\n\n".utf8))
        #expect(unmapped.status == 0)
        #expect(unmapped.stdout.isEmpty)
        let badUser = try await CommandRunner.tokend(base + ["--username", "", "get"], stdin: Data())
        #expect(badUser.status == 64)
        let badOperation = try await CommandRunner.tokend(base + ["approve"], stdin: Data())
        #expect(badOperation.status == 64)
        await agent.stop()
    }

    @Test func dockerCredentialHelperSpeaksTheProtocol() async throws {
        let agent = try await ToolsAgent(extra: """

            [hosts."registry.example.com"]
            identity = "\(ToolsAgent.identity)"
            username = "oauth2accesstoken"

            [hosts."127.0.0.1:5000"]
            identity = "\(ToolsAgent.identity)"
            """)
        let token = try await agent.token()
        let docker = try Self.links(in: agent.directory) + "/docker-credential-tokend"
        let environment = ["TOKEND_CONFIG=\(agent.configPath)"]
        func run(_ operation: String, _ input: String) async throws -> CommandRunner.Result {
            try await CommandRunner.run("/usr/bin/env", environment + [docker, operation], stdin: Data(input.utf8))
        }

        for serverURL in ["https://registry.example.com", "registry.example.com", "https://REGISTRY.example.com/v2/"] {
            let got = try await run("get", serverURL + "\n")
            #expect(got.status == 0, "\(got.stdout)")
            let object = try JSONSerialization.jsonObject(with: Data(got.stdout.utf8)) as? [String: String]
            #expect(object == ["ServerURL": serverURL, "Username": "oauth2accesstoken", "Secret": token])
        }
        let withPort = try JSONSerialization.jsonObject(with: Data(try await run("get", "127.0.0.1:5000").stdout.utf8)) as? [String: String]
        #expect(withPort?["Username"] == "oauth2", "the default user name")

        let missing = try await run("get", "https://other.example.com\n")
        #expect(missing.status == 1)
        #expect(missing.stdout == "credentials not found in native keychain\n", "the message docker recognizes")

        let list = try await run("list", "")
        #expect(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: String]
            == ["registry.example.com": "oauth2accesstoken", "127.0.0.1:5000": "oauth2"])

        let stored = try await run("store", #"{"ServerURL":"registry.example.com","Username":"u","Secret":"typed-by-hand"}"#)
        #expect(stored.status == 0 && stored.stdout.isEmpty, "store is accepted and changes nothing")
        #expect(try await run("get", "registry.example.com").stdout.contains(token))
        let garbage = try await run("store", "secret-looking garbage")
        #expect(garbage.status == 1)
        #expect(!garbage.stdout.contains("secret-looking"), "the input is never echoed")
        #expect(try await run("erase", "registry.example.com\n").status == 0)
        for broken in ["", "\n", "a\nb", "x\u{0}y", String(repeating: "h", count: 10_000)] {
            let result = try await run("get", broken)
            #expect(result.status == 1)
            #expect(!result.stdout.contains(token))
        }
        let version = try await run("version", "")
        #expect(version.stdout.hasPrefix("docker-credential-tokend"))
        await agent.stop()
    }

    @Test func bazelCredentialHelperAnswersHeadersAndExpiry() async throws {
        let agent = try await ToolsAgent(extra: """

            [hosts."cache.example.com"]
            identity = "\(ToolsAgent.identity)"
            """)
        let token = try await agent.token()
        let bazel = try Self.links(in: agent.directory) + "/bazel-credential-tokend"
        func run(_ input: String, _ arguments: [String] = ["get"]) async throws -> CommandRunner.Result {
            try await CommandRunner.run("/usr/bin/env", ["TOKEND_CONFIG=\(agent.configPath)", bazel] + arguments, stdin: Data(input.utf8))
        }
        let got = try await run(#"{"uri": "https://cache.example.com/ac/0123"}"#)
        #expect(got.status == 0, "\(got.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(got.stdout.utf8)) as? [String: Any]
        #expect((object?["headers"] as? [String: [String]]) == ["Authorization": ["Bearer \(token)"]])
        let expires = (object?["expires"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }
        #expect(expires.map { $0 > Date() } == true)

        let other = try await run(#"{"uri": "https://elsewhere.example.com/x"}"#)
        #expect(other.status == 0)
        #expect(other.stdout == "{}\n", "no credentials: no headers")
        for broken in ["", "null", "[]", #"{"uri": 7}"#, #"{"url": "https://cache.example.com/"}"#, #"{"uri": ""}"#,
            "{\"uri\": \"https://" + String(repeating: "a", count: 70_000) + "\"}"]
        {
            let result = try await run(broken)
            #expect(result.status == 2, "\(broken.prefix(30)): \(result.stderr)")
            #expect(!result.stdout.contains(token))
        }
        #expect(try await run("{}", ["list"]).status == 64)
        await agent.stop()
    }

    /// The helpers are clients of the socket: a user gets what the agent's
    /// rules give that user, whatever helper it runs.
    @Test func helpersGetOnlyWhatTheirUserMayRead() async throws {
        let agent = try await ToolsAgent(socket: "group = \"nogroup\"", more: ["for-nobody": ["user:nobody"]])
        let token = try await agent.token()
        func asNobody(_ arguments: [String], stdin: String = "") async throws -> CommandRunner.Result {
            try await CommandRunner.run(
                "/usr/sbin/runuser", ["-u", "nobody", "--", "/usr/bin/env", "HOME=\(agent.directory)"] + arguments, stdin: Data(stdin.utf8))
        }
        let denied = try await asNobody([Self.tokend(), "kube-credential", ToolsAgent.identity, "--socket", agent.socketPath])
        #expect(denied.status == 11, "\(denied.stderr)")
        #expect(denied.stdout.isEmpty && !denied.stderr.contains(token))
        let allowed = try await asNobody([Self.tokend(), "kube-credential", "for-nobody", "--socket", agent.socketPath])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stdout.contains("\"token\""))

        let helper = "\(Self.tokend()) git-credential --socket \(agent.socketPath) --identity \(ToolsAgent.identity)"
        let fill = try await asNobody(
            ["GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "git", "-c", "credential.helper=\(helper)", "credential", "fill"],
            stdin: "protocol=https\nhost=git.example.com\n\n")
        #expect(!fill.stdout.contains(token), "git gets no password from a forbidden identity")
        let exec = try await asNobody(
            [Self.tokend(), "exec", "--socket", agent.socketPath, "--identity", ToolsAgent.identity, "--env", "T", "--", "/bin/true"])
        #expect(exec.status == 11, "\(exec.stderr)")
        await agent.stop()
    }

    @Test func aBrokenHostsTableIsAConfigurationError() async throws {
        let agent = try await ToolsAgent()
        let cases = [
            "[hosts.\"a b\"]\nidentity = \"x\"", "[hosts.\"h\"]\nidentity = 5", "[hosts.\"h\"]\nusername = \"u\"",
            "[hosts.\"h\"]\nidentity = \"bad name\"", "[hosts.\"h\"]\nidentity = \"x\"\ntypo = 1", "hosts = 3",
            "[hosts.\"h\"]\nidentity = \"x\"\nusername = \"\"",
        ]
        for (index, text) in cases.enumerated() {
            let file = agent.directory + "/broken-\(index).toml"
            try (text + "\n\n[socket]\npath = \"\(agent.socketPath)\"\n").write(toFile: file, atomically: true, encoding: .utf8)
            let result = try await CommandRunner.tokend(["bazel-credential", "--config", file, "get"], stdin: Data(#"{"uri":"https://h/"}"#.utf8))
            #expect(result.status == 2, "\(text): \(result.stdout) \(result.stderr)")
            #expect(result.stderr.contains("hosts"), "\(result.stderr)")
        }
        await agent.stop()
    }
}
