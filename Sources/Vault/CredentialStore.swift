import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// What the API may show about a stored credential.
public struct CredentialSummary: Sendable {
    public let vendor: Vendor
    public let fingerprint: String
    public let accountSid: String?
    public let masterKeyId: String
    public let updatedAt: Date
}

/// Sealed vendor credentials in Postgres. Plaintext exists only inside this type's methods.
public struct CredentialStore: Sendable {
    let client: DatabasePool
    let sealer: CredentialSealer
    /// Decrypted credentials for the proxy, a few seconds at most (a change made through this process
    /// invalidates at once; other replicas pick it up within the TTL). Optional nil = "none stored".
    let proxyCache: ExpiringCache<String, VendorCredentials?>

    public init(client: DatabasePool, sealer: CredentialSealer, proxyCacheTTL: Duration = .seconds(2)) {
        self.client = client
        self.sealer = sealer
        self.proxyCache = ExpiringCache(ttl: proxyCacheTTL)
    }

    static func cacheKey(_ tenantId: String, _ vendor: Vendor) -> String { tenantId + "|" + vendor.rawValue }

    /// What the proxy's cache knows about a tenant's credentials for a vendor, without a database round trip.
    public enum CacheLookup: Sendable {
        /// Cached: these credentials.
        case hit(VendorCredentials)
        /// Cached: the tenant has stored none for this vendor.
        case noneStored
        /// Not cached (or expired): ask `cachedCredentials`, which reads the database.
        case miss
    }

    /// The cache alone: a hit costs no round trip, so the proxy needs no deadline for it.
    public func cacheLookup(vendor: Vendor, tenantId: String) -> CacheLookup {
        switch proxyCache.get(Self.cacheKey(tenantId, vendor)) {
        case .some(.some(let credentials)): .hit(credentials)
        case .some(.none): .noneStored
        case .none: .miss
        }
    }

    /// `credentials(vendor:tenantId:)` through the short-lived cache: the proxy's per-request path.
    public func cachedCredentials(vendor: Vendor, tenantId: String, logger: Logger) async throws -> VendorCredentials? {
        let key = Self.cacheKey(tenantId, vendor)
        if let hit = proxyCache.get(key) { return hit }
        let fresh = try await credentials(vendor: vendor, tenantId: tenantId, logger: logger)
        proxyCache.set(key, fresh)
        return fresh
    }

    public func put(_ credentials: VendorCredentials, tenantId: String, logger: Logger) async throws -> CredentialSummary {
        let vendor = credentials.vendor.rawValue
        let (keyId, sealed) = try sealer.seal(try credentials.serialized(), tenantId: tenantId, vendor: vendor)
        let fingerprint = credentials.fingerprint + (credentials.accountSid.map { " (\($0))" } ?? "")
        defer { proxyCache.remove(Self.cacheKey(tenantId, credentials.vendor)) }
        let rows = try await client.query("""
            INSERT INTO vendor_credentials (tenant_id, vendor, master_key_id, sealed, fingerprint)
            VALUES (\(tenantId), \(vendor), \(keyId), \(ByteBuffer(data: sealed)), \(fingerprint))
            ON CONFLICT (tenant_id, vendor) DO UPDATE
              SET master_key_id = EXCLUDED.master_key_id, sealed = EXCLUDED.sealed,
                  fingerprint = EXCLUDED.fingerprint, updated_at = now()
            RETURNING updated_at
            """, logger: logger)
        var updatedAt = Date()
        for try await d in rows.decode(Date.self) { updatedAt = d }
        return CredentialSummary(vendor: credentials.vendor, fingerprint: credentials.fingerprint,
                                 accountSid: credentials.accountSid, masterKeyId: keyId, updatedAt: updatedAt)
    }

