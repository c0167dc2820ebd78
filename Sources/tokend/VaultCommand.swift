import ArgumentParser
import Foundation
import TokendCore
import TokendFleet
import TokendVault

/// `tokend vault ...`: maintenance of the encrypted vault, on SQLite or on
/// the fleet store (`[vault] backend = "postgresql"`). On SQLite, commands
/// that change the vault take its writer lock, so they refuse to run beside
/// a running agent instead of racing it; on the fleet store, rotate-dek and
/// migrate refuse while other sessions are connected.
struct VaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault",
        abstract: "Create, check and re-key the encrypted vault.",
        subcommands: [
            Init.self, Verify.self, Info.self, VaultListCommand.self, VaultSessionsCommand.self, VaultImportCommand.self, RotateKEK.self,
            RotateDEK.self, VaultMigrateCommand.self,
        ]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new vault, and its key file if there is none.",
            discussion: """
                If the key file does not exist it is created with mode 0600 and 32 random bytes. \
                Back it up: without it the vault cannot be opened. Refuses to overwrite an existing vault. \
                With backend = "postgresql", creates the fleet store's tables in the configured database.
                """)

        @OptionGroup var vault: VaultOptions

        func run() async throws {
            let settings = try vault.resolved()
            let kek: KeyEncryptionKey
            var createdKey = false
            switch settings.keySource {
            case .file(let path) where !FileManager.default.fileExists(atPath: path):
                kek = try KeyEncryptionKey.generate(at: path)
                createdKey = true
            default:
                kek = try KeyEncryptionKey.load(from: settings.keySource)
            }
            switch settings.backend {
            case .sqlite:
                let created = try SQLiteVault.create(at: settings.path, kek: kek)
                try created.close()
                if createdKey { print("created \(settings.keySource) (mode 0600); keep a backup of it") }
                print("created vault \(settings.path) (mode 0600)")
            case .postgresql(let store):
                let created = try await PostgresVault.create(settings: try VaultStores.fleetSettings(store), kek: kek, logger: VaultStores.logger)
                await created.close()
                if createdKey { print("created \(settings.keySource) (mode 0600); keep a backup of it, and give every host of the fleet a copy") }
                print("created the fleet vault in \(store.displayName)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open every sealed value and report identities that fail.",
            discussion: "Changes nothing and takes no lock, so it may run beside the agent. Exits 1 if any identity is corrupt.")

        @OptionGroup var vault: VaultOptions

        func run() async throws {
            let (opened, _) = try await vault.openStore(access: .reader)
            let report = try await opened.verify()
            try await opened.shutdown()
            for problem in report.corrupt {
                print("corrupt \(problem.identity): \(problem.reason)")
            }
            print("identities: \(report.identities) ok: \(report.ok) corrupt: \(report.corrupt.count)")
            if !report.corrupt.isEmpty { throw ExitCode(CLIExitCode.corruptFound) }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show identity counts by state, key terms and schema version (no secrets).")

        @OptionGroup var vault: VaultOptions

        func run() async throws {
            let (opened, settings) = try await vault.openStore(access: .reader)
            let info = try await opened.info()
            let leases = try await (opened as? PostgresVault)?.liveLeases()
            try await opened.shutdown()
            print("vault: \(opened is SQLiteVault ? settings.path : opened.place)")
            print("identities: \(info.identities)")
            for state in IdentityState.allCases {
                if let count = info.byState[state] { print("  \(state.rawValue): \(count)") }
            }
            print("key terms: \(info.keyTerms.map(String.init).joined(separator: ",")) (active \(info.activeTerm))")
            print("unfinished refreshes: \(info.pendingIntents)")
            if let leases { print("leases held: \(leases)") }
            print("schema: \(info.migrations.last ?? "none")")
        }
    }

    struct RotateKEK: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-kek",
            abstract: "Re-wrap the vault's data keys under a new key-encryption key.",
            discussion: """
                The new key file is created (mode 0600, 32 random bytes) if it does not exist. \
                The change is one transaction: afterwards only the new key opens the vault. \
                Then replace the old key file (or credential) with the new one.
                """)

        @OptionGroup var vault: VaultOptions

        @Option(name: .customLong("new-key-file"), help: ArgumentHelp("File for the new vault key.", valueName: "path"))
        var newKeyFile: String

        func run() async throws {
            let (opened, _) = try await vault.openStore()
            let newKEK: KeyEncryptionKey
            if FileManager.default.fileExists(atPath: newKeyFile) {
                newKEK = try KeyEncryptionKey.load(from: .file(newKeyFile))
            } else {
                newKEK = try KeyEncryptionKey.generate(at: newKeyFile)
                print("created key file \(newKeyFile) (mode 0600)")
            }
            do {
                try await opened.rotateKEK(to: newKEK)
            } catch {
                try? await opened.shutdown()
                throw error
            }
            try await opened.shutdown()
            print("\(opened.place) now opens only with \(newKeyFile)")
            if opened is PostgresVault { print("give every host of the fleet the new key before it next starts") }
        }
    }

    struct RotateDEK: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-dek",
            abstract: "Add a new data key and re-seal every secret under it.",
            discussion: """
                Safe to interrupt: the vault stays readable, and running it again finishes the job. \
                On the fleet store it refuses while other sessions are connected: stop the agents on every host first.
                """)

        @OptionGroup var vault: VaultOptions

        func run() async throws {
            let kek = try KeyEncryptionKey.load(from: try vault.resolved().keySource)
            let (opened, _) = try await vault.openStore()
            let report: DEKRotationReport
            do {
                report = try await opened.rotateDEK(kek: kek)
            } catch {
                try? await opened.shutdown()
                throw error
            }
            try await opened.shutdown()
            let retired = report.retiredTerms.map(String.init).joined(separator: ",")
            print("data key term \(report.newTerm) active; re-sealed \(report.resealedValues) values; retired terms: \(retired.isEmpty ? "none" : retired)")
        }
    }
}
