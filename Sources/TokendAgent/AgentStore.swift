import Foundation
import Logging
import ServiceLifecycle
import TokendConfig
import TokendCore
import TokendFleet
import TokendVault

/// The store the agent runs on, as `[vault] backend` says, with what the
/// engine needs to share it with other agents, and how to close it.
struct AgentStore: Sendable {
    var vault: any VaultStore
    /// Fleet store only: claims and fenced commits, results kept on this
    /// host, and the notifications the engine follows.
    var exclusion: (any RefreshExclusion)?
    var held: (any HeldResults)?
    var listener: FleetListener?
    /// What the logs call the store (a path, or the database; no password).
    var description: String
    var close: @Sendable () async throws -> Void

    static func open(_ configuration: VaultConfiguration, logger: Logger) async throws -> AgentStore {
        let kek = try KeyEncryptionKey.load(from: configuration.keySource)
        switch configuration.backend {
        case .sqlite:
            let vault = try SQLiteVault.open(at: configuration.path, kek: kek, logger: logger.with(label: "tokend.vault"))
            return AgentStore(vault: vault, description: configuration.path, close: { try vault.close() })
        case .postgresql(let fleet):
            let settings = try FleetSettings(fleet)
            let vault = try await PostgresVault.open(settings: settings, kek: kek, logger: logger.with(label: "tokend.fleet"))
            let holder = FleetExclusion.uniqueHolder()
            let directory =
                fleet.heldResultsDirectory
                ?? ((configuration.path as NSString).deletingLastPathComponent + "/fleet-held")
            let held: HeldResultSpool
            do {
                held = try HeldResultSpool(directory: directory, vault: vault, logger: logger.with(label: "tokend.fleet"))
            } catch {
                await vault.close()
                throw error
            }
            logger.info(
                "fleet store opened",
                metadata: [
                    "tokend.fleet.database": "\(settings.displayName)", "tokend.fleet.holder": "\(holder)",
                    "tokend.fleet.lease_seconds": "\(fleet.leaseSeconds)", "tokend.fleet.held_results": "\(directory)",
                ])
            return AgentStore(
                vault: vault, exclusion: FleetExclusion(vault: vault, holder: holder, ttl: fleet.leaseDuration),
                held: held, listener: FleetListener(settings: settings, logger: logger.with(label: "tokend.fleet")),
                description: settings.displayName, close: { await vault.close() })
        }
    }
}

/// Follows the fleet store's notifications into the engine for as long as
/// the agent runs: another agent's commit is served here within moments.
struct FleetFollowService: Service {
    let listener: FleetListener
    let follower: any StoreFollower

    func run() async throws {
        await cancelWhenGracefulShutdown { await listener.follow(follower) }
    }
}