    public func delete(vendor: Vendor, tenantId: String, logger: Logger) async throws -> Bool {
        defer { proxyCache.remove(Self.cacheKey(tenantId, vendor)) }
        let rows = try await client.query(
            "DELETE FROM vendor_credentials WHERE tenant_id = \(tenantId) AND vendor = \(vendor.rawValue) RETURNING vendor",
            logger: logger
        )
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    public func summary(vendor: Vendor, tenantId: String, logger: Logger) async throws -> CredentialSummary? {
        let rows = try await client.query("""
            SELECT fingerprint, master_key_id, updated_at FROM vendor_credentials
            WHERE tenant_id = \(tenantId) AND vendor = \(vendor.rawValue)
            """, logger: logger)
        for try await (fingerprint, keyId, updatedAt) in rows.decode((String, String, Date).self) {
            // The stored fingerprint carries the Twilio SID in parentheses for display.
            let parts = fingerprint.split(separator: " ", maxSplits: 1)
            let sid = parts.count == 2 ? String(parts[1].dropFirst().dropLast()) : nil
            return CredentialSummary(vendor: vendor, fingerprint: String(parts[0]), accountSid: sid, masterKeyId: keyId, updatedAt: updatedAt)
        }
        return nil
    }

    /// Decrypted credentials for the proxy; nil when the tenant stored none for this vendor.
    public func credentials(vendor: Vendor, tenantId: String, logger: Logger) async throws -> VendorCredentials? {
        let rows = try await client.query("""
            SELECT master_key_id, sealed FROM vendor_credentials WHERE tenant_id = \(tenantId) AND vendor = \(vendor.rawValue)
            """, logger: logger)
        for try await (keyId, sealed) in rows.decode((String, ByteBuffer).self) {
            let plaintext = try sealer.open(Data(buffer: sealed), masterKeyId: keyId, tenantId: tenantId, vendor: vendor.rawValue)
            return try VendorCredentials.deserialize(plaintext, vendor: vendor)
        }
        return nil
    }

    public struct RotationResult: Sendable {
        public var rotated = 0
        /// Rows that no configured key could open (tampered, or sealed by a key no longer configured).
        public var failed: [(tenantId: String, vendor: String)] = []
    }

    /// Re-encrypts every row not sealed with the active key, one short transaction per row
    /// (row lock, decrypt with its old key, seal with the active one). Servers keep serving
    /// throughout: they hold both keys until the old one is removed from configuration.
    /// A row that cannot be opened is reported and left as it is; the others still rotate.
    public func rotateAll(logger: Logger) async throws -> RotationResult {
        let activeId = sealer.ring.active.id
        var pending: [(String, String)] = []
        let rows = try await client.query(
            "SELECT tenant_id, vendor FROM vendor_credentials WHERE master_key_id <> \(activeId) ORDER BY tenant_id, vendor",
            logger: logger
        )
        for try await row in rows.decode((String, String).self) { pending.append(row) }
        var result = RotationResult()
        for (tenantId, vendor) in pending {
            do {
                let moved: Bool = try await client.transaction(logger: logger) { conn in
                    let rows = try await conn.query("""
                        SELECT master_key_id, sealed FROM vendor_credentials
                        WHERE tenant_id = \(tenantId) AND vendor = \(vendor) AND master_key_id <> \(activeId) FOR UPDATE
                        """, logger: logger)
                    var found: (String, ByteBuffer)?
                    for try await row in rows.decode((String, ByteBuffer).self) { found = row }
                    // Deleted or already rotated (by a concurrent run) since the scan: nothing to do.
                    guard let (oldKeyId, sealed) = found else { return false }
                    let plaintext = try sealer.open(Data(buffer: sealed), masterKeyId: oldKeyId, tenantId: tenantId, vendor: vendor)
                    let (newKeyId, resealed) = try sealer.seal(plaintext, tenantId: tenantId, vendor: vendor)
                    try await conn.query("""
                        UPDATE vendor_credentials SET master_key_id = \(newKeyId), sealed = \(ByteBuffer(data: resealed))
                        WHERE tenant_id = \(tenantId) AND vendor = \(vendor)
                        """, logger: logger)
                    return true
                }
                if moved { result.rotated += 1 }
            } catch is CredentialSealer.SealError {
                logger.error("credential cannot be decrypted; left unrotated", metadata: ["tenant_id": "\(tenantId)", "vendor": "\(vendor)"])
                result.failed.append((tenantId, vendor))
            }
        }
        return result
    }
}
