import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage

/// PUT/GET/DELETE /v1/vendors/{vendor}/credentials. Responses show only a fingerprint.
public struct VaultController: Sendable {
    let store: CredentialStore

    public init(store: CredentialStore) { self.store = store }

    public func addAdminRoutes(to group: some RouterMethods<KeybrakeRequestContext>) {
        group.put("/vendors/:vendor/credentials") { request, context in try await self.put(request, context) }
        group.get("/vendors/:vendor/credentials") { _, context in try await self.show(context) }
        group.delete("/vendors/:vendor/credentials") { _, context in try await self.delete(context) }
    }

    struct CredentialBody: Encodable {
        let vendor: String
        let fingerprint: String
        @NullEncoded var accountSid: String?
        let updatedAt: Date
    }

    func body(_ s: CredentialSummary) -> CredentialBody {
        CredentialBody(vendor: s.vendor.rawValue, fingerprint: s.fingerprint, accountSid: s.accountSid, updatedAt: s.updatedAt)
    }

    func vendor(_ context: KeybrakeRequestContext) throws(KeybrakeError) -> Vendor {
        let name = context.parameters.get("vendor") ?? ""
        guard let vendor = Vendor(rawValue: name) else {
            throw .invalidRequest("Unknown vendor '\(name.prefix(40))'; use one of \(Vendor.names).", field: "vendor")
        }
        return vendor
    }

    func put(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let vendor = try vendor(context)
        let credentials = try VendorCredentials.parse(vendor, try await JSONObjectReader.decode(request, context: context))
        let summary = try await db(context) { try await store.put(credentials, tenantId: admin.tenantId, logger: context.logger) }
        struct Stored: Encodable { let credentials: CredentialBody }
        return try JSONResponse.make(.ok, Stored(credentials: body(summary)))
    }

    func show(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let vendor = try vendor(context)
        guard let summary = try await db(context, { try await store.summary(vendor: vendor, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError(status: 404, code: .notFound, message: "No \(vendor.rawValue) credentials are stored for this tenant.")
        }
        struct Shown: Encodable { let credentials: CredentialBody }
        return try JSONResponse.make(.ok, Shown(credentials: body(summary)))
    }

    func delete(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let vendor = try vendor(context)
        guard try await db(context, { try await store.delete(vendor: vendor, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError(status: 404, code: .notFound, message: "No \(vendor.rawValue) credentials are stored for this tenant.")
        }
        return Response(status: .noContent)
    }
}
